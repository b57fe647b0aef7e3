import { createHash } from 'node:crypto';
import { FamilyVersion, formatIp, parseIp } from '@dyad/netaddr';
import { mapCodec, mappedCodec, structCodec, u32Codec } from '../codec.ts';
import type { Codec, MapCodec } from '../codec.ts';
import { CodecError } from '../errors.ts';
import { defineLayout } from '../layout.ts';
import { familyOfTag } from './constants.ts';

/** bpf/include/dyad/map_lb.h */

/** `enum dy_lb_const`: the Maglev table size of every frontend (prime). */
export const LbConst = { MAGLEV_M: 1021, SNAT_PORT_MIN: 61000, SNAT_PORT_MAX: 65535 } as const;
export const LbServiceFlags = { AFFINITY: 1 << 0, NODEPORT: 1 << 1, LOCAL: 1 << 2 } as const;
export const LbBackendFlags = { TERMINATING: 1 << 0 } as const;
export const LbRnatFlags = { HAIRPIN: 1 << 0, NODEPORT: 1 << 1 } as const;
export const LbSnatFlags = { REPLY: 1 << 0 } as const;

export const lbServiceKeyLayout = defineLayout('dy_lb_service_key', 20, [
  { name: 'addr', offset: 0, kind: 'bytes', length: 16 },
  { name: 'port', offset: 16, kind: 'be16' },
  { name: 'proto', offset: 18, kind: 'u8' },
  { name: 'family', offset: 19, kind: 'u8' },
] as const);

export const lbServiceLayout = defineLayout('dy_lb_service', 16, [
  { name: 'id', offset: 0, kind: 'u32' },
  { name: 'backends', offset: 4, kind: 'u32' },
  { name: 'affinity_timeout_s', offset: 8, kind: 'u32' },
  { name: 'flags', offset: 12, kind: 'u32' },
] as const);

export const lbMaglevLayout = defineLayout('dy_lb_maglev', LbConst.MAGLEV_M * 4, [
  { name: 'backend', offset: 0, kind: 'bytes', length: LbConst.MAGLEV_M * 4 },
] as const);

export const lbBackendLayout = defineLayout('dy_lb_backend', 20, [
  { name: 'addr', offset: 0, kind: 'bytes', length: 16 },
  { name: 'port', offset: 16, kind: 'be16' },
  { name: 'family', offset: 18, kind: 'u8' },
  { name: 'flags', offset: 19, kind: 'u8' },
] as const);

export const lbFlowKeyLayout = defineLayout('dy_lb_flow_key', 40, [
  { name: 'saddr', offset: 0, kind: 'bytes', length: 16 },
  { name: 'daddr', offset: 16, kind: 'bytes', length: 16 },
  { name: 'sport', offset: 32, kind: 'be16' },
  { name: 'dport', offset: 34, kind: 'be16' },
  { name: 'proto', offset: 36, kind: 'u8' },
  { name: 'family', offset: 37, kind: 'u8' },
  { name: 'pad', offset: 38, kind: 'pad', length: 2 },
] as const);

export const lbFlowLayout = defineLayout('dy_lb_flow', 16, [
  { name: 'expires_ns', offset: 0, kind: 'u64' },
  { name: 'backend_id', offset: 8, kind: 'u32' },
  { name: 'service_id', offset: 12, kind: 'u32' },
] as const);

export const lbRnatLayout = defineLayout('dy_lb_rnat', 32, [
  { name: 'expires_ns', offset: 0, kind: 'u64' },
  { name: 'addr', offset: 8, kind: 'bytes', length: 16 },
  { name: 'port', offset: 24, kind: 'be16' },
  { name: 'flags', offset: 26, kind: 'u8' },
  { name: 'family', offset: 27, kind: 'u8' },
  { name: 'pad', offset: 28, kind: 'pad', length: 4 },
] as const);

export const lbSnatLayout = defineLayout('dy_lb_snat', 32, [
  { name: 'expires_ns', offset: 0, kind: 'u64' },
  { name: 'addr', offset: 8, kind: 'bytes', length: 16 },
  { name: 'port', offset: 24, kind: 'be16' },
  { name: 'fport', offset: 26, kind: 'be16' },
  { name: 'family', offset: 28, kind: 'u8' },
  { name: 'flags', offset: 29, kind: 'u8' },
  { name: 'pad', offset: 30, kind: 'pad', length: 2 },
] as const);

export const lbAffinityKeyLayout = defineLayout('dy_lb_affinity_key', 24, [
  { name: 'service_id', offset: 0, kind: 'u32' },
  { name: 'family', offset: 4, kind: 'u8' },
  { name: 'pad', offset: 5, kind: 'pad', length: 3 },
  { name: 'client', offset: 8, kind: 'bytes', length: 16 },
] as const);

export const lbAffinityLayout = defineLayout('dy_lb_affinity', 16, [
  { name: 'last_ns', offset: 0, kind: 'u64' },
  { name: 'backend_id', offset: 8, kind: 'u32' },
  { name: 'pad', offset: 12, kind: 'pad', length: 4 },
] as const);

