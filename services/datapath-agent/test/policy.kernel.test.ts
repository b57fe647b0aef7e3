// NetworkPolicy enforcement end to end on one node: io.dyad.node.policy.v2 messages on NATS, the
// real agent, the pinned maps and real traffic between pod netns. Peers by identity with a port
// range, ipBlocks with except in both families, an IPv4-only block isolating IPv6, replies to an
// allowed connection, drops counted by reason and family, SCTP ports, and fail closed: a
// malformed message and an agent restart (without NATS, then with only the malformed message on
// NATS) leave the last enforced state in the kernel until a fresh message arrives.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import {
  DeadLetterStream,
  NodeDesiredStream,
  PodIdentityEvent,
  PodPolicyDesiredV2,
  RouterIpcacheEvent,
  RouterStream,
  deadLetterSubject,
  nodePolicySubject,
  routerIpcacheSubject,
} from '@dyad/contracts';
import type { DirectionPolicyValue } from '@dyad/contracts';
import { EndpointFlags, Libbpf, Reason, openPinnedDatapath } from '@dyad/libbpf-ts';
import type { DatapathMapSet } from '@dyad/libbpf-ts';
import { FAMILIES, Family, FamilyVersion } from '@dyad/netaddr';
import { directionEntries } from '../src/datapath/desired-maps.ts';
import { REPO_ROOT, ensureBpfBuilt, ensureCniBuilt } from './helpers/build.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { AgentHarness, IPAM_ENV, apiGet, spawnIn } from './helpers/harness.ts';
import type { AgentHandle } from './helpers/harness.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

// the echo server and client libbpf-ts's kernel tests use (TCP and UDP, both families)
const ECHO = join(REPO_ROOT, 'packages', 'libbpf-ts', 'test', 'helpers', 'echo.ts');
const SCTP = join(REPO_ROOT, 'services', 'datapath-agent', 'test', 'helpers', 'sctp.ts');
const WAIT = { timeout: 20_000, interval: 100 };
const ID = { pa: 70_001, pb: 70_002, pc: 70_003 } as const;
const PORTS = [80, 8080, 8081, 8082] as const;

interface Pod {
  readonly name: keyof typeof ID;
  readonly netns: string;
  readonly v4: string;
  readonly v6: string;
  endpointId: number;
}

const OPEN: DirectionPolicyValue = { enforce: false, peers: [], cidrs: { IPv4: [], IPv6: [] } };
const DENY: DirectionPolicyValue = { ...OPEN, enforce: true };

/** The cluster pools every pod address comes from, as ipBlocks. */
const POOL4 = IPAM_ENV['DYAD_CLUSTER_POOL_IPV4_CIDR'] ?? '';
const POOL6 = IPAM_ENV['DYAD_CLUSTER_POOL_IPV6_CIDR'] ?? '';

