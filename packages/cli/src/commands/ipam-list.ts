import type { Bus } from '@dyad/bus';
import type { PayloadOf } from '@dyad/contracts';
import { FAMILIES } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import {
  AddressesAllocated,
  AddressesReleased,
  IPAM_ALLOCATIONS_STREAM,
  IPAM_NODES_STREAM,
  IpamNodeEvent,
  IPAM_NODE_FILTER,
  ipamAllocFilter,
  ipamNodeSubject,
  nodeBlocks,
  nodeClaimProblem,
  parseIpamAllocSubject,
} from '@dyad/contracts';
import { formatPrefix, maskBytes, parsePrefixLenient, tryParseIp } from '@dyad/netaddr';
import { Exit, defineCommand } from '../command.ts';
import { CliError } from '../errors.ts';
import {
  formatStructured,
  formatTable,
  isStructured,
  outputFlag,
  outputFormat,
} from '../output.ts';
import { NODE_FLAG_MEANING } from '../agent/target.ts';

type NodeEventValue = PayloadOf<typeof IpamNodeEvent>;
type AllocatedValue = PayloadOf<typeof AddressesAllocated>;

export interface IpamListing {
  /** The cluster's families, primary first (as the node assignments list them). */
  readonly families: readonly Family[];
  readonly nodes: readonly {
    readonly name: string;
    readonly blocks: readonly {
      /** The block set (0 from the node's announcement, more as its agent asked). */
      readonly set: number;
      readonly family: Family;
      readonly cidr: string;
      readonly gateway: string;
      readonly used: number;
      readonly free: number;
    }[];
  }[];
  readonly pods: readonly {
    readonly node: string;
    readonly slot?: number;
    readonly namespace: string;
    readonly pod: string;
    readonly podUid: string;
    readonly containerId: string;
    readonly addresses: readonly { readonly family: Family; readonly address: string }[];
    readonly allocatedAt: string;
  }[];
  /**
   * Allocation records refused: their subject's node may not claim them (another node named, or
   * an address outside the node's blocks: a forged or broken record), with the reason.
   */
  readonly refused: readonly {
    readonly subject: string;
    readonly reason: string;
    readonly detail: string;
  }[];
}

/** An allocation record with the subject it was stored under (the subject names its writer). */
export interface AllocationRecord {
  readonly subject: string;
  readonly value: AllocatedValue;
}

/**
 * Pod addresses a block holds: IPv4 reserves network, gateway and broadcast, IPv6 the
 * subnet-router anycast and gateway (see services/ipam/README.md).
 */
function podAddresses(family: Family, cidr: string): number {
  const prefix = Number(cidr.split('/')[1]);
  const size = 2n ** BigInt((family === 'IPv4' ? 32 : 128) - prefix);
  const usable = size - (family === 'IPv4' ? 3n : 2n);
  return usable > 0n ? Number(usable > 2n ** 32n ? 2n ** 32n : usable) : 0;
}

/** The block (canonical CIDR) of `length` bits holding an address, as text. */
function blockOf(address: string, length: number): string | undefined {
  const ip = tryParseIp(address);
  return ip === undefined
    ? undefined
    : formatPrefix({ family: ip.family, bytes: maskBytes(ip.bytes, length), length });
}

function canonical(cidr: string): string {
  try {
    return formatPrefix(parsePrefixLenient(cidr));
  } catch {
    return cidr;
  }
}

/** The cluster's family order, read off the assignments: within a set, primary first. */
function familyOrder(nodes: readonly NodeEventValue[]): Family[] {
  let best: Family[] = [];
  for (const n of nodes) {
    const first: Family[] = [];
    for (const b of n.blocks) {
      if (first.includes(b.family)) break;
      first.push(b.family);
    }
    if (first.length > best.length) best = first;
  }
  return best;
}

/**
 * What the node assignments (DYAD_IPAM_NODES) and the agents' allocation records (the last value
 * per sandbox in DYAD_IPAM_ALLOCATIONS; released sandboxes are not listed) say, arranged for
 * people: pure, so it is tested without a server.
 */
