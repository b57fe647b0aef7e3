// The agent's capability set in the chart, tried on the real kernel: with exactly the
// capabilities the rendered DaemonSet grants (capsh bounds a root shell to them), the kernel
// operations the agent makes succeed - load and pin the datapath object's maps and programs,
// create a veth with its peer inside a pod's network namespace, attach a program on tc, enter
// the pod's namespace to configure its side, write a net sysctl - and without the one each
// needs, they fail. Root only; skipped with the reason otherwise (failing when
// DYAD_REQUIRE_KERNEL=1).
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import { kernelRequired, kernelSkipReason, repoRoot } from '@dyad/testbed';
import { render, workload } from './chart.ts';

const skip = kernelSkipReason({
  notRoot: 'capability tests need root (capsh, netns, veth, tc, bpf)',
  tools: ['capsh', 'bpftool', 'tc', 'ip', 'nsenter', 'make', 'clang', 'flock'],
  pinned: ['helm'],
});
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

const OBJECT = join(repoRoot(), 'bpf', 'build', 'datapath.o');
const tag = randomBytes(3).toString('hex');
const NETNS = `dycap${tag}`;
const HOST_IF = `dyc${tag}h`;
const POD_IF = `dyc${tag}p`;
const PIN_DIR = `/sys/fs/bpf/dycap${tag}`;

/** Every capability the kernel knows, as capsh names them (cap_chown, ...). */
function allCapabilities(): string[] {
  const out = execFileSync('capsh', ['--print'], { encoding: 'utf8' });
  const line = out.split('\n').find((l) => l.startsWith('Bounding set ='));
  return (line ?? '')
    .slice('Bounding set ='.length)
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '');
}

/** Runs a shell script as root bounded to `keep` (Kubernetes names: NET_ADMIN, ...). */
function withOnly(keep: readonly string[], script: string): Promise<{ ok: boolean; out: string }> {
  const wanted = new Set(keep.map((c) => `cap_${c.toLowerCase()}`));
  const drop = allCapabilities().filter((c) => !wanted.has(c));
  return new Promise((resolve) => {
    execFile('capsh', [`--drop=${drop.join(',')}`, '--', '-c', script], (err, stdout, stderr) =>
      resolve({ ok: err === null, out: `${stdout}${stderr}` }),
    );
  });
}

const LOAD = `bpftool prog loadall ${OBJECT} ${PIN_DIR} type tc`;
const VETH = `ip link add ${HOST_IF} type veth peer name ${POD_IF} netns ${NETNS}`;
const ATTACH = `tc qdisc add dev ${HOST_IF} clsact && tc filter add dev ${HOST_IF} ingress bpf direct-action pinned ${PIN_DIR}/dy_from_container`;
const ENTER = `nsenter --net=/run/netns/${NETNS} ip addr add 198.18.255.2/32 dev ${POD_IF}`;
// the pod netns's forwarding switch, so the node's is left alone
const SYSCTL = `nsenter --net=/run/netns/${NETNS} capsh --drop=cap_sys_admin -- -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'`;

function cleanup(): void {
  rmSync(PIN_DIR, { recursive: true, force: true });
  for (const args of [
    ['link', 'del', HOST_IF],
    ['netns', 'del', NETNS],
  ]) {
    try {
      execFileSync('ip', args, { stdio: 'ignore' });
    } catch {
      // not there
    }
  }
}

describe.skipIf(skip !== undefined)('the agent capabilities on the kernel', () => {
  let agentCaps: string[] = [];
  let prepareCaps: string[] = [];

  beforeAll(async () => {
    execFileSync(
      'flock',
      ['/tmp/dyad-bpf-build.lock', 'make', '-s', '-C', join(repoRoot(), 'bpf')],
      {
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    const pod = workload(await render('dual'), 'DaemonSet', 'dyad-agent').spec.template.spec;
    agentCaps = [...(pod.containers[0]?.securityContext?.capabilities?.add ?? [])];
    prepareCaps = [
      ...(pod.initContainers?.find((c) => c.name === 'prepare-node')?.securityContext?.capabilities
        ?.add ?? []),
    ];
  });

  afterAll(cleanup);

  it('with exactly the chart capabilities, every operation of the agent succeeds', async () => {
    expect(agentCaps).toEqual(['NET_ADMIN', 'BPF', 'PERFMON', 'SYS_ADMIN']);
    cleanup();
    execFileSync('ip', ['netns', 'add', NETNS]);
    for (const step of [LOAD, VETH, ATTACH, ENTER]) {
      const r = await withOnly(agentCaps, step);
      expect(r.ok, `${step}: ${r.out}`).toBe(true);
    }
    const shown = execFileSync('ip', ['-n', NETNS, '-br', 'addr', 'show', POD_IF], {
      encoding: 'utf8',
    });
    expect(shown).toContain('198.18.255.2/32');
  });

  it("prepare-node's NET_ADMIN is enough to write a net sysctl, and needed", async () => {
    expect(prepareCaps).toEqual(['NET_ADMIN']);
    // nsenter needs SYS_ADMIN; the inner capsh drops it before the write
    const r = await withOnly([...prepareCaps, 'SYS_ADMIN', 'SETPCAP'], SYSCTL);
    expect(r.ok, r.out).toBe(true);
    const none = await withOnly(['SYS_ADMIN', 'SETPCAP'], SYSCTL);
    expect(none.ok).toBe(false);
  });

  it('without NET_ADMIN no veth, no tc program; without SYS_ADMIN no entering the pod', async () => {
    cleanup();
    execFileSync('ip', ['netns', 'add', NETNS]);
    expect((await withOnly(agentCaps, LOAD)).ok).toBe(true);
    const noNetAdmin = agentCaps.filter((c) => c !== 'NET_ADMIN');
    expect((await withOnly(noNetAdmin, VETH)).ok).toBe(false);
    expect((await withOnly(agentCaps, VETH)).ok).toBe(true);
    expect((await withOnly(noNetAdmin, ATTACH)).ok).toBe(false);
    const noSysAdmin = agentCaps.filter((c) => c !== 'SYS_ADMIN');
    expect((await withOnly(noSysAdmin, ENTER)).ok).toBe(false);
  });

  it('BPF with PERFMON (or SYS_ADMIN, which implies both) loads the programs; BPF alone does not', async () => {
    cleanup();
    expect((await withOnly(['NET_ADMIN', 'BPF', 'PERFMON'], LOAD)).ok).toBe(true);
    cleanup();
    // without PERFMON the verifier also checks every speculative path, and the datapath is too
    // complex for that (E2BIG)
    const noPerfmon = await withOnly(['NET_ADMIN', 'BPF'], LOAD);
    expect(noPerfmon.ok).toBe(false);
    cleanup();
    expect((await withOnly(['NET_ADMIN'], LOAD)).ok).toBe(false);
    cleanup();
  });
});