export type LbProtocol = 'TCP' | 'UDP';
const PROTO_NUM: Record<LbProtocol, number> = { TCP: 6, UDP: 17 };

function protocolOf(n: number): LbProtocol {
  if (n === 6) return 'TCP';
  if (n === 17) return 'UDP';
  throw new CodecError(`not a balanced protocol: ${n}`);
}

/** A frontend: cluster IP, port and protocol. */
export interface LbServiceKey {
  readonly address: string;
  readonly port: number;
  readonly protocol: LbProtocol;
}

export interface LbService {
  /** Key of its Maglev table. */
  readonly id: number;
  /** Ready backends in the table; 0 refuses at once. */
  readonly backends: number;
  readonly affinityTimeoutS: number;
  /** LbServiceFlags bits */
  readonly flags: number;
}

export interface LbBackend {
  readonly address: string;
  readonly port: number;
  /** LbBackendFlags bits */
  readonly flags: number;
}

export interface LbFlowKey {
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly protocol: LbProtocol;
}

export interface LbFlow {
  readonly expiresNs: bigint;
  readonly backendId: number;
  readonly serviceId: number;
}

export interface LbRnat {
  readonly expiresNs: bigint;
  /** The frontend the client connected to. */
  readonly address: string;
  readonly port: number;
  /** LbRnatFlags bits */
  readonly flags: number;
}

/**
 * A NodePort connection to a backend on another node. Keyed by the client's tuple: `address` and
 * `port` are the node's source for it. Keyed by the backend's reply (`flags` REPLY): they are the
 * client's, and `frontendPort` the NodePort the reply comes from.
 */
export interface LbSnat {
  readonly expiresNs: bigint;
  readonly address: string;
  readonly port: number;
  readonly frontendPort: number;
  /** LbSnatFlags bits */
  readonly flags: number;
}

export interface LbAffinityKey {
  readonly serviceId: number;
  readonly client: string;
}

export interface LbAffinity {
  readonly lastNs: bigint;
  readonly backendId: number;
}

export const lbServiceKeyCodec: Codec<LbServiceKey> = mappedCodec(
  structCodec(lbServiceKeyLayout),
  (k: LbServiceKey) => {
    const ip = parseIp(k.address);
    return {
      addr: ip.bytes,
      port: k.port,
      proto: PROTO_NUM[k.protocol],
      family: FamilyVersion[ip.family],
    };
  },
  (s): LbServiceKey => ({
    address: formatIp(familyOfTag(s.family), s.addr),
    port: s.port,
    protocol: protocolOf(s.proto),
  }),
);

export const lbServiceCodec: Codec<LbService> = mappedCodec(
  structCodec(lbServiceLayout),
  (v: LbService) => ({
    id: v.id,
    backends: v.backends,
    affinity_timeout_s: v.affinityTimeoutS,
    flags: v.flags,
  }),
  (s): LbService => ({
    id: s.id,
    backends: s.backends,
    affinityTimeoutS: s.affinity_timeout_s,
    flags: s.flags,
  }),
);

/** A Maglev table: M backend ids, in host order. */
export const lbMaglevCodec: Codec<readonly number[]> = {
  size: lbMaglevLayout.size,
  layout: lbMaglevLayout,
  encodeInto(v, buf, off) {
    if (v.length !== LbConst.MAGLEV_M)
      throw new CodecError(`maglev table needs ${LbConst.MAGLEV_M} slots, got ${v.length}`);
    for (let i = 0; i < v.length; i++) buf.writeUInt32LE(v[i] ?? 0, off + i * 4);
  },
  decode(buf, off) {
    const out: number[] = [];
    for (let i = 0; i < LbConst.MAGLEV_M; i++) out.push(buf.readUInt32LE(off + i * 4));
    return out;
  },
};

export const lbBackendCodec: Codec<LbBackend> = mappedCodec(
  structCodec(lbBackendLayout),
  (v: LbBackend) => {
    const ip = parseIp(v.address);
    return { addr: ip.bytes, port: v.port, family: FamilyVersion[ip.family], flags: v.flags };
  },
  (s): LbBackend => ({
    address: formatIp(familyOfTag(s.family), s.addr),
    port: s.port,
    flags: s.flags,
  }),
);

export const lbFlowKeyCodec: Codec<LbFlowKey> = mappedCodec(
  structCodec(lbFlowKeyLayout),
  (k: LbFlowKey) => {
    const s = parseIp(k.src);
    const d = parseIp(k.dst);
    return {
      saddr: s.bytes,
      daddr: d.bytes,
      sport: k.sport,
      dport: k.dport,
      proto: PROTO_NUM[k.protocol],
      family: FamilyVersion[s.family],
    };
  },
  (s): LbFlowKey => {
    const f = familyOfTag(s.family);
    return {
      src: formatIp(f, s.saddr),
      dst: formatIp(f, s.daddr),
      sport: s.sport,
      dport: s.dport,
      protocol: protocolOf(s.proto),
    };
  },
);

