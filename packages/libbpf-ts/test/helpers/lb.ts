import { LbBackendFlags, LbServiceFlags, maglevTable } from '../../src/index.ts';
import type { DatapathMapSet, LbProtocol } from '../../src/index.ts';

export interface Backend {
  readonly id: number;
  readonly address: string;
  readonly port: number;
  readonly flags?: number;
}

/** Writes one frontend with its backends into a node's LB maps, as the agent would. */
export function setFrontend(
  maps: DatapathMapSet,
  f: {
    id: number;
    address: string;
    port: number;
    protocol: LbProtocol;
    backends: readonly Backend[];
    affinityS?: number;
    /** LbServiceFlags beyond AFFINITY (NODEPORT, LOCAL) */
    flags?: number;
  },
): void {
  const ready = f.backends.filter((b) => !((b.flags ?? 0) & LbBackendFlags.TERMINATING));
  for (const b of f.backends)
    maps.lbBackends.update(b.id, { address: b.address, port: b.port, flags: b.flags ?? 0 });
  maps.lbMaglev.update(
    f.id,
    maglevTable(ready.map((b) => ({ id: b.id, name: `${b.address}|${b.port}` }))),
  );
  maps.lbServices.update(
    { address: f.address, port: f.port, protocol: f.protocol },
    {
      id: f.id,
      backends: ready.length,
      affinityTimeoutS: f.affinityS ?? 0,
      flags: (f.affinityS ? LbServiceFlags.AFFINITY : 0) | (f.flags ?? 0),
    },
  );
}