export function listing(
  assignments: readonly NodeEventValue[],
  records: readonly AllocationRecord[],
): IpamListing {
  const live = assignments.filter((a) => a.op === 'upsert');
  const blocksOf = nodeBlocks(live);
  const refused: IpamListing['refused'][number][] = [];
  const allocations: AllocatedValue[] = [];
  for (const r of records) {
    const node = parseIpamAllocSubject(r.subject)?.node ?? '';
    const problem = nodeClaimProblem(
      node,
      r.value.node,
      r.value.addresses.map((a) => a.address),
      blocksOf.get(node) ?? [],
    );
    if (problem === undefined) allocations.push(r.value);
    else refused.push({ subject: r.subject, ...problem });
  }
  const families = familyOrder(live);
  const order: Family[] = [...families, ...FAMILIES.filter((f) => !families.includes(f))];
  // Pod addresses per node and block, found by masking each address to its family's block size.
  const used = new Map<string, number>();
  const lengths = new Map<string, number>();
  for (const a of live) {
    for (const b of a.blocks) lengths.set(`${a.node} ${b.family}`, Number(b.cidr.split('/')[1]));
  }
  for (const p of allocations) {
    for (const { family, address } of p.addresses) {
      const len = lengths.get(`${p.node} ${family}`);
      const block = len === undefined ? undefined : blockOf(address, len);
      if (block === undefined) continue;
      const key = `${p.node} ${block}`;
      used.set(key, (used.get(key) ?? 0) + 1);
    }
  }
  const nodes = [...live]
    .sort((a, b) => a.node.localeCompare(b.node))
    .map((a) => {
      const seen: Record<Family, number> = { IPv4: 0, IPv6: 0 };
      return {
        name: a.node,
        blocks: a.blocks.map((b) => {
          const u = used.get(`${a.node} ${canonical(b.cidr)}`) ?? 0;
          return {
            // The k-th block of a family is in set k.
            set: seen[b.family]++,
            family: b.family,
            cidr: b.cidr,
            gateway: b.gateway,
            used: u,
            free: Math.max(0, podAddresses(b.family, b.cidr) - u),
          };
        }),
      };
    });
  const pods = [...allocations]
    .sort(
      (a, b) =>
        a.node.localeCompare(b.node) ||
        (a.slot ?? 0) - (b.slot ?? 0) ||
        a.containerId.localeCompare(b.containerId),
    )
    .map((p) => ({
      node: p.node,
      ...(p.slot === undefined ? {} : { slot: p.slot }),
      namespace: p.namespace,
      pod: p.pod,
      podUid: p.podUid,
      containerId: p.containerId,
      addresses: order.flatMap((f) => p.addresses.filter((x) => x.family === f)),
      allocatedAt: p.allocatedAt,
    }));
  return { families, nodes, pods, refused };
}

/** The two tables; `wide` adds the block set, the pod's slot and UID and the whole container id. */
export function renderListing(l: IpamListing, wide = false): string {
  const blocks = formatTable(
    ['NODE', ...(wide ? ['SET'] : []), 'FAMILY', 'BLOCK', 'GATEWAY', 'USED', 'FREE'],
    l.nodes.flatMap((n) =>
      n.blocks.map((b) => [
        n.name,
        ...(wide ? [String(b.set)] : []),
        b.family,
        b.cidr,
        b.gateway,
        String(b.used),
        String(b.free),
      ]),
    ),
  );
  const fams: readonly Family[] = l.families.length > 0 ? l.families : FAMILIES;
  const pods = formatTable(
    [
      'NODE',
      ...(wide ? ['SLOT'] : []),
      'NAMESPACE',
      'POD',
      ...(wide ? ['POD UID'] : []),
      ...fams.map((f) => f.toUpperCase()),
      'CONTAINER',
      'ALLOCATED',
    ],
    l.pods.map((p) => [
      p.node,
      ...(wide ? [p.slot === undefined ? '-' : String(p.slot)] : []),
      p.namespace,
      p.pod,
      ...(wide ? [p.podUid] : []),
      ...fams.map((f) => p.addresses.find((a) => a.family === f)?.address ?? '-'),
      wide ? p.containerId : p.containerId.slice(0, 12),
      p.allocatedAt,
    ]),
  );
  const refused =
    l.refused.length === 0
      ? ''
      : `\n${formatTable(
          ['REFUSED RECORD', 'REASON', 'DETAIL'],
          l.refused.map((r) => [r.subject, r.reason, r.detail]),
        )}`;
  return `${blocks}\n${pods}${refused}`;
}

