// A replica over the in-memory KV, for the allocation protocol tests: its own table (watching the
// bucket unless told not to) and allocator. Tables it starts are added to `started`, for the
// test's afterEach to stop.
import type { AllocateInput } from '../src/allocator.ts';
import { Allocator } from '../src/allocator.ts';
import type { NodeBlocks } from '../src/record.ts';
import { IpamStore } from '../src/store.ts';
import { IpamTable } from '../src/table.ts';
import type { FakeKv } from './fake-kv.ts';

export interface FakeReplica {
  readonly allocator: Allocator;
  readonly table: IpamTable;
}

export async function fakeReplica(
  kv: FakeKv,
  name: string,
  watch: boolean,
  started: IpamTable[],
): Promise<FakeReplica> {
  const store = new IpamStore(kv.asKv());
  const table = new IpamTable();
  if (watch) {
    await table.start(store.kv, (err) => {
      throw err;
    });
    started.push(table);
  }
  const sync = watch ? () => table.sync(store.kv, name) : async () => undefined;
  return { allocator: new Allocator(store, table, sync, Date.now), table };
}

/** A node with room for 253 pods. */
export const DUAL: NodeBlocks = {
  IPv4: { cidr: '198.18.4.0/24', gateway: '198.18.4.1' },
  IPv6: { cidr: 'fd00:d1ad::400/120', gateway: 'fd00:d1ad::401' },
};
/** A node whose IPv4 block holds 13 pods: for filling it. */
export const SMALL: NodeBlocks = {
  IPv4: { cidr: '198.18.0.0/28', gateway: '198.18.0.1' },
  IPv6: { cidr: 'fd00::/120', gateway: 'fd00::1' },
};

/** Sandbox i's dual-stack request on node n1 (container `c<i>`, pod `p-<i>`). */
export function sandboxRequest(
  i: number,
  blocks: NodeBlocks,
  over: Partial<AllocateInput> = {},
): AllocateInput {
  return {
    node: 'n1',
    namespace: 'default',
    pod: `p-${i}`,
    podUid: `uid-${i}`,
    containerId: `c${i}`,
    families: ['IPv4', 'IPv6'],
    blocks,
    ...over,
  };
}
