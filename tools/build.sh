#!/usr/bin/env bash
# Builds the pinned upstream binaries (tools/versions.env) with this machine's Go toolchain,
# from the Go module proxy, into a per-user cache outside the repo, then links them into tools/bin.
#
#   bash tools/build.sh            # build what is missing, link everything into tools/bin
#   bash tools/build.sh etcd kubectl   # only these
#
# Env: DYAD_TOOLS_CACHE (default ~/.cache/dyad/tools).
set -euo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN_DIR="$TOOLS_DIR/bin"
CACHE="${DYAD_TOOLS_CACHE:-$HOME/.cache/dyad/tools}"

# shellcheck source=versions.env
source "$TOOLS_DIR/versions.env"

ALL=(nats-server cnitool helm etcd kubectl kube-apiserver kube-controller-manager kube-scheduler kubelet jaeger)

# Bump when the build recipe (flags, layout) changes so cached binaries get rebuilt.
RECIPE=1

die() {
  echo "tools/build.sh: ERROR: $*" >&2
  exit 1
}

version_of() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl | kubelet) echo "$KUBERNETES_VERSION" ;;
    nats-server) echo "$NATS_SERVER_VERSION" ;;
    cnitool) echo "$CNI_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    jaeger) echo "$JAEGER_VERSION" ;;
    *) die "unknown binary '$1' (known: ${ALL[*]})" ;;
  esac
}

stamp_text() { echo "$1 $2 recipe=$RECIPE"; }