function noStream(err: unknown): boolean {
  return err instanceof Error && /stream not found/i.test(err.message);
}

/** The streams' last values; undefined when DYAD_IPAM_NODES does not exist (no ipam ever ran). */
async function readStreams(bus: Bus, node: string | undefined): Promise<IpamListing | undefined> {
  let assigned;
  try {
    assigned = await bus.snapshot([IpamNodeEvent], {
      stream: IPAM_NODES_STREAM,
      filterSubjects: [node === undefined ? IPAM_NODE_FILTER : ipamNodeSubject(node)],
    });
  } catch (err) {
    if (noStream(err)) return undefined;
    throw err;
  }
  let records;
  try {
    records = await bus.snapshot([AddressesAllocated, AddressesReleased], {
      stream: IPAM_ALLOCATIONS_STREAM,
      filterSubjects: [ipamAllocFilter(node)],
    });
  } catch (err) {
    // No agent has recorded anything yet.
    if (!noStream(err)) throw err;
  }
  const allocated = [...(records?.entries() ?? [])].flatMap(([subject, d]) =>
    d.contract === AddressesAllocated ? [{ subject, value: d.value as AllocatedValue }] : [],
  );
  return listing(
    [...assigned.values()].map((d) => d.value),
    allocated,
  );
}

/** `dyad ipam list`: node blocks and pod addresses, read from ipam's and the agents' streams. */
export const ipamListCommand = defineCommand({
  words: ['ipam', 'list'],
  summary: 'node blocks and pod addresses (as each node agent published them), from NATS',
  description:
    "Reads DYAD_IPAM_NODES and DYAD_IPAM_ALLOCATIONS, so it works while ipam is down. An allocation record its node may not claim (naming another node than its subject, or an address outside the node's blocks) is not listed as a pod: it is shown under REFUSED RECORD (JSON: refused) with the reason. NATS as every service reaches it: NATS_URL, NATS_CREDS, NATS_USER/NATS_PASSWORD, NATS_TOKEN. Exit 3 when NATS or the IPAM stream is not there.",
  flags: {
    output: outputFlag(),
    nats: {
      type: 'string',
      value: 'URL',
      description:
        'NATS server URL(s), comma-separated (default $NATS_URL, else nats://127.0.0.1:4222)',
    },
    node: {
      type: 'string',
      value: 'NAME',
      description: `${NODE_FLAG_MEANING}: only its blocks and pods`,
    },
  },
  run: async (ctx) => {
    const format = outputFormat(ctx.flags.output);
    // Loaded here, not at the top: NATS and telemetry take most of a second to import, which
    // `dyad status` and the other agent commands should not pay.
    const { connectNats } = await import('./nats.ts');
    const { bus, where } = await connectNats(ctx.env, ctx.flags.nats);
    try {
      const l = await readStreams(bus, ctx.flags.node);
      if (l === undefined)
        throw new CliError(
          Exit.unavailable,
          `no stream ${IPAM_NODES_STREAM} on ${where}: is ipam running?`,
        );
      ctx.stdout.write(
        isStructured(format) ? formatStructured(format, l) : renderListing(l, format === 'wide'),
      );
      return Exit.ok;
    } finally {
      await bus.close();
    }
  },
});
