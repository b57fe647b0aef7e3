// The node allocator and its durable state file under random interleavings, as the agent drives
// them: concurrent ADDs (some raced by a retry with the same container id), DELs, grow requests
// answered by a fake ipam, stale block lists, a family enabled later (a block added to every set,
// which renumbers slots), and crashes that lose every write the disk had not made durable, each
// followed by a restart from what survived. An ADD or DEL is answered only once
// its commit is durable, as the agent answers CNI. After every step:
//   1. no slot is held by two containers (in memory, and in the file on disk);
//   2. a container whose ADD was answered holds the addresses it was given, across any crash,
//      until its DEL is answered (while a DEL is under way or was cut short by a crash: those same
//      addresses or none, never others); a repeated ADD may add a family enabled since, no more;
//   3. a container whose DEL was answered holds nothing, across any crash;
//   4. every allocation is inside the blocks ipam gave: a pod offset of one block of its family.
// And at the end, once every sandbox is deleted, nothing is held (no leak), across a crash too.
// Seeded, so a failure names its seed and reproduces: DYAD_NODE_ALLOC_SEED=<seed>
// DYAD_NODE_ALLOC_SEEDS=1 reruns one; DYAD_NODE_ALLOC_SEEDS=5000 runs more.
import type { Family } from '@dyad/netaddr';
import type { NodeBlockValue } from '@dyad/contracts';
import { ADDRESS_BITS, ipToBigInt, parseIp, parsePrefixLenient } from '@dyad/netaddr';
import { prng } from '@dyad/testbed';
import { describe, expect, test } from 'vitest';
import type { DurableFileHandle, DurableFs } from '../src/durable.ts';
import { GroupCommitFile } from '../src/durable.ts';
import { BlocksChangeError, StateError } from '../src/errors.ts';
import type { PodOwner } from '../src/ipam/allocator.ts';
import { NodeAllocator, NodeAllocatorState } from '../src/ipam/allocator.ts';
import type { SlotAddress } from '../src/ipam/blocks.ts';

const SEEDS = Number(process.env['DYAD_NODE_ALLOC_SEEDS'] ?? '300');
const FIRST_SEED = Number(process.env['DYAD_NODE_ALLOC_SEED'] ?? '1');
const STEPS = 150;
const MAX_SANDBOXES = 40;
const MAX_SETS = 4;
/** The agent asks for another set when fewer slots than this are free. */
const PRE_ALLOCATE = 2;
const DIR = '/state';
const PATH = `${DIR}/ipam.json`;

type Rnd = () => number;

const turn = (): Promise<void> => new Promise<void>((r) => setImmediate(r));

async function turns(rnd: Rnd, max: number): Promise<void> {
  for (let n = Math.floor(rnd() * (max + 1)); n > 0; n--) await turn();
}

/** What a dead process's pending file operations fail with. */
class Crashed extends Error {
  override name = 'Crashed';
}

function errno(code: string, what: string): Error {
  return Object.assign(new Error(`${code}: ${what}`), { code });
}

interface Inode {
  /** What a read sees now (the page cache). */
  data: string;
  /** What survives a crash: the data as of the last fsync of this file. */
  synced: string;
}

/**
 * One directory on a disk that loses what was not made durable: a file's data survives a crash
 * as of its last fsync, and the directory's names (creations, renames, unlinks) as of the last
 * fsync of the directory. Each operation takes effect a random number of event-loop turns after
 * it is called, and one still pending when the disk crashes fails instead (its process is dead).
 * Writing operations fail now and then (EIO) when `faultRate` says so. Each process gets its own
 * view (`process()`): a dead process's file keeps trying to write, and must not reach the disk.
 */
class CrashFs {
  readonly #rnd: Rnd;
  readonly #faultRate: number;
  #names = new Map<string, Inode>();
  #durableNames = new Map<string, Inode>();
  #epoch = 0;
  faults = 0;