export const lbFlowCodec: Codec<LbFlow> = mappedCodec(
  structCodec(lbFlowLayout),
  (v: LbFlow) => ({ expires_ns: v.expiresNs, backend_id: v.backendId, service_id: v.serviceId }),
  (s): LbFlow => ({ expiresNs: s.expires_ns, backendId: s.backend_id, serviceId: s.service_id }),
);

export const lbRnatCodec: Codec<LbRnat> = mappedCodec(
  structCodec(lbRnatLayout),
  (v: LbRnat) => {
    const ip = parseIp(v.address);
    return {
      expires_ns: v.expiresNs,
      addr: ip.bytes,
      port: v.port,
      flags: v.flags,
      family: FamilyVersion[ip.family],
    };
  },
  (s): LbRnat => ({
    expiresNs: s.expires_ns,
    address: formatIp(familyOfTag(s.family), s.addr),
    port: s.port,
    flags: s.flags,
  }),
);

export const lbSnatCodec: Codec<LbSnat> = mappedCodec(
  structCodec(lbSnatLayout),
  (v: LbSnat) => {
    const ip = parseIp(v.address);
    return {
      expires_ns: v.expiresNs,
      addr: ip.bytes,
      port: v.port,
      fport: v.frontendPort,
      family: FamilyVersion[ip.family],
      flags: v.flags,
    };
  },
  (s): LbSnat => ({
    expiresNs: s.expires_ns,
    address: formatIp(familyOfTag(s.family), s.addr),
    port: s.port,
    frontendPort: s.fport,
    flags: s.flags,
  }),
);

export const lbAffinityKeyCodec: Codec<LbAffinityKey> = mappedCodec(
  structCodec(lbAffinityKeyLayout),
  (k: LbAffinityKey) => {
    const ip = parseIp(k.client);
    return { service_id: k.serviceId, family: FamilyVersion[ip.family], client: ip.bytes };
  },
  (s): LbAffinityKey => ({
    serviceId: s.service_id,
    client: formatIp(familyOfTag(s.family), s.client),
  }),
);

export const lbAffinityCodec: Codec<LbAffinity> = mappedCodec(
  structCodec(lbAffinityLayout),
  (v: LbAffinity) => ({ last_ns: v.lastNs, backend_id: v.backendId }),
  (s): LbAffinity => ({ lastNs: s.last_ns, backendId: s.backend_id }),
);

export const lbServicesCodec: MapCodec<LbServiceKey, LbService> = mapCodec(
  lbServiceKeyCodec,
  lbServiceCodec,
);
export const lbMaglevMapCodec: MapCodec<number, readonly number[]> = mapCodec(
  u32Codec,
  lbMaglevCodec,
);
export const lbBackendsCodec: MapCodec<number, LbBackend> = mapCodec(u32Codec, lbBackendCodec);
export const lbFlowsCodec: MapCodec<LbFlowKey, LbFlow> = mapCodec(lbFlowKeyCodec, lbFlowCodec);
export const lbRnatMapCodec: MapCodec<LbFlowKey, LbRnat> = mapCodec(lbFlowKeyCodec, lbRnatCodec);
export const lbSnatMapCodec: MapCodec<LbFlowKey, LbSnat> = mapCodec(lbFlowKeyCodec, lbSnatCodec);
export const lbAffinityMapCodec: MapCodec<LbAffinityKey, LbAffinity> = mapCodec(
  lbAffinityKeyCodec,
  lbAffinityCodec,
);

function u32Pair(name: string): [number, number] {
  const h = createHash('sha256').update(name).digest();
  return [h.readUInt32LE(0), h.readUInt32LE(4)];
}

/**
 * The Maglev lookup table (Eisenbud et al., NSDI 2016) of a frontend: M slots, each a backend
 * id, filled from each backend's permutation in turn, so every backend gets M/N slots (±1) and
 * adding or removing one backend moves few slots. Backends are named by a stable string (their
 * address and port), so every node computes the same table. Empty for no backend: all zero.
 */
export function maglevTable(
  backends: ReadonlyArray<{ readonly id: number; readonly name: string }>,
  m: number = LbConst.MAGLEV_M,
): number[] {
  const table = new Array<number>(m).fill(0);
  if (backends.length === 0) return table;
  // order by name so the table does not depend on the order the caller listed them
  const sorted = [...backends].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const perm = sorted.map((b) => {
    const [h1, h2] = u32Pair(b.name);
    return { id: b.id, offset: h1 % m, skip: (h2 % (m - 1)) + 1, next: 0 };
  });
  const filled = new Array<boolean>(m).fill(false);
  let n = 0;
  for (;;) {
    for (const p of perm) {
      let c = (p.offset + p.next * p.skip) % m;
      while (filled[c]) {
        p.next++;
        c = (p.offset + p.next * p.skip) % m;
      }
      filled[c] = true;
      table[c] = p.id;
      p.next++;
      if (++n === m) return table;
    }
  }
}
