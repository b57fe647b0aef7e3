import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { BpfMap } from '../map.ts';
import type { Libbpf } from '../libbpf.ts';
import type { BpfObject, BpfProgram } from '../object.ts';
import { configCodec } from './config.ts';
import type { DatapathConfig } from './config.ts';
import { ConntrackTables } from './conntrack.ts';
import { spreadConntrack, takeSharedConntrack } from './ct-upgrade.ts';
import { DatapathMaps as Names, DatapathPrograms } from './constants.ts';
import { endpointsCodec } from './endpoints.ts';
import type { EndpointInfo, EndpointKey } from './endpoints.ts';
import { ipcacheCodec } from './ipcache.ts';
import type { IpcacheInfo, IpcacheKey } from './ipcache.ts';
import {
  lbAffinityMapCodec,
  lbBackendsCodec,
  lbFlowsCodec,
  lbMaglevMapCodec,
  lbRnatMapCodec,
  lbServicesCodec,
  lbSnatMapCodec,
} from './lb.ts';
import type {
  LbAffinity,
  LbAffinityKey,
  LbBackend,
  LbFlow,
  LbFlowKey,
  LbRnat,
  LbService,
  LbServiceKey,
  LbSnat,
} from './lb.ts';
import { metricsCodec } from './metrics.ts';
import type { MetricsKey, MetricsValue } from './metrics.ts';
import { policyCodec } from './policy.ts';
import type { PolicyKey, PolicyValue } from './policy.ts';
import { policyCidrCodec } from './policy-cidr.ts';
import type { PolicyCidrKey, PolicyCidrValue } from './policy-cidr.ts';
import { mapCodec, rawMapCodec, u32Codec } from '../codec.ts';
import type { MapCodec } from '../codec.ts';

/** bpf/build/datapath.o of this repository (built by `make -C bpf`). */
export const DEFAULT_DATAPATH_OBJECT = fileURLToPath(
  new URL('../../../../bpf/build/datapath.o', import.meta.url),
);

export interface DatapathMapSet extends Disposable {
  readonly endpoints: BpfMap<EndpointKey, EndpointInfo>;
  readonly ipcache: BpfMap<IpcacheKey, IpcacheInfo>;
  readonly policy: BpfMap<PolicyKey, PolicyValue>;
  readonly policyCidr: BpfMap<PolicyCidrKey, PolicyCidrValue>;
  /** Per-endpoint conntrack tables (dy_conntrack, a map of maps). */
  readonly conntrack: ConntrackTables;
  readonly metrics: BpfMap<MetricsKey, MetricsValue>;
  readonly config: BpfMap<number, DatapathConfig>;
  /** Ring buffer map; consume with lib.ringBuffer(events, decodeDatapathEvent). */
  readonly events: BpfMap<Buffer, Buffer>;
  readonly lbServices: BpfMap<LbServiceKey, LbService>;
  readonly lbMaglev: BpfMap<number, readonly number[]>;
  readonly lbBackends: BpfMap<number, LbBackend>;
  readonly lbFlows: BpfMap<LbFlowKey, LbFlow>;
  readonly lbRnat: BpfMap<LbFlowKey, LbRnat>;
  readonly lbAffinity: BpfMap<LbAffinityKey, LbAffinity>;
  readonly lbSnat: BpfMap<LbFlowKey, LbSnat>;
  close(): void;
}

export interface LoadedDatapath extends Disposable {
  readonly object: BpfObject;
  readonly maps: DatapathMapSet;
  readonly fromContainer: BpfProgram;
  readonly toContainer: BpfProgram;
  readonly fromNetdev: BpfProgram;
  close(): void;
}

export interface LoadDatapathOptions {
  readonly objectPath?: string;
  /** bpffs directory for this node's maps, e.g. /sys/fs/bpf/dyad/<node>. Existing pins are
   *  reused, so the kernel's state outlives the loader. */
  readonly pinDir: string;
  readonly maxEntries?: Readonly<Record<string, number>>;
  /** Entries of each endpoint's conntrack table (default CT_TABLE_ENTRIES_DEFAULT). */
  readonly ctEntries?: number;
}

const conntrackOuterCodec: MapCodec<number, number> = mapCodec(u32Codec, u32Codec);

function mapSet(
  lib: Libbpf,
  get: <K, V>(name: string, codec: MapCodec<K, V>) => BpfMap<K, V>,
  extraClose: () => void,
  ctEntries?: number,
): DatapathMapSet {
  const maps = {
    endpoints: get(Names.endpoints, endpointsCodec),
    ipcache: get(Names.ipcache, ipcacheCodec),
    policy: get(Names.policy, policyCodec),
    policyCidr: get(Names.policyCidr, policyCidrCodec),
    conntrack: new ConntrackTables(lib, get(Names.conntrack, conntrackOuterCodec), ctEntries),
    metrics: get(Names.metrics, metricsCodec),
    config: get(Names.config, configCodec),
    events: get(Names.events, rawMapCodec(0, 0)),
    lbServices: get(Names.lbServices, lbServicesCodec),
    lbMaglev: get(Names.lbMaglev, lbMaglevMapCodec),
    lbBackends: get(Names.lbBackends, lbBackendsCodec),
    lbFlows: get(Names.lbFlows, lbFlowsCodec),
    lbRnat: get(Names.lbRnat, lbRnatMapCodec),
    lbAffinity: get(Names.lbAffinity, lbAffinityMapCodec),
    lbSnat: get(Names.lbSnat, lbSnatMapCodec),
  };
  const close = () => {
    for (const m of Object.values(maps)) m.close();
    extraClose();
  };
  return { ...maps, close, [Symbol.dispose]: close };
}

/**
 * Opens, pins and loads the datapath object. Programs are not attached here. Flows pinned by a
 * datapath with one shared conntrack map move into the endpoints' own tables.
 */
export function loadDatapath(lib: Libbpf, opts: LoadDatapathOptions): LoadedDatapath {
  const object = lib.openObject(opts.objectPath ?? DEFAULT_DATAPATH_OBJECT, {
    pinDir: opts.pinDir,
    ...(opts.maxEntries ? { maxEntries: opts.maxEntries } : {}),
  });
  try {
    const sharedFlows = takeSharedConntrack(lib, opts.pinDir);
    object.load();
    const maps = mapSet(
      lib,
      (name, codec) => object.map(name, codec),
      () => undefined,
      opts.ctEntries,
    );
    if (sharedFlows) spreadConntrack(sharedFlows, maps.endpoints, maps.conntrack);
    const close = () => {
      maps.close();
      object.close();
    };
    return {
      object,
      maps,
      fromContainer: object.program(DatapathPrograms.fromContainer),
      toContainer: object.program(DatapathPrograms.toContainer),
      fromNetdev: object.program(DatapathPrograms.fromNetdev),
      close,
      [Symbol.dispose]: close,
    };
  } catch (e) {
    object.close();
    throw e;
  }
}

/** Opens the pinned maps of a node's datapath without loading anything. */
export function openPinnedDatapath(lib: Libbpf, pinDir: string): DatapathMapSet {
  const opened: Array<BpfMap<unknown, unknown>> = [];
  try {
    return mapSet(
      lib,
      (name, codec) => {
        const m = lib.openPinnedMap(join(pinDir, name), codec);
        opened.push(m);
        return m;
      },
      () => undefined,
    );
  } catch (e) {
    for (const m of opened) m.close();
    throw e;
  }
}
