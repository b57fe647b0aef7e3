import { readFileSync, renameSync } from 'node:fs';
import { z } from 'zod';
import type { Endpoint } from './endpoint.ts';
import { StateError } from './errors.ts';

/**
 * Where an endpoint is in its life. `adding`: written (with its addresses) before anything is
 * created in the kernel, so an agent that dies mid-ADD finds and undoes the half-made endpoint;
 * `ready`: complete, and its CNI result may have been returned.
 */
export const Phase = z.enum(['adding', 'ready']);
export type Phase = z.output<typeof Phase>;

const Address = z.object({ address: z.string(), cidr: z.string(), gateway: z.string() });

const EndpointFields = {
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
};

export const StoredEndpoint = z.object({ phase: Phase, ...EndpointFields });
export type StoredEndpoint = Endpoint & { readonly phase: Phase };

export const StateFile = z.object({
  v: z.literal(2),
  node: z.string(),
  /** sha256 of the datapath object the endpoints' programs were attached from. */
  objectHash: z.string().optional(),
  /** The node allocator's state (its blocks and who holds which slot); see ipam/. */
  ipam: z.unknown(),
  endpoints: z.array(StoredEndpoint),
});
export type StateFile = z.output<typeof StateFile>;

/**
 * The state file of the agent before node-local allocation (IPAM's replicas held the addresses):
 * read once, on the first start after an upgrade, to adopt its endpoints and their addresses.
 */
const LegacyStateFile = z.object({
  v: z.literal(1),
  node: z.string(),
  objectHash: z.string().optional(),
  endpoints: z.array(
    z.object({ phase: z.enum(['adding', 'ready', 'releasing']), ...EndpointFields }),
  ),
});
export type LegacyStateFile = z.output<typeof LegacyStateFile>;

/** What a start finds on disk. */
export type Loaded =
  | { readonly kind: 'state'; readonly state: StateFile }
  | { readonly kind: 'legacy'; readonly state: LegacyStateFile }
  /** No file, or one that was unreadable (moved aside): the kernel and NATS must tell. */
  | { readonly kind: 'none'; readonly lost: boolean };

/**
 * Reads the agent's state file: its endpoints and its node allocator (the kernel has no place
 * for pod names, container ids or gateways). Writing is the group commit's (durable.ts).
 */
export function loadState(
  path: string,
  node: string,
  onCorrupt: (reason: string, movedTo: string) => void,
): Loaded {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'none', lost: false };
    throw new StateError(`cannot read ${path}`, { cause: e });
  }
  let reason: string;
  try {
    const json: unknown = JSON.parse(text);
    const r = StateFile.safeParse(json);
    const legacy = r.success ? undefined : LegacyStateFile.safeParse(json);
    const got = r.success ? r.data : legacy?.success ? legacy.data : undefined;
    if (got && got.node !== node) reason = `state is for node ${got.node}, this agent is ${node}`;
    else if (r.success) return { kind: 'state', state: r.data };
    else if (legacy?.success) return { kind: 'legacy', state: legacy.data };
    else reason = r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  } catch (e) {
    reason = `not JSON: ${e instanceof Error ? e.message : String(e)}`;
  }
  const aside = `${path}.unreadable-${Date.now()}`;
  renameSync(path, aside);
  onCorrupt(reason, aside);
  return { kind: 'none', lost: true };
}

export function renderState(state: StateFile): string {
  return `${JSON.stringify(state)}\n`;
}
