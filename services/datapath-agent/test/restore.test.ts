// What a start finds on disk decides how the agent restores; an endpoint whose addresses the
// allocator does not hold must be adopted before any ADD, or its addresses could go to another pod.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { NodeDatapath } from '../src/datapath/node.ts';
import { NodeAllocator } from '../src/ipam/allocator.ts';
import { prepareRestore } from '../src/restore.ts';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function endpoint(id: string, phase: 'adding' | 'ready', last: number) {
  return {
    phase,
    containerId: id,
    ifName: 'eth0',
    network: 'dyad',
    netns: `/run/netns/${id}`,
    pod: { namespace: 'default', name: id },
    endpointId: last,
    ipv4: { address: `198.18.0.${last}`, cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
    mac: '0a:00:00:00:00:01',
    hostIfName: `dy${id}`,
    hostIfindex: 10 + last,
    hostMac: '0e:00:00:00:00:01',
    mtu: 1500,
    identity: 3,
    flags: 0,
    createdAt: '2026-01-01T00:00:00.000Z',
  };
}

function start(file: unknown, kernelEndpoints = 0) {
  const dir = mkdtempSync(join(tmpdir(), 'dyad-restore-'));
  dirs.push(dir);
  const path = join(dir, 'state.json');
  if (file !== undefined) writeFileSync(path, JSON.stringify(file));
  const datapath = { endpoints: { size: kernelEndpoints } } as unknown as NodeDatapath;
  return prepareRestore({ stateFile: path, node: 'n1', datapath, logger: quiet });
}

describe('what a start finds', () => {
  it('its own file: endpoints the allocator does not hold are adopted, held and half-made ones not', () => {
    const a = new NodeAllocator();
    a.setBlocks([{ family: 'IPv4', cidr: '198.18.0.0/24', gateway: '198.18.0.1' }]);
    a.allocate({ containerId: 'held', pod: { namespace: 'default', name: 'held' } });
    const s = start({
      v: 2,
      node: 'n1',
      ipam: a.toJSON(),
      endpoints: [
        endpoint('held', 'ready', 2),
        endpoint('orphan', 'ready', 9),
        endpoint('half', 'adding', 7),
      ],
    });
    expect(s.mode).toBe('state');
    expect(s.adopt.map((h) => h.containerId)).toEqual(['orphan']);
    expect(s.adopt[0]?.addresses).toEqual(['198.18.0.9']);
  });

  it("the previous design's file: its ready endpoints are adopted, an `adding` one (rolled back) and a `releasing` one are not", () => {
    const s = start({
      v: 1,
      node: 'n1',
      endpoints: [
        endpoint('a', 'ready', 2),
        endpoint('b', 'adding', 3),
        { ...endpoint('c', 'ready', 4), phase: 'releasing' },
      ],
    });
    expect(s.mode).toBe('legacy');
    expect(s.endpoints.map((e) => e.containerId)).toEqual(['a', 'b']);
    expect(s.adopt.map((h) => h.containerId)).toEqual(['a']);
  });

  it('no file: fresh with an empty kernel, a rebuild when the kernel holds endpoints; an unreadable file counts as none', () => {
    expect(start(undefined).mode).toBe('fresh');
    expect(start(undefined, 4).mode).toBe('rebuild');
    expect(start({ v: 9 }, 4).mode).toBe('rebuild');
  });
});
