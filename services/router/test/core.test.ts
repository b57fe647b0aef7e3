import { describe, expect, it } from 'vitest';
import { RouterCore } from '../src/core.ts';
import { canonicalAddress, canonicalPrefix, hostPrefix } from '../src/ip.ts';

const nodeA = {
  podCidrs: ['198.18.1.0/24', 'fd00:18:1::/64'],
  addresses: { IPv4: '198.19.0.1', IPv6: 'fd00:19::1' },
};
const nodeB = {
  podCidrs: ['198.18.2.0/24', 'fd00:18:2::/64'],
  addresses: { IPv4: '198.19.0.2', IPv6: 'fd00:19::2' },
};
const web = {
  node: 'b',
  identity: 70000,
  ips: ['198.18.2.5', 'fd00:18:2::5'],
  since: 1,
  pod: { namespace: 'x', name: 'web' },
};

describe('router core scenarios', () => {
  it('gives each node every pod and node prefix of both families and routes to the other nodes', () => {
    const core = new RouterCore();
    core.setNode('a', nodeA);
    core.setNode('b', nodeB);
    core.setEndpoint('b/web', web);
    const updates = core.drain();
    expect(updates.map((u) => u.node).sort()).toEqual(['a', 'b']);
    const a = core.state('a');
    expect(a.ipcache.get('fd00:18:2::5/128')).toEqual({
      prefix: 'fd00:18:2::5/128',
      identity: 70000,
      kind: 'pod',
      hostNode: 'b',
      hostAddress: 'fd00:19::2',
      local: false,
      pod: { namespace: 'x', name: 'web' },
    });
    expect(a.ipcache.get('198.18.2.0/24')).toMatchObject({
      kind: 'pod-cidr',
      hostAddress: '198.19.0.2',
      identity: 3,
    });
    expect(a.ipcache.get('198.19.0.1/32')).toMatchObject({
      kind: 'node',
      identity: 1,
      local: true,
    });
    expect([...a.routes.values()]).toEqual([
      { family: 'IPv4', cidr: '198.18.2.0/24', viaNode: 'b', via: '198.19.0.2', mode: 'native' },
      { family: 'IPv6', cidr: 'fd00:18:2::/64', viaNode: 'b', via: 'fd00:19::2', mode: 'native' },
    ]);
    expect(core.state('b').ipcache.get('198.18.2.5/32')?.local).toBe(true);
    expect(core.state('b').routes.size).toBe(2);
  });

  it('a node that goes away disappears from every other node, pods included, and its own state is deleted', () => {
    const core = new RouterCore();
    core.setNode('a', nodeA);
    core.setNode('b', nodeB);
    core.setEndpoint('b/web', web);
    core.drain();
    core.removeNode('b');
    const updates = core.drain();
    const forA = updates.find((u) => u.node === 'a');
    const forB = updates.find((u) => u.node === 'b');
    expect(forB?.gone).toBe(true);
    expect(forB?.ipcacheDeletes.length).toBe(10);
    expect([...(forA?.ipcacheDeletes ?? [])].sort()).toEqual(
      [
        '198.18.2.0/24',
        '198.18.2.5/32',
        '198.19.0.2/32',
        'fd00:18:2::/64',
        'fd00:18:2::5/128',
        'fd00:19::2/128',
      ].sort(),
    );
    expect([...(forA?.routeDeletes ?? [])].sort()).toEqual(['198.18.2.0/24', 'fd00:18:2::/64']);
    expect(core.state('a').ipcache.size).toBe(4);
  });

  it('without an address of a family there is no route and no host address for that family', () => {
    const core = new RouterCore();
    core.setNode('a', nodeA);
    core.setNode('b', { ...nodeB, addresses: { IPv4: '198.19.0.2' } });
    core.setEndpoint('b/web', web);
    core.drain();
    const a = core.state('a');
    expect([...a.routes.keys()]).toEqual(['198.18.2.0/24']);
    expect(a.ipcache.get('fd00:18:2::5/128')?.hostAddress).toBeUndefined();
    expect(a.ipcache.get('198.18.2.5/32')?.hostAddress).toBe('198.19.0.2');
  });

  it('a node address change moves the host address of every prefix that node hosts', () => {
    const core = new RouterCore();
    core.setNode('a', nodeA);
    core.setNode('b', nodeB);
    core.setEndpoint('b/web', web);
    core.drain();
    core.setNode('b', { ...nodeB, addresses: { ...nodeB.addresses, IPv6: 'fd00:19::22' } });
    const forA = core.drain().find((u) => u.node === 'a');
    expect(forA?.ipcacheUpserts.map((e) => e.prefix).sort()).toEqual(
      ['fd00:18:2::/64', 'fd00:18:2::5/128', 'fd00:19::22/128'].sort(),
    );
    expect(forA?.ipcacheDeletes).toEqual(['fd00:19::2/128']);
    expect(forA?.routeUpserts).toEqual([
      { family: 'IPv6', cidr: 'fd00:18:2::/64', viaNode: 'b', via: 'fd00:19::22', mode: 'native' },
    ]);
  });

  it('a node that grows a second block set gets both sets routed and in every ipcache', () => {
    const core = new RouterCore();
    core.setNode('a', nodeA);
    core.setNode('b', nodeB);
    core.drain();
    const grown = [...nodeB.podCidrs, '198.18.9.0/24', 'fd00:18:9::/64'];
    core.setNode('b', { ...nodeB, podCidrs: grown });
    const forA = core.drain().find((u) => u.node === 'a');
    expect(forA?.routeUpserts).toEqual([
      { family: 'IPv4', cidr: '198.18.9.0/24', viaNode: 'b', via: '198.19.0.2', mode: 'native' },
      { family: 'IPv6', cidr: 'fd00:18:9::/64', viaNode: 'b', via: 'fd00:19::2', mode: 'native' },
    ]);
    expect(forA?.ipcacheUpserts.map((e) => [e.prefix, e.kind, e.hostNode])).toEqual([
      ['198.18.9.0/24', 'pod-cidr', 'b'],
      ['fd00:18:9::/64', 'pod-cidr', 'b'],
    ]);
    expect([...core.state('a').routes.keys()].sort()).toEqual(
      ['198.18.2.0/24', '198.18.9.0/24', 'fd00:18:2::/64', 'fd00:18:9::/64'].sort(),
    );
    // The same assignment in another order or spelling changes nothing.
    core.setNode('b', { ...nodeB, podCidrs: [...grown].reverse().concat('198.18.9.7/24') });
    expect(core.drain()).toEqual([]);
    // The node's removal takes every set's routes away.
    core.removeNode('b');
    const gone = core.drain().find((u) => u.node === 'a');
    expect([...(gone?.routeDeletes ?? [])].sort()).toEqual(
      ['198.18.2.0/24', '198.18.9.0/24', 'fd00:18:2::/64', 'fd00:18:9::/64'].sort(),
    );
  });

  it('of two endpoints on one address the newer wins, and the older returns when the newer goes', () => {
    const core = new RouterCore();
    core.setNode('b', nodeB);
    core.setEndpoint('old', { ...web, identity: 1111 + 70000, since: 1 });
    core.setEndpoint('new', { ...web, identity: 2222 + 70000, since: 2 });
    core.drain();
    expect(core.state('b').ipcache.get('198.18.2.5/32')?.identity).toBe(72222);
    core.removeEndpoint('new');
    core.drain();
    expect(core.state('b').ipcache.get('198.18.2.5/32')?.identity).toBe(71111);
  });

  it('revisions only grow, and a drain without changes hands out none', () => {
    const core = new RouterCore({ revision: 41 });
    core.setNode('a', nodeA);
    expect(core.drain()[0]?.revision).toBe(42);
    core.setNode('a', nodeA);
    expect(core.drain()).toEqual([]);
    expect(core.revision).toBe(42);
  });

  it('a new node with an empty world still gets an update, so its agent knows it is complete', () => {
    const core = new RouterCore();
    core.setNode('a', { podCidrs: [], addresses: {} });
    expect(core.drain()).toMatchObject([{ node: 'a', ipcacheEntries: 0, routes: 0, gone: false }]);
  });
});

describe('addresses', () => {
  it('canonicalizes addresses and prefixes (RFC 5952, host bits cleared)', () => {
    expect(canonicalAddress('FD00:0019:0000:0000:0000:0000:0000:0001')).toBe('fd00:19::1');
    expect(canonicalAddress('fd00:0:0:1:0:0:0:1')).toBe('fd00:0:0:1::1');
    expect(canonicalAddress('::ffff:198.18.0.1')).toBe('::ffff:c612:1');
    expect(canonicalAddress('198.018.0.1')).toBeUndefined();
    expect(canonicalPrefix('198.18.2.7/24')).toBe('198.18.2.0/24');
    expect(canonicalPrefix('fd00:18:2:0:ffff::/64')).toBe('fd00:18:2::/64');
    expect(canonicalPrefix('fd00::/129')).toBeUndefined();
    expect(hostPrefix('fd00::1')).toBe('fd00::1/128');
  });
});
