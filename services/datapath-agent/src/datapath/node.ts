import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DEFAULT_DATAPATH_OBJECT, loadDatapath } from '@dyad/libbpf-ts';
import type {
  ConntrackTables,
  EndpointInfo,
  EndpointKey,
  IpcacheInfo,
  IpcacheKey,
  LbBackend,
  LbService,
  LbServiceKey,
  Libbpf,
  LoadedDatapath,
  PolicyCidrKey,
  PolicyCidrValue,
  PolicyKey,
  PolicyValue,
  TcDirection,
} from '@dyad/libbpf-ts';
import { MirroredMap } from './mirror.ts';
import type { Schedule } from './schedule.ts';
import type { MapWriteStats } from './mirror.ts';

/** Handle and priority of Dyad's tc filters (libbpf's defaults; one filter per hook). */
const FILTER = { handle: 1, priority: 1 } as const;

export interface AttachState {
  readonly ingress?: number;
  readonly egress?: number;
}

/**
 * One node's loaded datapath: the programs of this agent run, the pinned maps (reused, so the
 * kernel keeps its state across agent restarts) behind write-coalescing mirrors, and tc
 * attachment in the agent's own network namespace.
 */
export class NodeDatapath {
  readonly lib: Libbpf;
  readonly loaded: LoadedDatapath;
  readonly endpoints: MirroredMap<EndpointKey, EndpointInfo>;
  readonly ipcache: MirroredMap<IpcacheKey, IpcacheInfo>;
  readonly policy: MirroredMap<PolicyKey, PolicyValue>;
  readonly policyCidr: MirroredMap<PolicyCidrKey, PolicyCidrValue>;
  /** Each endpoint's own conntrack table; written directly (one map create per endpoint). */
  readonly conntrack: ConntrackTables;
  readonly lbServices: MirroredMap<LbServiceKey, LbService>;
  readonly lbMaglev: MirroredMap<number, readonly number[]>;
  readonly lbBackends: MirroredMap<number, LbBackend>;
  /** sha256 of the object file: tells an upgrade (re-attach everywhere) from a restart. */
  readonly objectHash: string;
  readonly pinDir: string;

  constructor(
    lib: Libbpf,
    opts: { pinDir: string; objectPath?: string; ctEntries?: number; schedule: Schedule },
  ) {
    const objectPath = opts.objectPath ?? DEFAULT_DATAPATH_OBJECT;
    this.lib = lib;
    this.pinDir = opts.pinDir;
    this.objectHash = createHash('sha256').update(readFileSync(objectPath)).digest('hex');
    this.loaded = loadDatapath(lib, {
      pinDir: opts.pinDir,
      objectPath,
      ...(opts.ctEntries !== undefined ? { ctEntries: opts.ctEntries } : {}),
    });
    const m = this.loaded.maps;
    this.endpoints = new MirroredMap(m.endpoints, opts.schedule);
    // cluster-sized: the pinned map is what the agent knows of it (README: memory)
    this.ipcache = new MirroredMap(m.ipcache, opts.schedule, { known: 'kernel' });
    this.policy = new MirroredMap(m.policy, opts.schedule);
    this.policyCidr = new MirroredMap(m.policyCidr, opts.schedule);
    this.conntrack = m.conntrack;
    this.lbServices = new MirroredMap(m.lbServices, opts.schedule);
    this.lbMaglev = new MirroredMap(m.lbMaglev, opts.schedule);
    this.lbBackends = new MirroredMap(m.lbBackends, opts.schedule);
  }

  /** Reads what the pinned maps hold now. */
  load(): void {
    this.endpoints.load();
    this.ipcache.load();
    this.policy.load();
    this.policyCidr.load();
    this.lbServices.load();
    this.lbMaglev.load();
    this.lbBackends.load();
  }

  /**
   * Writes everything queued, now. Policy before its CIDR entries: a block then points at a
   * class whose entries are written already, or at one whose entries are gone (dropped), never
   * at entries of another meaning.
   */
  flush(): void {
    this.endpoints.flush();
    this.ipcache.flush();
    this.policy.flush();
    this.policyCidr.flush();
    // what a frontend points at exists before the frontend does
    this.lbBackends.flush();
    this.lbMaglev.flush();
    this.lbServices.flush();
  }

  stats(): Record<string, MapWriteStats> {
    return {
      endpoints: { ...this.endpoints.stats },
      ipcache: { ...this.ipcache.stats },
      policy: { ...this.policy.stats },
      policyCidr: { ...this.policyCidr.stats },
      lbServices: { ...this.lbServices.stats },
      lbMaglev: { ...this.lbMaglev.stats },
      lbBackends: { ...this.lbBackends.stats },
    };
  }

  /** from-container on the veth's tc ingress, to-container on its egress. */
  attachEndpoint(ifindex: number): void {
    for (const [direction, prog] of [
      ['ingress', this.loaded.fromContainer],
      ['egress', this.loaded.toContainer],
    ] as const) {
      this.lib.tc.attach(prog.fd, { ifindex, direction, replace: true, ...FILTER });
    }
  }

  attachUplink(ifindex: number): void {
    this.lib.tc.attach(this.loaded.fromNetdev.fd, {
      ifindex,
      direction: 'ingress',
      replace: true,
      ...FILTER,
    });
  }

  /** Takes Dyad's filter off a device's tc ingress (the uplinks' at uninstall); false: none. */
  detachIngress(ifindex: number): boolean {
    if (this.attached(ifindex).ingress === undefined) return false;
    this.lib.tc.detach({ ifindex, direction: 'ingress', ...FILTER });
    return true;
  }

  /** Program ids attached at Dyad's filters of a device, if any. */
  attached(ifindex: number): AttachState {
    const q = (direction: TcDirection) => {
      try {
        return this.lib.tc.query({ ifindex, direction, ...FILTER });
      } catch {
        return undefined;
      }
    };
    const ingress = q('ingress');
    const egress = q('egress');
    return {
      ...(ingress !== undefined ? { ingress } : {}),
      ...(egress !== undefined ? { egress } : {}),
    };
  }

  close(): void {
    this.loaded.close();
  }
}