is_cached() {
  local name=$1 version=$2 dir="$CACHE/$1-$2"
  [[ -x "$dir/$name" && -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$(stamp_text "$name" "$version")" ]]
}

link_into_bin() {
  local name=$1 version=$2 src="$CACHE/$1-$2/$1"
  mkdir -p "$BIN_DIR"
  if [[ "$BIN_DIR/$name" -ef "$src" ]]; then return 0; fi
  # Hard link when the cache shares the filesystem; a copy otherwise.
  ln -f "$src" "$BIN_DIR/$name" 2>/dev/null || cp -f "$src" "$BIN_DIR/$name"
}

go_env() {
  # The machine's toolchain only (no toolchain downloads); static binaries like upstream releases.
  env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod "$@"
}

# Runs a build step with its output in <dir>/build.log; on failure names the binary and shows the log tail.
run_logged() {
  local name=$1 log=$2
  shift 2
  if ! "$@" >>"$log" 2>&1; then
    echo "tools/build.sh: FAILED building $name; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

# Creates (once) a throwaway Go module in $moddir that requires $module@$version and redirects every
# module that $module's go.mod replaces with a local path (k8s staging dirs, etcd sibling modules)
# to the published module at $replace_version. `go install pkg@version` refuses modules with replace
# directives; this is the workaround.
prepare_module() {
  local name=$1 moddir=$2 module=$3 version=$4 replace_version=$5 log=$6
  if [[ -f "$moddir/.ready" && "$(cat "$moddir/.ready")" == "$module@$version" ]]; then return 0; fi
  rm -rf "$moddir"
  mkdir -p "$moddir"
  local gomod
  # -json reports a download error inside the JSON, so all of it goes to the log.
  (cd "$moddir" && go_env go mod download -json "$module@$version") >"$moddir/download.json" 2>>"$log" || true
  cat "$moddir/download.json" >>"$log"
  gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' "$moddir/download.json")
  [[ -n "$gomod" && -f "$gomod" ]] || {
    echo "tools/build.sh: FAILED building $name: cannot download $module@$version; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  }
  # Module paths required anywhere in the upstream go.mod (replacements for modules that are not
  # required, like k8s.io/sample-controller, may not be published, so they are left out).
  local required
  required=$(awk '
    /^require[[:space:]]*\(/ { inreq = 1; next }
    inreq && /^\)/ { inreq = 0; next }
    inreq && NF >= 2 { print $1 }
    /^require[[:space:]]+[^(]/ { print $2 }
  ' "$gomod" | sort -u)
  local replaced
  replaced=$(awk '
    /^replace[[:space:]]*\(/ { inrep = 1; next }
    inrep && /^\)/ { inrep = 0; next }
    inrep && $2 == "=>" && ($3 ~ /^\.\.?\//) { print $1 }
    /^replace[[:space:]]+[^(]/ && $3 == "=>" && ($4 ~ /^\.\.?\//) { print $2 }
  ' "$gomod" | sort -u)
  local args=("-require=$module@$version")
  local m
  for m in $(comm -12 <(echo "$required") <(echo "$replaced")); do
    args+=("-replace=$m=$m@$replace_version")
  done
  run_logged "$name" "$log" bash -c "cd '$moddir' && go mod init dyad.local/tools-build && go mod edit $(printf "'%s' " "${args[@]}")"
  echo "$module@$version" >"$moddir/.ready"
}

build_kube() {
  local name=$1 version=$2 out=$3 log=$4
  local minor_patch=${version#v1.}
  local moddir="$CACHE/kubernetes-$version-module"
  prepare_module "$name" "$moddir" k8s.io/kubernetes "$version" "v0.$minor_patch" "$log"
  local major=${version#v}
  major=${major%%.*}
  local minor=${minor_patch%%.*}
  local ld="-s -w"
  local key val pkg
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    for key in gitVersion gitMajor gitMinor gitTreeState; do
      case $key in
        gitVersion) val=$version ;;
        gitMajor) val=$major ;;
        gitMinor) val=$minor ;;
        gitTreeState) val=clean ;;
      esac
      ld+=" -X $pkg.$key=$val"
    done
  done
  run_logged "$name" "$log" bash -c "cd '$moddir' && $(declare -f go_env); go_env go build -trimpath -ldflags '$ld' -o '$out' k8s.io/kubernetes/cmd/$name"
}

build_etcd() {
  local name=$1 version=$2 out=$3 log=$4
  local moddir="$CACHE/etcd-$version-module"
  prepare_module "$name" "$moddir" go.etcd.io/etcd/server/v3 "$version" "$version" "$log"
  run_logged "$name" "$log" bash -c "cd '$moddir' && $(declare -f go_env); go_env go build -trimpath -ldflags '-s -w' -o '$out' go.etcd.io/etcd/server/v3"
}

# Jaeger's go.mod pins a dependency with a version replace (sarama), which `go install pkg@version`
# refuses and a requiring module ignores: the throwaway module repeats it.
build_jaeger() {
  local name=$1 version=$2 out=$3 log=$4
  local module=github.com/jaegertracing/jaeger
  local moddir="$CACHE/jaeger-$version-module"
  prepare_module "$name" "$moddir" "$module" "$version" "$version" "$log"
  local gomod
  gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' "$moddir/download.json")
  local r
  while read -r r; do
    [[ -n "$r" ]] && run_logged "$name" "$log" bash -c "cd '$moddir' && go mod edit -replace='$r'"
  done < <(awk '$1 == "replace" && $3 == "=>" && $4 !~ /^\.\.?\// { print $2 "=" $4 "@" $5 }' "$gomod")
  local ld="-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$version"
  run_logged "$name" "$log" bash -c "cd '$moddir' && $(declare -f go_env); go_env go build -trimpath -ldflags '$ld' -o '$out' $module/cmd/jaeger"
}

build_go_install() {
  local name=$1 pkg=$2 version=$3 outdir=$4 log=$5
  run_logged "$name" "$log" bash -c "cd '$outdir' && $(declare -f go_env); GOBIN='$outdir' go_env go install -trimpath -ldflags '-s -w' '$pkg@$version'"
}

# helm has no replace directives, so `go install pkg@version` works as for nats-server; what it
# needs beyond that are the ldflags its Makefile sets: the version (else `helm version` says
# "v3.21"), and the Kubernetes version that `helm template` and `helm lint` assume when no cluster
# is asked (`.Capabilities.KubeVersion`, default v1.20 otherwise): that of the client-go it is
# built with, read from helm's own go.mod (v0.36.x -> 1.36), as its Makefile does.
build_helm() {
  local name=$1 version=$2 outdir=$3 log=$4
  local gomod minor
  gomod=$( (cd "$outdir" && go_env go mod download -json "helm.sh/helm/v3@$version") 2>>"$log" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [[ -n "$gomod" && -f "$gomod" ]] || {
    echo "tools/build.sh: FAILED building $name: cannot download helm.sh/helm/v3@$version; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  }
  minor=$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2]; exit }' "$gomod")
  [[ -n "$minor" ]] || die "cannot read the client-go version from $gomod"
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
  ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local pkg
  for pkg in chartutil lint/rules; do
    ld+=" -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=$minor"
  done
  run_logged "$name" "$log" bash -c "cd '$outdir' && $(declare -f go_env); GOBIN='$outdir' go_env go install -trimpath -ldflags '$ld' 'helm.sh/helm/v3/cmd/helm@$version'"
}

# Best-effort version line of a freshly built binary, for the summary.
reported_version() {
  local bin=$1
  case "$(basename "$bin")" in
    kubectl) "$bin" version --client 2>/dev/null | head -n 1 ;;
    cnitool) echo "(no --version flag)" ;;
    helm) "$bin" version --template '{{.Version}} {{.GoVersion}}' 2>/dev/null ;;
    jaeger) "$bin" version 2>/dev/null | head -n 1 ;;
    *) "$bin" --version 2>/dev/null | head -n 1 ;;
  esac
}

build_one() {
  local name=$1 version
  version=$(version_of "$name")
  local dir="$CACHE/$name-$version"
  if is_cached "$name" "$version"; then
    link_into_bin "$name" "$version"
    printf '%-24s cached  %s\n' "$name" "$version"
    return 0
  fi
  command -v go >/dev/null || die "go is not on PATH; needed to build $name"
  mkdir -p "$dir"
  rm -f "$dir/.stamp"
  local log="$dir/build.log"
  : >"$log"
  local start=$SECONDS
  echo "building $name $version (log: $log) ..."
  case "$name" in
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl | kubelet)
      build_kube "$name" "$version" "$dir/$name.tmp" "$log"
      mv -f "$dir/$name.tmp" "$dir/$name"
      ;;
    etcd)
      build_etcd "$name" "$version" "$dir/$name.tmp" "$log"
      mv -f "$dir/$name.tmp" "$dir/$name"
      ;;
    nats-server)
      build_go_install "$name" github.com/nats-io/nats-server/v2 "$version" "$dir" "$log"
      ;;
    cnitool)
      build_go_install "$name" github.com/containernetworking/cni/cnitool "$version" "$dir" "$log"
      ;;
    helm)
      build_helm "$name" "$version" "$dir" "$log"
      ;;
    jaeger)
      build_jaeger "$name" "$version" "$dir/$name.tmp" "$log"
      mv -f "$dir/$name.tmp" "$dir/$name"
      ;;
  esac
  [[ -x "$dir/$name" ]] || die "building $name produced no binary at $dir/$name (see $log)"
  stamp_text "$name" "$version" >"$dir/.stamp"
  link_into_bin "$name" "$version"
  printf '%-24s built   %s in %ds: %s\n' "$name" "$version" $((SECONDS - start)) "$(reported_version "$dir/$name")"
}

main() {
  local names=("$@")
  if [[ ${#names[@]} -eq 0 ]]; then names=("${ALL[@]}"); fi
  mkdir -p "$CACHE"
  # Two builds at once (e.g. two shells) would race on the throwaway modules.
  exec 9>"$CACHE/.lock"
  flock 9
  local n
  for n in "${names[@]}"; do
    version_of "$n" >/dev/null
  done
  for n in "${names[@]}"; do
    build_one "$n"
  done
}

main "$@"
