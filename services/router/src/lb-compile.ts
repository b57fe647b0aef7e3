import type { Family } from '@dyad/netaddr';
import type {
  EndpointSliceObject,
  RouterServiceEntryValue,
  ServiceBackendValue,
  ServiceFrontendValue,
  ServiceObject,
  ServiceProblemValue,
} from '@dyad/contracts';
import { canonicalAddress, familyOf } from './ip.ts';

/**
 * A Service as one node's datapath should serve it, from the Service, its EndpointSlices and the
 * node's addresses alone: pure, so it is tested without NATS. Every entry of `clusterIPs` is a
 * frontend per port, each with the backends of its own family taken from the slices of that
 * `addressType`; the apiserver already applied `ipFamilyPolicy` when it allocated `clusterIPs`.
 * A NodePort or LoadBalancer Service also gets, per port with a `nodePort` and per family of its
 * cluster IPs, a frontend on the node's address of that family (`externalTrafficPolicy: Local`
 * keeps only the node's backends there). A headless Service and an ExternalName one have none.
 */

/** The sessionAffinity timeout Kubernetes defaults to (3 h). */
export const DEFAULT_AFFINITY_TIMEOUT_S = 10_800;

export interface CompileInput {
  readonly service: ServiceObject;
  /** The slices labelled with this Service's name, in its namespace. */
  readonly slices: readonly EndpointSliceObject[];
  /** The families the cluster serves (those ipam hands blocks of). */
  readonly families: ReadonlySet<Family>;
  /** The node whose state this is: `internalTrafficPolicy: Local` keeps only its backends. */
  readonly node: string;
  /** The node's addresses (its NodePort frontends); none: no NodePort frontend. */
  readonly nodeAddresses?: Partial<Record<Family, string>>;
}

function backendOrder(a: ServiceBackendValue, b: ServiceBackendValue): number {
  return a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port;
}

export function compileService(input: CompileInput): RouterServiceEntryValue {
  const { service, node } = input;
  const { namespace = 'default', name } = service.metadata;
  const spec = service.spec;
  const problems: ServiceProblemValue[] = [];
  const problem = (p: ServiceProblemValue): void => {
    if (!problems.some((q) => q.code === p.code && q.message === p.message)) problems.push(p);
  };
  const local = spec.internalTrafficPolicy === 'Local';
  const frontends: ServiceFrontendValue[] = [];

  /** The backends of one family for one Service port (`onlyNode`: those on this node). */
  const collect = (
    family: Family,
    protocol: 'TCP' | 'UDP',
    portName: string,
    targetPort: number | string | undefined,
    servicePort: number,
    onlyNode: boolean,
  ): ServiceBackendValue[] => {
    const backends = new Map<string, ServiceBackendValue>();
    for (const slice of input.slices) {
      if (slice.addressType !== family) continue;
      // The slice controller resolved targetPort (by number or by name) for the pods of this
      // slice; a slice port without a number is a name none of its pods declares.
      const slicePort = slice.ports.find(
        (p) => (p.name ?? '') === portName && (p.protocol ?? 'TCP') === protocol,
      );
      if (slicePort === undefined) continue;
      if (slicePort.port === undefined || slicePort.port < 1 || slicePort.port > 65535) {
        if (slice.endpoints.length > 0)
          problem({
            code: 'port-name-unresolved',
            message: `targetPort ${String(targetPort ?? portName)} of port ${servicePort}/${protocol} is declared by no backend of slice ${slice.metadata.name}`,
          });
        continue;
      }
      for (const ep of slice.endpoints) {
        const c = ep.conditions;
        // Kubernetes: an unset `ready` means ready; terminating endpoints keep serving theirs.
        const state =
          c.terminating === true
            ? c.serving === false
              ? undefined
              : 'terminating'
            : c.ready === false
              ? undefined
              : 'ready';
        if (state === undefined) continue;
        if (onlyNode && ep.nodeName !== node) continue;
        for (const raw of ep.addresses) {
          const address = canonicalAddress(raw);
          if (address === undefined || familyOf(address) !== family) {
            problem({
              code: 'address-family-mismatch',
              message: `slice ${slice.metadata.name} (${slice.addressType}) holds ${raw}`,
            });
            continue;
          }
          const b: ServiceBackendValue = {
            address,
            port: slicePort.port,
            state,
            ...(ep.nodeName !== undefined ? { nodeName: ep.nodeName } : {}),
            ...(ep.targetRef?.kind === 'Pod'
              ? {
                  pod: {
                    namespace: ep.targetRef.namespace ?? namespace,
                    name: ep.targetRef.name,
                  },
                }
              : {}),
          };
          const key = `${address}|${slicePort.port}`;
          const had = backends.get(key);
          // one endpoint in two slices (a slice being replaced): ready wins
          if (had === undefined || (had.state === 'terminating' && state === 'ready'))
            backends.set(key, b);
        }
      }
    }
    return [...backends.values()].sort(backendOrder);
  };

  const vips =
    spec.type === 'ExternalName'
      ? []
      : spec.clusterIPs.flatMap((ip) => {
          const address = ip === 'None' ? undefined : canonicalAddress(ip);
          const family = address === undefined ? undefined : familyOf(address);
          return address === undefined || family === undefined ? [] : [{ address, family }];
        });

  for (const vip of vips) {
    if (!input.families.has(vip.family)) {
      problem({
        code: 'family-disabled',
        message: `cluster IP ${vip.address} is ${vip.family}, which this cluster does not serve`,
      });
      continue;
    }
    for (const sp of spec.ports) {
      if (sp.protocol !== 'TCP' && sp.protocol !== 'UDP') {
        problem({
          code: 'protocol-unsupported',
          message: `port ${sp.port}/${sp.protocol} is not load-balanced`,
        });
        continue;
      }
      const portName = sp.name ?? '';
      const backends = collect(vip.family, sp.protocol, portName, sp.targetPort, sp.port, local);
      frontends.push({
        family: vip.family,
        address: vip.address,
        port: sp.port,
        protocol: sp.protocol,
        portName,
        backends,
      });
    }
  }

  // NodePort: on the node's own address of each family the Service has a cluster IP of
  const nodePorts = spec.type === 'NodePort' || spec.type === 'LoadBalancer';
  const etpLocal = spec.externalTrafficPolicy === 'Local';
  for (const family of nodePorts ? new Set(vips.map((v) => v.family)) : []) {
    const address = input.nodeAddresses?.[family];
    if (address === undefined || !input.families.has(family)) continue;
    for (const sp of spec.ports) {
      if (sp.nodePort === undefined || sp.nodePort < 1 || sp.nodePort > 65535) continue;
      if (sp.protocol !== 'TCP' && sp.protocol !== 'UDP') continue;
      const portName = sp.name ?? '';
      frontends.push({
        family,
        address,
        port: sp.nodePort,
        protocol: sp.protocol,
        portName,
        backends: collect(family, sp.protocol, portName, sp.targetPort, sp.port, etpLocal),
        type: 'NodePort',
        externalTrafficPolicy: etpLocal ? 'Local' : 'Cluster',
      });
    }
  }

  return {
    namespace,
    name,
    frontends,
    ...(spec.sessionAffinity === 'ClientIP'
      ? {
          affinityTimeoutSeconds: spec.sessionAffinityTimeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_S,
        }
      : {}),
    internalTrafficPolicy: local ? 'Local' : 'Cluster',
    problems,
  };
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Two entries are equal by content, whatever order their keys were written in. */
export function sameServiceEntry(a: RouterServiceEntryValue, b: RouterServiceEntryValue): boolean {
  return canonicalJson(a) === canonicalJson(b);
}
