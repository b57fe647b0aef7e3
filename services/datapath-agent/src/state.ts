import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import type { Endpoint } from './endpoint.ts';
import { StateError } from './errors.ts';

/**
 * Where an endpoint is in its life. `adding`: written before anything is created, so an agent
 * that dies mid-ADD finds and undoes the half-made endpoint; `ready`: complete; `releasing`:
 * kernel state gone, the IPAM release still owed (IPAM was away during DEL).
 */
export const Phase = z.enum(['adding', 'ready', 'releasing']);
export type Phase = z.output<typeof Phase>;

const Address = z.object({ address: z.string(), cidr: z.string(), gateway: z.string() });

export const StoredEndpoint = z.object({
  phase: Phase,
  containerId: z.string(),
  ifName: z.string(),
  network: z.string(),
  netns: z.string(),
  pod: z.object({ namespace: z.string(), name: z.string(), uid: z.string().optional() }),
  endpointId: z.number().int(),
  ipv4: Address.optional(),
  ipv6: Address.optional(),
  mac: z.string(),
  hostIfName: z.string(),
  hostIfindex: z.number().int(),
  hostMac: z.string(),
  mtu: z.number().int(),
  identity: z.number().int(),
  flags: z.number().int(),
  createdAt: z.string(),
});
export type StoredEndpoint = Endpoint & { readonly phase: Phase };

export const StateFile = z.object({
  v: z.literal(1),
  node: z.string(),
  /** sha256 of the datapath object the endpoints' programs were attached from. */
  objectHash: z.string().optional(),
  endpoints: z.array(StoredEndpoint),
});
export type StateFile = z.output<typeof StateFile>;

/**
 * The agent's local memory across restarts: its endpoints (the kernel has no place for pod
 * names, container ids or IPAM gateways). Written whole, atomically (temp file + rename), after
 * every change; small (a few hundred bytes per endpoint).
 */
export class StateStore {
  readonly path: string;
  readonly #node: string;

  constructor(path: string, node: string) {
    this.path = path;
    this.#node = node;
  }

  /** The saved state; empty when there is none. A file that does not parse is moved aside. */
  load(onCorrupt: (reason: string, movedTo: string) => void): StateFile {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT')
        return { v: 1, node: this.#node, endpoints: [] };
      throw new StateError(`cannot read ${this.path}`, { cause: e });
    }
    let reason: string;
    try {
      const r = StateFile.safeParse(JSON.parse(text));
      if (r.success) {
        if (r.data.node === this.#node) return r.data;
        reason = `state is for node ${r.data.node}, this agent is ${this.#node}`;
      } else {
        reason = r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      }
    } catch (e) {
      reason = `not JSON: ${e instanceof Error ? e.message : String(e)}`;
    }
    const aside = `${this.path}.unreadable-${Date.now()}`;
    renameSync(this.path, aside);
    onCorrupt(reason, aside);
    return { v: 1, node: this.#node, endpoints: [] };
  }

  /**
   * Write-then-rename, so a reader sees the old file or the new one. No fsync, on purpose: the
   * file serves agent restarts, which keep the page cache; only a power loss could tear it, and
   * after that the node's endpoints are gone anyway and `load` moves an unreadable file aside.
   * An fsync per CNI call would cost a few milliseconds of every ADD and DEL.
   */
  save(state: StateFile): void {
    mkdirSync(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp`;
    try {
      writeFileSync(tmp, `${JSON.stringify(state)}\n`);
      renameSync(tmp, this.path);
    } catch (e) {
      throw new StateError(`cannot write ${this.path}`, { cause: e });
    }
  }
}
