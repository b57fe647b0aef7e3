import { connectBus, kvValues } from '@dyad/bus';
import type { KV } from '@dyad/bus';
import type { Family, IpamNodeRecordValue, IpamSlotRecordValue } from '@dyad/contracts';
import {
  IPAM_KV_BUCKET,
  IpamClusterConfig,
  IpamKey,
  IpamNodeRecord,
  IpamSlotRecord,
} from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import type { Command, CommandContext } from '../command.ts';
import { Exit } from '../command.ts';
import { formatTable, outputFormat } from '../table.ts';

const USAGE = 'usage: dyad ipam list [-o json] [--nats URL] [--node NAME]\n';

export interface IpamListing {
  readonly families: readonly Family[];
  readonly nodes: readonly {
    readonly name: string;
    readonly uid: string;
    readonly blocks: readonly {
      readonly family: Family;
      readonly cidr: string;
      readonly gateway: string;
      readonly used: number;
      readonly free: number;
    }[];
  }[];
  readonly pods: readonly {
    readonly node: string;
    readonly slot: number;
    readonly namespace: string;
    readonly pod: string;
    readonly podUid: string;
    readonly containerId: string;
    readonly addresses: readonly { readonly family: Family; readonly address: string }[];
    readonly allocatedAt: string;
  }[];
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

/** What the bucket holds, arranged for people: pure, so it is tested without a server. */
export function listing(
  families: readonly Family[],
  records: readonly IpamNodeRecordValue[],
  slots: readonly { node: string; slot: number; value: IpamSlotRecordValue }[],
): IpamListing {
  const order: Family[] = [
    ...families,
    ...(['IPv4', 'IPv6'] as const).filter((f) => !families.includes(f)),
  ];
  const used = new Map<string, number>();
  for (const s of slots) used.set(s.node, (used.get(s.node) ?? 0) + 1);
  const nodes = [...records]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((r) => {
      const present = order.filter((f) => r.blocks[f] !== undefined);
      // Slot n is offset 2+n of every block: the smallest block bounds the node's pods.
      const capacity = Math.min(...present.map((f) => podAddresses(f, r.blocks[f]?.cidr ?? '/0')));
      const u = used.get(r.name) ?? 0;
      return {
        name: r.name,
        uid: r.uid,
        blocks: present.map((f) => ({
          family: f,
          cidr: r.blocks[f]?.cidr ?? '',
          gateway: r.blocks[f]?.gateway ?? '',
          used: u,
          free: Math.max(0, capacity - u),
        })),
      };
    });
  const pods = [...slots]
    .sort((a, b) => a.node.localeCompare(b.node) || a.slot - b.slot)
    .map((s) => ({
      node: s.node,
      slot: s.slot,
      namespace: s.value.namespace,
      pod: s.value.pod,
      podUid: s.value.podUid,
      containerId: s.value.containerId,
      addresses: order.flatMap((f) => {
        const a = s.value.ips[f];
        return a === undefined ? [] : [{ family: f, address: a }];
      }),
      allocatedAt: new Date(s.value.at).toISOString(),
    }));
  return { families: order.filter((f) => families.includes(f)), nodes, pods };
}

export function renderListing(l: IpamListing): string {
  const blocks = formatTable(
    ['NODE', 'FAMILY', 'BLOCK', 'GATEWAY', 'USED', 'FREE'],
    l.nodes.flatMap((n) =>
      n.blocks.map((b) => [n.name, b.family, b.cidr, b.gateway, String(b.used), String(b.free)]),
    ),
  );
  const fams: Family[] = l.families.length > 0 ? [...l.families] : ['IPv4', 'IPv6'];
  const pods = formatTable(
    ['NODE', 'NAMESPACE', 'POD', ...fams.map((f) => f.toUpperCase()), 'CONTAINER', 'ALLOCATED'],
    l.pods.map((p) => [
      p.node,
      p.namespace,
      p.pod,
      ...fams.map((f) => p.addresses.find((a) => a.family === f)?.address ?? '-'),
      p.containerId.slice(0, 12),
      p.allocatedAt,
    ]),
  );
  return `${blocks}\n${pods}`;
}

function flag(args: readonly string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === name) return args[i + 1];
    if (a.startsWith(`${name}=`)) return a.slice(name.length + 1);
  }
  return undefined;
}

async function readBucket(kv: KV, node: string | undefined): Promise<IpamListing> {
  const cfg = IpamClusterConfig.safeParse((await kv.get(IpamKey.config))?.json());
  const families = cfg.success ? cfg.data.families.map((f) => f.family) : [];
  const nodeFilter = node === undefined ? `${IpamKey.nodePrefix}>` : IpamKey.node(node);
  const slotFilter =
    node === undefined ? `${IpamKey.slotPrefix}>` : `${IpamKey.slotPrefix}${node}.*`;
  const [nodes, slots] = await Promise.all([kvValues(kv, nodeFilter), kvValues(kv, slotFilter)]);
  const records = nodes.flatMap((n) => {
    const r = IpamNodeRecord.safeParse(n.value);
    return r.success ? [r.data] : [];
  });
  const held = slots.flatMap((s) => {
    const m = /^slot\.(.+)\.([0-9]+)$/.exec(s.key);
    const r = IpamSlotRecord.safeParse(s.value);
    return m === null || !r.success
      ? []
      : [{ node: m[1] as string, slot: Number(m[2]), value: r.data }];
  });
  return listing(families, records, held);
}

/** `dyad ipam list`: node blocks and pod addresses, read from the DYAD_IPAM bucket. */
export const ipamListCommand: Command = {
  words: ['ipam', 'list'],
  summary: 'node blocks and pod addresses from NATS [-o json] [--nats URL] [--node NAME]',
  run: async (ctx: CommandContext) => {
    const format = outputFormat(ctx.args);
    if (typeof format === 'object') {
      ctx.stderr.write(`${format.error}\n${USAGE}`);
      return Exit.usage;
    }
    const servers = flag(ctx.args, '--nats') ?? ctx.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
    const node = flag(ctx.args, '--node');
    let bus;
    try {
      bus = await connectBus({
        servers,
        name: 'dyad-cli',
        logger: createLogger({ service: 'dyad-cli', level: 'silent' }),
        registry: createMetrics({ processMetrics: false }),
        reconnect: { maxAttempts: 0 },
        connectTimeoutMs: 5000,
      });
    } catch (err) {
      ctx.stderr.write(`dyad ipam list: ${err instanceof Error ? err.message : String(err)}\n`);
      return Exit.unavailable;
    }
    try {
      let kv: KV;
      try {
        kv = await bus.kv(IPAM_KV_BUCKET);
        await kv.status();
      } catch {
        ctx.stderr.write(
          `dyad ipam list: no KV bucket ${IPAM_KV_BUCKET} on ${servers}: is ipam running?\n`,
        );
        return Exit.unavailable;
      }
      const l = await readBucket(kv, node);
      ctx.stdout.write(format === 'json' ? `${JSON.stringify(l, null, 2)}\n` : renderListing(l));
      return Exit.ok;
    } finally {
      await bus.close();
    }
  },
};