  constructor(rnd: Rnd, faultRate: number) {
    this.#rnd = rnd;
    this.#faultRate = faultRate;
  }

  /** Power loss: back to what was durable; every pending operation fails. */
  crash(): void {
    this.#epoch++;
    this.#names = new Map(this.#durableNames);
    for (const inode of this.#names.values()) inode.data = inode.synced;
  }

  /** The file as a reader sees it now, for the on-disk invariant check. */
  peek(path: string): string | undefined {
    return this.#names.get(path)?.data;
  }

  async #settle(epoch: number, writing: boolean, what: string): Promise<void> {
    await turns(this.#rnd, 2);
    if (epoch !== this.#epoch) throw new Crashed(what);
    if (writing && this.#rnd() < this.#faultRate) {
      this.faults++;
      throw errno('EIO', `injected: ${what}`);
    }
  }

  /** The disk as the process starting now sees it, until the next crash. */
  process(): DurableFs {
    const epoch = this.#epoch;
    return {
      open: (path, flags) => this.#open(epoch, path, flags),
      rename: (from, to) => this.#rename(epoch, from, to),
      readFile: (path) => this.#readFile(epoch, path),
      unlink: (path) => this.#unlink(epoch, path),
    };
  }

  async #open(epoch: number, path: string, flags: 'w' | 'r'): Promise<DurableFileHandle> {
    await this.#settle(epoch, flags === 'w', `open ${path}`);
    if (flags === 'r') {
      if (path !== DIR) throw errno('ENOENT', path);
      return this.#handle(epoch, path, () => {
        this.#durableNames = new Map(this.#names);
      });
    }
    let inode = this.#names.get(path);
    if (inode === undefined) {
      inode = { data: '', synced: '' };
      this.#names.set(path, inode);
    } else {
      inode.data = '';
    }
    const file = inode;
    return this.#handle(
      epoch,
      path,
      () => {
        file.synced = file.data;
      },
      (data) => {
        file.data = data;
      },
    );
  }

  #handle(
    epoch: number,
    path: string,
    sync: () => void,
    write?: (data: string) => void,
  ): DurableFileHandle {
    return {
      writeFile: async (data) => {
        await this.#settle(epoch, true, `write ${path}`);
        if (write === undefined) throw errno('EISDIR', path);
        write(data);
      },
      sync: async () => {
        await this.#settle(epoch, true, `fsync ${path}`);
        sync();
      },
      close: async () => {
        await this.#settle(epoch, false, `close ${path}`);
      },
    };
  }

  async #rename(epoch: number, from: string, to: string): Promise<void> {
    await this.#settle(epoch, true, `rename ${from}`);
    const inode = this.#names.get(from);
    if (inode === undefined) throw errno('ENOENT', from);
    this.#names.set(to, inode);
    this.#names.delete(from);
  }

  async #readFile(epoch: number, path: string): Promise<string> {
    await this.#settle(epoch, false, `read ${path}`);
    const inode = this.#names.get(path);
    if (inode === undefined) throw errno('ENOENT', path);
    return inode.data;
  }

  async #unlink(epoch: number, path: string): Promise<void> {
    await this.#settle(epoch, false, `unlink ${path}`);
    if (!this.#names.delete(path)) throw errno('ENOENT', path);
  }
}

/**
 * ipam's side: the node's block sets, one more per grow request that counts the sets it has, and
 * a family enabled later added to every set at once.
 */
class FakeIpam {
  readonly families: Family[];
  readonly sets: NodeBlockValue[][] = [];
  readonly #rnd: Rnd;

  constructor(rnd: Rnd, families: readonly Family[]) {
    this.#rnd = rnd;
    this.families = [...families];
    this.#addSet();
  }

