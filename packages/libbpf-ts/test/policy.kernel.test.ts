import { Family } from '@dyad/netaddr';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  EndpointFlags,
  Libbpf,
  openPinnedDatapath,
  POLICY_CLASS_BASE,
  PolicyAction,
  policyKeys,
  Proto,
  Reason,
} from '../src/index.ts';
import type { DatapathEvent, DatapathMapSet, PolicyRule } from '../src/index.ts';
import { ensureBpfBuilt } from './helpers/build.ts';
import { EventLog } from './helpers/events.ts';
import { kernelRequired, kernelSkipReason } from './helpers/kernel.ts';
import { KernelFixture } from './helpers/kernel-fixture.ts';
import type { Pod } from './helpers/kernel-fixture.ts';
import { setupNode } from './helpers/topology.ts';

const skip = kernelSkipReason();
if (skip && kernelRequired()) test('kernel tier is required', () => expect.fail(skip));

// a's two addresses resolve to different identities, so a rule for one family's peer prefix
// must not open the other family.
const ID_A4 = 2001;
const ID_A6 = 2002;
const EP_B = 2;

describe.skipIf(skip !== undefined)('default-deny ingress, drop events, allow entries', () => {
  const lab = new KernelFixture();
  const lib = skip === undefined ? Libbpf.open() : undefined;
  let a: Pod;
  let b: Pod;
  let c: Pod;
  let maps: DatapathMapSet;
  let log: EventLog;
  // What beforeAll opened, closed in reverse even when it stopped half-way.
  const teardown: (() => unknown)[] = [];

  const allow = (rule: PolicyRule) => {
    for (const k of policyKeys(rule))
      maps.policy.update(k, { action: PolicyAction.ALLOW, ruleId: 7 });
  };
  const dropOf = (src: string, dst: string, proto: number, dport: number) => (e: DatapathEvent) =>
    e.type === 'drop' && e.src === src && e.dst === dst && e.proto === proto && e.dport === dport;

  beforeAll(async () => {
    ensureBpfBuilt();
    const node = lab.addNode('n1');
    a = lab.addPod(node, 'pa', '198.18.1.11', 'fd00:18:1::11');
    b = lab.addPod(node, 'pb', '198.18.1.12', 'fd00:18:1::12');
    c = lab.addPod(node, 'pc', '198.18.1.13', 'fd00:18:1::13');
    await setupNode(
      lab,
      node,
      [
        { pod: a, endpointId: 1, identity: ID_A4, flags: EndpointFlags.ENFORCE_INGRESS },
        { pod: b, endpointId: EP_B, identity: 1002, flags: EndpointFlags.ENFORCE_INGRESS },
        { pod: c, endpointId: 3, identity: 1003 },
      ],
      {
        ipcache: [
          { prefix: `${a.v4}/32`, identity: ID_A4 },
          { prefix: `${a.v6}/128`, identity: ID_A6 },
          { prefix: `${b.v4}/32`, identity: 1002 },
          { prefix: `${b.v6}/128`, identity: 1002 },
          { prefix: `${c.v4}/32`, identity: 1003 },
          { prefix: `${c.v6}/128`, identity: 1003 },
        ],
      },
    );
    maps = openPinnedDatapath(lib as Libbpf, node.pinDir);
    teardown.push(() => maps.close());
    log = new EventLog(lib as Libbpf, maps.events.fd);
    teardown.push(() => log.close());
    await lab.echoServer(b, [8080, 8081, 9003, 9004]);
  });

  afterAll(async () => {
    for (const undo of teardown.reverse()) await undo();
    lab.cleanup();
  });

  test.each([
    ['IPv4', () => a.v4, () => b.v4, Proto.ICMP, 8, Family.IPv4],
    ['IPv6', () => a.v6, () => b.v6, Proto.ICMPV6, 128, Family.IPv6],
  ])(
    '%s ping into the default-deny pod is dropped and reported',
    async (_n, src, dst, proto, type, family) => {
      expect(await lab.ping(a, dst(), 1, 800)).toBe(false);
      const e = await log.waitFor(dropOf(src(), dst(), proto, type));
      expect(e).toBeDefined();
      expect(e?.reason).toBe(Reason.DROP_POLICY);
      expect(e?.family).toBe(family);
      expect(e?.direction).toBe('ingress');
      expect(e?.ifindex).toBe(b.hostIfindex);
      expect(e?.srcIdentity).toBe(family === Family.IPv4 ? ID_A4 : ID_A6);
      expect(e?.dstIdentity).toBe(1002);
    },
  );

  test('a default-deny pod still resolves its gateway over ND and gets replies to its own flows', async () => {
    lab.nsExec(b.netns, ['ip', '-6', 'neigh', 'flush', 'dev', 'eth0']);
    expect(await lab.ping(b, c.v6, 2)).toBe(true);
    expect(await lab.ping(b, c.v4, 2)).toBe(true);
  });

  test('an allow entry for the peer identity and port opens exactly that port, for that family only', async () => {
    allow({
      endpointId: EP_B,
      identity: ID_A4,
      direction: 'ingress',
      proto: Proto.TCP,
      ports: 8080,
    });
    expect(await lab.echo(a, 'tcp', b.v4, 8080)).toBe(true);

    expect(await lab.echo(a, 'tcp', b.v4, 8081, 800)).toBe(false);
    const syn = await log.waitFor(dropOf(a.v4, b.v4, Proto.TCP, 8081));
    // the refused first packet is a SYN of a new flow, not a reply
    expect(syn?.tcpFlags).toBe(0x02);
    expect(syn?.isReply).toBe(false);

    expect(await lab.echo(a, 'udp', b.v4, 8080, 800)).toBe(false);
    expect(await log.waitFor(dropOf(a.v4, b.v4, Proto.UDP, 8080))).toBeDefined();

    // a's IPv6 prefix maps to another identity: the rule does not apply to it
    expect(await lab.echo(a, 'tcp', b.v6, 8080, 800)).toBe(false);
    const e6 = await log.waitFor(dropOf(a.v6, b.v6, Proto.TCP, 8080));
    expect(e6?.srcIdentity).toBe(ID_A6);
    expect(e6?.family).toBe(Family.IPv6);
  });

  test('a port range entry covers its ends and nothing past them', async () => {
    allow({
      endpointId: EP_B,
      identity: ID_A4,
      direction: 'ingress',
      proto: Proto.TCP,
      ports: { from: 9000, to: 9003 },
    });
    expect(await lab.echo(a, 'tcp', b.v4, 9003)).toBe(true);
    expect(await lab.echo(a, 'tcp', b.v4, 9004, 800)).toBe(false);
  });

  test('a CIDR entry opens what its class allows; the longest entry wins; IPv4 never opens IPv6', async () => {
    allow({
      endpointId: EP_B,
      identity: POLICY_CLASS_BASE,
      direction: 'ingress',
      proto: Proto.TCP,
      ports: 8081,
    });
    const cidr = (prefix: string, classId: number) =>
      maps.policyCidr.update({ endpointId: EP_B, direction: 'ingress', prefix }, { classId });
    cidr('198.18.1.0/24', POLICY_CLASS_BASE);
    // an except: a's /32 maps to a class with no entries
    cidr(`${a.v4}/32`, POLICY_CLASS_BASE + 1);

    expect(await lab.echo(c, 'tcp', b.v4, 8081)).toBe(true);
    expect(await lab.echo(a, 'tcp', b.v4, 8081, 800)).toBe(false);
    expect(await lab.echo(c, 'tcp', b.v4, 9004, 800)).toBe(false);
    expect(await lab.echo(c, 'tcp', b.v6, 8081, 800)).toBe(false);
    const e6 = await log.waitFor(dropOf(c.v6, b.v6, Proto.TCP, 8081));
    expect(e6?.reason).toBe(Reason.DROP_POLICY);

    maps.policyCidr.delete({ endpointId: EP_B, direction: 'ingress', prefix: `${a.v4}/32` });
    expect(await lab.echo(a, 'tcp', b.v4, 8081)).toBe(true);
    cidr('fd00:18:1::/64', POLICY_CLASS_BASE);
    expect(await lab.echo(c, 'tcp', b.v6, 8081)).toBe(true);
  });

  test.each([
    ['IPv4', () => b.v4, ID_A4],
    ['IPv6', () => b.v6, ID_A6],
  ])(
    '%s ICMP errors about an allowed flow reach a default-deny sender',
    async (_n, dst, identity) => {
      // b has nothing on 8082: its stack answers port unreachable, which must pass a's
      // default-deny ingress because it belongs to a's own flow
      allow({ endpointId: EP_B, identity, direction: 'ingress', proto: Proto.UDP, ports: 8082 });
      expect(await lab.echo(a, 'udp-refused', dst(), 8082)).toBe(true);
    },
  );
});
