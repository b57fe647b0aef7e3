#!/usr/bin/env bash
# Installs what Dyad needs on first use and is a quick no-op once everything is there:
# Debian packages, the bpffs mount, npm dependencies (with the pinned Node 24), the pinned
# upstream binaries in tools/bin, and the compiled eBPF objects.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[ensure] %s\n' "$*" >&2; }

# command-or-file -> Debian package
declare -A NEED=(
  [clang]=clang [llc]=llvm [bpftool]=bpftool [ip]=iproute2 [tc]=iproute2 [iperf3]=iperf3
  [openssl]=openssl [make]=make [go]=golang-go [capsh]=libcap2-bin [zsh]=zsh
  [/usr/include/bpf/libbpf.h]=libbpf-dev [/usr/lib/cni/ptp]=containernetworking-plugins
  [containerd]=containerd [ctr]=containerd [runc]=runc
)
missing=()
for what in "${!NEED[@]}"; do
  if [[ $what == /* ]]; then [[ -e $what ]] || missing+=("${NEED[$what]}")
  else command -v "$what" >/dev/null 2>&1 || missing+=("${NEED[$what]}"); fi
done
if ((${#missing[@]})); then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [[ $(id -u) -eq 0 ]]; then
    log "installing Debian packages: $pkgs"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs >/dev/null
  else
    log "missing Debian packages (run as root to install): $pkgs"
  fi
fi

if [[ $(id -u) -eq 0 ]] && ! mountpoint -q /sys/fs/bpf; then
  log 'mounting bpffs at /sys/fs/bpf'
  mount -t bpf bpf /sys/fs/bpf
fi

# npm ci when node_modules is missing or older than the lock file.
if [[ ! -x node_modules/.bin/node || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log 'npm ci'
  npm ci --no-audit --no-fund --loglevel=error
fi

bash tools/build.sh

# Compiled JavaScript, what the images and the lab run (tsc emits only what changed).
npm run -s build

# The eBPF objects and the dyad-cni forwarder (a small static C binary, see cni/).
make -s -C bpf
make -s -C cni