  enable(family: Family): void {
    this.families.push(family);
    this.sets.forEach((set, k) => set.push(this.#block(family, k)));
  }

  list(): NodeBlockValue[] {
    return this.sets.flat();
  }

  /** GrowRequest: a new set only when the node has no more than `sets` (a repeat adds none). */
  grow(sets: number): NodeBlockValue[] {
    if (this.sets.length <= sets && this.sets.length < MAX_SETS) this.#addSet();
    return this.list();
  }

  #addSet(): void {
    const k = this.sets.length;
    this.sets.push(this.families.map((family) => this.#block(family, k)));
  }

  /** Set k sits in the k-th /28 (IPv4) and /124 (IPv6), its blocks of random sizes within. */
  #block(family: Family, k: number): NodeBlockValue {
    const at = 16 * k;
    const shorten = Math.floor(this.#rnd() * 3);
    return family === 'IPv4'
      ? { family, cidr: `198.18.0.${at}/${28 + shorten}`, gateway: `198.18.0.${at + 1}` }
      : {
          family,
          cidr: `fd00:d1ad::${at.toString(16)}/${124 + shorten}`,
          gateway: `fd00:d1ad::${(at + 1).toString(16)}`,
        };
  }
}

interface Sandbox {
  readonly id: string;
  readonly pod: PodOwner;
  readonly families?: readonly Family[];
  addsInFlight: number;
  delInFlight: boolean;
  /** A DEL began at some point (it may have been cut short by a crash or a failed write). */
  delStarted: boolean;
  /** The addresses its answered ADD gave (each as JSON: family, address, cidr, gateway). */
  confirmed?: readonly string[];
  /** Its DEL was answered. */
  released: boolean;
}

interface Proc {
  readonly alloc: NodeAllocator;
  readonly file: GroupCommitFile;
}

interface Tally {
  answeredAdds: number;
  answeredDels: number;
  exhausted: number;
  failedCommits: number;
  crashes: number;
  grown: number;
  staleRefused: number;
  staleIgnored: number;
  familiesEnabled: number;
  renumbered: number;
}

const FAMILY_MODES: readonly (readonly Family[])[] = [
  ['IPv4', 'IPv6'],
  ['IPv6', 'IPv4'],
  ['IPv4'],
  ['IPv6'],
];

/** Invariant 4, by its own arithmetic: a pod offset (2.., no IPv4 broadcast) of a given block. */
function outsideBlocks(ipam: FakeIpam, a: SlotAddress): boolean {
  const v = ipToBigInt(parseIp(a.address));
  return !ipam.list().some((b) => {
    if (b.family !== a.family) return false;
    const net = parsePrefixLenient(b.cidr);
    const base = ipToBigInt(net);
    const size = 1n << BigInt(ADDRESS_BITS[net.family] - net.length);
    const last = base + size - (b.family === 'IPv4' ? 2n : 1n);
    const gateway = ipToBigInt(parseIp(a.gateway));
    return v >= base + 2n && v <= last && gateway === base + 1n;
  });
}

async function run(seed: number, tally: Tally): Promise<string[]> {
  const rnd = prng(seed);
  const problems: string[] = [];
  const problem = (s: string): void => {
    if (problems.length < 10) problems.push(`seed ${seed}: ${s}`);
  };
  const fs = new CrashFs(rnd, seed % 2 === 0 ? 0.03 : 0);
  const ipam = new FakeIpam(rnd, FAMILY_MODES[seed % FAMILY_MODES.length] as readonly Family[]);
  const sandboxes: Sandbox[] = [];
  const running = new Set<Promise<void>>();
  let proc: Proc | undefined;

  const spawn = (work: () => Promise<void>): void => {
    const p = work().catch((e: unknown) =>
      problem(`unexpected: ${String(e)} ${e instanceof Error ? String(e.cause) : ''}`),
    );
    running.add(p);
    void p.finally(() => running.delete(p));
  };

  /** A commit that failed for a reason the agent expects: a crash, or an I/O error. */
  const expectedFailure = (e: unknown): boolean => {
    if (!(e instanceof StateError)) return false;
    tally.failedCommits++;
    return e.cause instanceof Crashed || (e.cause as NodeJS.ErrnoException).code === 'EIO';
  };

  /**
   * A block list from ipam, as the agent takes it: a list that would take addresses from holders
   * is refused (the agent keeps its blocks and takes a later event), an older one is ignored,
   * anything else is taken.
   */
  const takeBlocks = (a: NodeAllocator, list: readonly NodeBlockValue[]): void => {
    const before = JSON.stringify(a.toJSON());
    try {
      const change = a.setBlocks(list);
      tally.renumbered += change.renumbered;
      if (change.stale) {
        tally.staleIgnored++;
        if (JSON.stringify(a.toJSON()) !== before) problem('an ignored block list changed state');
      }
    } catch (e) {
      if (!(e instanceof BlocksChangeError)) throw e;
      tally.staleRefused++;
      if (JSON.stringify(a.toJSON()) !== before) problem('a refused block list changed state');
    }
  };

  /** Start or restart the agent: the file that survived, then ipam's node event again. */
  const start = async (): Promise<void> => {
    const box: { alloc: NodeAllocator } = { alloc: new NodeAllocator() };
    const file = new GroupCommitFile(PATH, () => JSON.stringify(box.alloc.toJSON()), fs.process());
    const text = await file.load();
    if (text !== undefined) box.alloc = NodeAllocator.fromJSON(JSON.parse(text));
    takeBlocks(box.alloc, ipam.list());
    proc = { alloc: box.alloc, file };
  };

  /** ipam's node event with its current list, arriving a little later. */
  const nodeEvent = async (p: Proc): Promise<void> => {
    await turns(rnd, 4);
    if (p !== proc) return;
    takeBlocks(p.alloc, ipam.list());
    await p.file.commit().catch((e: unknown) => {
      if (!expectedFailure(e)) throw e;
    });
  };

  const grow = async (p: Proc): Promise<void> => {
    const sets = p.alloc.growRequested();
    await turns(rnd, 4);
    const list = ipam.grow(sets);
    await turns(rnd, 4);
    if (p !== proc) return;
    // An answer older than the list in use is stale: the agent keeps the longer list.
    if (list.length >= p.alloc.toJSON().blocks.length) takeBlocks(p.alloc, list);
    if (p.alloc.blocks().sets.length > sets) tally.grown++;
    else p.alloc.growAbandoned(); // no new set: the pool is out of blocks
    await p.file.commit().catch((e: unknown) => {
      if (!expectedFailure(e)) throw e;
    });
  };

  const add = async (sb: Sandbox): Promise<void> => {
    const p = proc;
    sb.addsInFlight++;
    try {
      await turns(rnd, 2);
      if (p === undefined || p !== proc) return;
      const r = p.alloc.allocate({
        containerId: sb.id,
        pod: sb.pod,
        ...(sb.families ? { families: sb.families } : {}),
      });
      if (p.alloc.needsGrow(PRE_ALLOCATE)) spawn(() => grow(p));
      if (!r.ok) {
        // family-disabled is right for a family ipam enabled that the agent has not taken yet
        const known = p.alloc.blocks().families;
        const fair =
          r.reason === 'exhausted' ||
          (r.reason === 'family-disabled' && sb.families?.some((f) => !known.includes(f)));
        if (!fair) problem(`${sb.id}: ADD refused: ${r.reason} ${r.message}`);
        if (r.reason === 'exhausted') tally.exhausted++;
        return;
      }
      for (const a of r.addresses) {
        if (outsideBlocks(ipam, a)) problem(`${sb.id}: ADD gave ${a.address}, outside the blocks`);
      }
      try {
        await p.file.commit();
      } catch (e) {
        if (expectedFailure(e)) return;
        throw e;
      }
      if (p !== proc) return; // answered by a dead process: the runtime never heard it
      const got = r.addresses.map((x) => JSON.stringify(x));
      if (sb.confirmed?.some((x) => !got.includes(x))) {
        problem(`${sb.id}: ADD answered ${shown(got)}, earlier ${shown(sb.confirmed)}`);
      }
      sb.confirmed = got;
      tally.answeredAdds++;
    } finally {
      sb.addsInFlight--;
    }
  };

  const del = async (sb: Sandbox): Promise<void> => {
    const p = proc;
    sb.delInFlight = true;
    sb.delStarted = true;
    try {
      await turns(rnd, 2);
      if (p === undefined || p !== proc) return;
      p.alloc.release(sb.id);
      try {
        await p.file.commit();
      } catch (e) {
        if (expectedFailure(e)) return;
        throw e;
      }
      if (p !== proc) return;
      sb.released = true;
      sb.confirmed = undefined;
      tally.answeredDels++;
    } finally {
      sb.delInFlight = false;
    }
  };

  /** A node event older than the list in use: refused if it drops a held set, else ignored. */
  const staleBlocks = async (p: Proc): Promise<void> => {
    if (ipam.sets.length < 2) return;
    // ipam's events for an assigned node hold at least its first set
    const sets = 1 + Math.floor(rnd() * (ipam.sets.length - 1));
    takeBlocks(p.alloc, ipam.list().slice(0, ipam.families.length * sets));
    await turns(rnd, 3);
    // The newer event comes in.
    if (p === proc) takeBlocks(p.alloc, ipam.list());
  };

  const check = (where: string): void => {
    const p = proc;
    if (p === undefined) return;
    const a = p.alloc;
    // 1. one container per slot, one slot per container: in memory and in the file on disk
    for (const [what, state] of [
      ['memory', a.toJSON()],
      ['disk', diskState(fs.peek(PATH))],
    ] as const) {
      const slots = new Set<number>();
      const ids = new Set<string>();
      for (const h of state?.holders ?? []) {
        if (slots.has(h.slot)) problem(`${where}: ${what}: slot ${h.slot} held twice`);
        if (ids.has(h.containerId)) problem(`${where}: ${what}: ${h.containerId} twice`);
        slots.add(h.slot);
        ids.add(h.containerId);
      }
    }
    const addresses = new Set<string>();
    for (const h of a.holders()) {
      // 4. inside the blocks
      const mine = a.addressesOf(h);
      if (h.slot >= a.capacity() || mine.length !== h.families.length) {
        problem(`${where}: ${h.containerId} holds slot ${h.slot}, outside ${a.capacity()} slots`);
      }
      for (const x of mine) {
        if (outsideBlocks(ipam, x)) problem(`${where}: ${h.containerId}: ${x.address} outside`);
        if (addresses.has(x.address)) problem(`${where}: ${x.address} held twice`);
        addresses.add(x.address);
      }
    }
    for (const sb of sandboxes) {
      const h = a.holder(sb.id);
      // 3. a DEL answered: nothing held
      if (sb.released && h !== undefined)
        problem(`${where}: ${sb.id} holds slot ${h.slot} after DEL`);
      // 2. an ADD answered: the addresses it gave, until the DEL is answered
      if (sb.confirmed === undefined) continue;
      if (h === undefined) {
        if (!sb.delStarted) problem(`${where}: ${sb.id} lost ${shown(sb.confirmed)}`);
        continue;
      }
      const held = a.addressesOf(h).map((x) => JSON.stringify(x));
      if (sb.confirmed.some((x) => !held.includes(x))) {
        problem(`${where}: ${sb.id} holds ${shown(held)}, its ADD said ${shown(sb.confirmed)}`);
      }
    }
  };

  await start();
  for (let step = 0; step < STEPS && problems.length === 0; step++) {
    const p = proc as Proc;
    const x = rnd();
    const live = sandboxes.filter((s) => !s.released);
    const pick = <T>(xs: readonly T[]): T | undefined => xs[Math.floor(rnd() * xs.length)];
    if (x < 0.3 && sandboxes.length < MAX_SANDBOXES) {
      const i = sandboxes.length;
      const sb: Sandbox = {
        id: `c${i}`,
        pod: { namespace: 'default', name: `pod-${i}`, uid: `uid-${i}` },
        ...(ipam.families.length > 1 && rnd() < 0.2
          ? { families: [ipam.families[1] as Family] }
          : {}),
        addsInFlight: 0,
        delInFlight: false,
        delStarted: false,
        released: false,
      };
      sandboxes.push(sb);
      spawn(() => add(sb));
      if (rnd() < 0.3) spawn(() => add(sb)); // the runtime's retry, racing the first
    } else if (x < 0.45) {
      const sb = pick(live.filter((s) => !s.delStarted));
      if (sb) spawn(() => add(sb)); // a repeated ADD, maybe while the first is under way
    } else if (x < 0.7) {
      const sb = pick(live.filter((s) => s.addsInFlight === 0 && !s.delInFlight));
      if (sb) spawn(() => del(sb));
    } else if (x < 0.75) {
      spawn(() => grow(p));
    } else if (x < 0.78) {
      spawn(() => staleBlocks(p));
    } else if (x < 0.8) {
      // a family enabled later, in a single-family cluster; or the node event repeated
      const other = FAMILY_MODES[0]?.find((f) => !ipam.families.includes(f));
      if (other !== undefined && step > STEPS / 3 && rnd() < 0.5) {
        ipam.enable(other);
        tally.familiesEnabled++;
      }
      spawn(() => nodeEvent(p));
    } else if (x < 0.84) {
      fs.crash();
      tally.crashes++;
      proc = undefined;
      await start();
    } else {
      await turns(rnd, 6);
    }
    await turns(rnd, 3);
    check(`step ${step}`);
  }
  // Let everything under way finish, then delete every sandbox (retrying, as a runtime does).
  while (running.size > 0) await Promise.all(running);
  check('drained');
  for (let round = 0; problems.length === 0; round++) {
    const left = sandboxes.filter((s) => !s.released);
    if (left.length === 0) break;
    if (round > 50) {
      problem(`DELs never went through: ${left.map((s) => s.id).join(', ')}`);
      break;
    }
    for (const sb of left) spawn(() => del(sb));
    while (running.size > 0) await Promise.all(running);
    check(`deleting, round ${round}`);
  }
  fs.crash();
  await start();
  check('after the last crash');
  const leaked = proc?.alloc.holders() ?? [];
  if (problems.length === 0 && leaked.length > 0) {
    problem(`held after every DEL: ${leaked.map((h) => h.containerId).join(', ')}`);
  }
  return problems;
}

/** Addresses kept as JSON, shown as their address text. */
function shown(addresses: readonly string[]): string {
  return addresses.map((x) => (JSON.parse(x) as SlotAddress).address).join(' ');
}

function diskState(text: string | undefined): NodeAllocatorState | undefined {
  if (text === undefined || text === '') return undefined;
  return NodeAllocatorState.parse(JSON.parse(text));
}
type NodeAllocatorState = ReturnType<typeof NodeAllocatorState.parse>;

describe('node allocator + group commit under random ADD, DEL, grow and crashes', () => {
  test(`${SEEDS} seeds from ${FIRST_SEED}`, async () => {
    const tally: Tally = {
      answeredAdds: 0,
      answeredDels: 0,
      exhausted: 0,
      failedCommits: 0,
      crashes: 0,
      grown: 0,
      staleRefused: 0,
      staleIgnored: 0,
      familiesEnabled: 0,
      renumbered: 0,
    };
    const failures: string[] = [];
    for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
      try {
        failures.push(...(await run(seed, tally)));
      } catch (e) {
        failures.push(`seed ${seed}: ${String(e)}`);
      }
      if (failures.length >= 10) break;
    }
    expect(failures).toEqual([]);
    // The runs did what they are for: every kind of event happened.
    if (SEEDS >= 100) {
      for (const [k, v] of Object.entries(tally)) expect(v, k).toBeGreaterThan(0);
    }
  });
});