describe.skipIf(skip !== undefined)('NetworkPolicy v2 enforced in the kernel', () => {
  const lab = new AgentHarness();
  const lib = skip === undefined ? Libbpf.open() : undefined;
  let agent: AgentHandle;
  let maps: DatapathMapSet;
  // What beforeAll opened, closed in reverse even when it stopped half-way.
  const teardown: (() => unknown)[] = [];
  const pods = {} as Record<keyof typeof ID, Pod>;

  const echo = async (from: Pod, proto: 'tcp' | 'udp', dst: string, port: number) => {
    const r = await lab.nsExec(from.netns, [
      process.execPath,
      ECHO,
      'client',
      proto,
      dst,
      String(port),
      '1000',
    ]);
    return r.code === 0;
  };

  /** One crafted SCTP packet from `from` to `to` (address of `family`); true when it arrived. */
  const sctp = async (from: Pod, to: Pod, family: Family, dport: number) => {
    const nonce = Math.floor(Math.random() * 0xffffffff);
    const rx = spawnIn(to.netns, [
      process.execPath,
      SCTP,
      'recv',
      String(FamilyVersion[family]),
      // a hang guard: the verdict is taken below, a moment after the packet has been sent
      '60000',
      String(nonce),
    ]);
    lab.spawnChild(rx);
    const exited = new Promise<number | null>((resolve) => rx.once('exit', resolve));
    await new Promise<void>((resolve, reject) => {
      rx.stdout?.on('data', (d: Buffer) => {
        if (d.toString().includes('ready')) resolve();
      });
      rx.once('exit', (code) => reject(new Error(`sctp receiver exited ${code}`)));
    });
    const dst = family === Family.IPv4 ? to.v4 : to.v6;
    const tx = await lab.nsExec(from.netns, [
      process.execPath,
      SCTP,
      'send',
      dst,
      '40000',
      String(dport),
      String(nonce),
    ]);
    expect(tx, tx.stderr).toMatchObject({ code: 0 });
    // sent: it has arrived by now or a moment later, or it was dropped (however slow the
    // machine was to start the two processes)
    const late = setTimeout(() => rx.kill('SIGKILL'), 1000);
    const code = await exited;
    clearTimeout(late);
    return code === 0;
  };

  const publish = (pod: Pod, ingress: DirectionPolicyValue, egress: DirectionPolicyValue) =>
    lab.bus.jsPublish(PodPolicyDesiredV2, nodePolicySubject('n1', 'default', pod.name), {
      op: 'upsert',
      namespace: 'default',
      name: pod.name,
      uid: `uid-${pod.name}`,
      identity: ID[pod.name],
      policies: ['p'],
      ingress,
      egress,
    });

  /** What the pinned maps hold for one endpoint: its flags and its policy entries, sorted. */
  const kernelState = (pod: Pod) => {
    const flags = [pod.v4, pod.v6].map((address) => maps.endpoints.lookup({ address })?.flags);
    const policy = [...maps.policy.entries()]
      .filter(([k]) => k.endpointId === pod.endpointId)
      .map(([k, v]) => JSON.stringify({ ...k, ...v }))
      .sort();
    const cidr = [...maps.policyCidr.entries()]
      .filter(([k]) => k.endpointId === pod.endpointId)
      .map(([k, v]) => JSON.stringify({ ...k, ...v }))
      .sort();
    return { flags, policy, cidr };
  };

  /** The state the pure function calls for, as kernelState spells it. */
  const wantedState = (pod: Pod, ingress: DirectionPolicyValue, egress: DirectionPolicyValue) => {
    const i = directionEntries(pod.endpointId, 'ingress', ingress);
    const e = directionEntries(pod.endpointId, 'egress', egress);
    const flags =
      (ingress.enforce ? EndpointFlags.ENFORCE_INGRESS : 0) |
      (egress.enforce ? EndpointFlags.ENFORCE_EGRESS : 0);
    return {
      flags: [flags, flags],
      policy: [...i.policy, ...e.policy].map(([k, v]) => JSON.stringify({ ...k, ...v })).sort(),
      cidr: [...i.cidr, ...e.cidr].map(([k, v]) => JSON.stringify({ ...k, ...v })).sort(),
    };
  };

  /** Publishes a pod's policy and waits until the kernel holds exactly what it calls for. */
  const enforce = async (pod: Pod, ingress: DirectionPolicyValue, egress = OPEN) => {
    await publish(pod, ingress, egress);
    const want = wantedState(pod, ingress, egress);
    await vi.waitFor(() => expect(kernelState(pod)).toEqual(want), WAIT);
  };

  const dropCount = async (family: Family) => {
    const m = (await apiGet(agent.apiSocket, '/v1/bpf/metrics')).body as Array<{
      reason: number;
      direction: string | number;
      family: number;
      packets: number;
    }>;
    return m
      .filter((e) => e.reason === Reason.DROP_POLICY && e.direction === 'ingress')
      .filter((e) => e.family === FamilyVersion[family])
      .reduce((a, e) => a + e.packets, 0);
  };

  beforeAll(async () => {
    ensureBpfBuilt();
    ensureCniBuilt();
    await lab.start();
    await lab.bus.ensureStreams([RouterStream, NodeDesiredStream, DeadLetterStream]);
    await lab.addNode('n1');
    agent = await lab.startAgent('n1');
    maps = openPinnedDatapath(lib as Libbpf, agent.pinDir);
    teardown.push(() => maps.close());
    for (const name of ['pa', 'pb', 'pc'] as const) {
      const netns = lab.addPodNetns(name);
      const r = await lab.cnitool(agent, 'add', netns, { namespace: 'default', name });
      if (r.code !== 0) throw new Error(`ADD ${name}: ${r.stdout}${r.stderr}`);
      const ips = (JSON.parse(r.stdout) as { ips: Array<{ address: string }> }).ips.map(
        (i) => i.address.split('/')[0] ?? '',
      );
      pods[name] = {
        name,
        netns,
        v4: ips.find((a) => a.includes('.')) ?? '',
        v6: ips.find((a) => a.includes(':')) ?? '',
        endpointId: 0,
      };
      const server = spawnIn(netns, [process.execPath, ECHO, 'server', ...PORTS.map(String)]);
      lab.spawnChild(server);
      await new Promise<void>((resolve, reject) => {
        server.stdout?.on('data', (d: Buffer) => {
          if (d.toString().includes('ready')) resolve();
        });
        server.once('exit', (code) => reject(new Error(`echo server exited ${code}`)));
      });
    }
    // the router names each pod's identity, as it would from the policy service
    let revision = 0;
    for (const p of Object.values(pods))
      for (const prefix of [`${p.v4}/32`, `${p.v6}/128`])
        await lab.bus.jsPublish(RouterIpcacheEvent, routerIpcacheSubject('n1', prefix), {
          op: 'upsert',
          node: 'n1',
          revision: ++revision,
          entry: {
            prefix,
            identity: ID[p.name],
            kind: 'pod',
            hostNode: 'n1',
            local: true,
            pod: { namespace: 'default', name: p.name },
          },
        });
    await vi.waitFor(async () => {
      const eps = (await apiGet(agent.apiSocket, '/v1/endpoints')).body as Array<{
        pod: { name: keyof typeof ID };
        identity: number;
        endpointId: number;
      }>;
      for (const p of Object.values(pods)) {
        const ep = eps.find((e) => e.pod.name === p.name);
        expect(ep?.identity).toBe(ID[p.name]);
        p.endpointId = ep?.endpointId ?? 0;
      }
      for (const p of Object.values(pods))
        expect(maps.endpoints.lookup({ address: p.v6 })?.identity).toBe(ID[p.name]);
    }, WAIT);
  });

  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
    await lab.cleanup();
  });

  test('an identity peer with a port range: exactly those ports from that peer, both families; replies to it pass a closed egress', async () => {
    const { pa, pb, pc } = pods;
    // b accepts TCP 8080-8081 from a only, and may open nothing itself
    await enforce(
      pb,
      {
        ...DENY,
        peers: [
          { identities: [ID.pa], allow: [{ protocol: 'TCP', ports: { from: 8080, to: 8081 } }] },
        ],
      },
      DENY,
    );
    for (const dst of [pb.v4, pb.v6]) {
      // each connection's replies leave b through its closed egress: conntrack lets them out
      expect(await echo(pa, 'tcp', dst, 8080), `a → ${dst}:8080`).toBe(true);
      expect(await echo(pa, 'tcp', dst, 8081), `a → ${dst}:8081`).toBe(true);
      expect(await echo(pa, 'tcp', dst, 8082), `a → ${dst}:8082`).toBe(false);
      expect(await echo(pa, 'tcp', dst, 80), `a → ${dst}:80`).toBe(false);
      expect(await echo(pa, 'udp', dst, 8080), `a → ${dst}:8080/udp`).toBe(false);
      expect(await echo(pc, 'tcp', dst, 8080), `c → ${dst}:8080`).toBe(false);
    }
    // b's own new connections stay closed
    expect(await echo(pb, 'tcp', pa.v4, 8080)).toBe(false);
    expect(await echo(pb, 'tcp', pa.v6, 8080)).toBe(false);
  });

  test.each(FAMILIES)(
    '%s ipBlock with except: the block opens its ports, the except stays closed',
    async (family) => {
      const { pa, pb, pc } = pods;
      const block = family === Family.IPv4 ? POOL4 : POOL6;
      const except = family === Family.IPv4 ? `${pc.v4}/32` : `${pc.v6}/128`;
      const entries = [
        { prefix: block, allow: [{ protocol: 'TCP' as const, ports: { from: 8080, to: 8080 } }] },
        { prefix: except, allow: [] },
      ];
      await enforce(pb, {
        ...DENY,
        cidrs: family === Family.IPv4 ? { IPv4: entries, IPv6: [] } : { IPv4: [], IPv6: entries },
      });
      const dst = family === Family.IPv4 ? pb.v4 : pb.v6;
      expect(await echo(pa, 'tcp', dst, 8080)).toBe(true);
      expect(await echo(pa, 'tcp', dst, 8081)).toBe(false);
      expect(await echo(pc, 'tcp', dst, 8080)).toBe(false);
      // the other family has no block: closed, whoever asks
      const other = family === Family.IPv4 ? pb.v6 : pb.v4;
      expect(await echo(pa, 'tcp', other, 8080)).toBe(false);
    },
  );

  test("an IPv4-only ipBlock policy blocks the pod's IPv6 traffic in that direction; drops are counted by reason and family", async () => {
    const { pa, pb } = pods;
    await enforce(pb, {
      ...DENY,
      cidrs: { IPv4: [{ prefix: '0.0.0.0/0', allow: [{}] }], IPv6: [] },
    });
    const before6 = await dropCount(Family.IPv6);
    const before4 = await dropCount(Family.IPv4);
    expect(await echo(pa, 'tcp', pb.v4, 8080)).toBe(true);
    expect(await lab.ping(pa.netns, pb.v4, 1)).toEqual({ sent: 1, received: 1 });
    expect(await echo(pa, 'tcp', pb.v6, 8080)).toBe(false);
    expect(await echo(pa, 'udp', pb.v6, 8080)).toBe(false);
    expect(await lab.ping(pa.netns, pb.v6, 1, 500)).toEqual({ sent: 1, received: 0 });
    await vi.waitFor(
      async () => expect(await dropCount(Family.IPv6)).toBeGreaterThanOrEqual(before6 + 3),
      WAIT,
    );
    expect(await dropCount(Family.IPv4)).toBe(before4);
  });

  test('an SCTP port rule admits that SCTP port only, in both families', async () => {
    const { pa, pb, pc } = pods;
    await enforce(pb, {
      ...DENY,
      peers: [
        { identities: [ID.pa], allow: [{ protocol: 'SCTP', ports: { from: 9000, to: 9000 } }] },
      ],
    });
    for (const family of FAMILIES) {
      expect(await sctp(pa, pb, family, 9000), `${family} a → b 9000`).toBe(true);
      expect(await sctp(pa, pb, family, 9001), `${family} a → b 9001`).toBe(false);
      expect(await sctp(pc, pb, family, 9000), `${family} c → b 9000`).toBe(false);
    }
    // the datapath does not take SCTP's ports for TCP's
    expect(await echo(pa, 'tcp', pb.v4, 9000)).toBe(false);
  });

  test('fail closed: a malformed message, a restart without NATS and one with only that message keep the last enforced state', async () => {
    const { pa, pb, pc } = pods;
    const ingress: DirectionPolicyValue = {
      ...DENY,
      peers: [
        { identities: [ID.pa], allow: [{ protocol: 'TCP', ports: { from: 8080, to: 8080 } }] },
      ],
      cidrs: { IPv4: [], IPv6: [{ prefix: POOL6, allow: [{ protocol: 'UDP' }] }] },
    };
    await enforce(pb, ingress, DENY);
    const enforced = kernelState(pb);
    const holds = async (what: string) => {
      expect(kernelState(pb), what).toEqual(enforced);
      expect(await echo(pa, 'tcp', pb.v4, 8080), what).toBe(true);
      expect(await echo(pc, 'tcp', pb.v4, 8080), what).toBe(false);
      expect(await echo(pc, 'tcp', pb.v6, 8080), what).toBe(false);
      expect(await echo(pc, 'udp', pb.v6, 8080), what).toBe(true);
    };

    // another message type on b's policy subject: dead-lettered, nothing changes
    await lab.bus.purgeSubjects(DeadLetterStream.name, deadLetterSubject('datapath-agent'));
    await lab.bus.jsPublish(PodIdentityEvent, nodePolicySubject('n1', 'default', 'pb'), {
      op: 'delete',
      namespace: 'default',
      name: 'pb',
    });
    await vi.waitFor(async () => {
      const n = await lab.bus.purgeSubjects(
        DeadLetterStream.name,
        deadLetterSubject('datapath-agent'),
      );
      expect(n).toBeGreaterThan(0);
    }, WAIT);
    await holds('after the malformed message');

    // restart with NATS unreachable: the agent restores and reconciles before any snapshot
    await agent.proc.kill();
    agent = await lab.startAgent('n1', agent, { NATS_URL: 'nats://127.0.0.1:1' }, false);
    await vi.waitFor(async () => {
      const s = (await apiGet(agent.apiSocket, '/v1/status')).body as { restore?: unknown };
      expect(s.restore).toBeDefined();
    }, WAIT);
    await holds('restarted without NATS');

    // restart with NATS, whose newest value for b is the refused one: still unknown, still held.
    // A router entry published meanwhile shows when the agent has applied its snapshot.
    await agent.proc.kill();
    const marker = '198.19.77.0/24';
    await lab.bus.jsPublish(RouterIpcacheEvent, routerIpcacheSubject('n1', marker), {
      op: 'upsert',
      node: 'n1',
      revision: 1000,
      entry: { prefix: marker, identity: 3, kind: 'pod-cidr', hostNode: 'n9', local: false },
    });
    agent = await lab.startAgent('n1', agent);
    await vi.waitFor(() => expect(maps.ipcache.lookup({ prefix: marker })).toBeDefined(), WAIT);
    await holds('restarted with only the refused message');
    const writes = (
      (await apiGet(agent.apiSocket, '/v1/status')).body as {
        writes: Record<string, { written: number; deleted: number }>;
      }
    ).writes;
    for (const map of ['policy', 'policyCidr'])
      expect(writes[map], map).toMatchObject({ written: 0, deleted: 0 });

    // fresh state opens it
    await enforce(pb, OPEN, OPEN);
    expect(await echo(pc, 'tcp', pb.v4, 8080)).toBe(true);
    expect(await echo(pb, 'tcp', pa.v6, 8080)).toBe(true);
  });
});
