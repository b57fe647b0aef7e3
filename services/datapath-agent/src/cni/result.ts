import type { FamilyVersion } from '@dyad/netaddr';
import type { Endpoint } from '../endpoint.ts';
import type { PrevResult } from './request.ts';
import { SUPPORTED_VERSIONS, compareVersions } from './spec.ts';

interface ResultInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
}
interface ResultIp {
  address: string;
  gateway?: string;
  interface?: number;
  /** CNI before 1.0: the family as its IP version, in text. */
  version?: `${FamilyVersion}`;
}
interface ResultRoute {
  dst: string;
  gw?: string;
}

export interface CniResult {
  cniVersion: string;
  interfaces: ResultInterface[];
  ips: ResultIp[];
  routes: ResultRoute[];
  dns: Record<string, unknown>;
}

/**
 * The ADD result for an endpoint: the host veth and the pod interface, one address per family
 * (as configured: /32 and /128) with the node gateway, and a default route per family. A
 * `prevResult` (Dyad chained after another plugin) is kept and ours appended.
 */
export function buildResult(version: string, ep: Endpoint, prev?: PrevResult): CniResult {
  const legacy = compareVersions(version, '1.0.0') < 0;
  const withMtu = compareVersions(version, '1.1.0') >= 0;
  const interfaces: ResultInterface[] = (prev?.interfaces ?? []).map((i) => ({ ...i }));
  const base = interfaces.length;
  interfaces.push({ name: ep.hostIfName, mac: ep.hostMac, ...(withMtu ? { mtu: ep.mtu } : {}) });
  interfaces.push({
    name: ep.ifName,
    mac: ep.mac,
    ...(withMtu ? { mtu: ep.mtu } : {}),
    sandbox: ep.netns,
  });
  const ips: ResultIp[] = (prev?.ips ?? []).map((i) => ({ ...i }));
  const routes: ResultRoute[] = (prev?.routes ?? []).map((r) => ({ ...r }));
  for (const [fam, a, plen, dst] of [
    ['4', ep.ipv4, 32, '0.0.0.0/0'],
    ['6', ep.ipv6, 128, '::/0'],
  ] as const) {
    if (a === undefined) continue;
    ips.push({
      ...(legacy ? { version: fam } : {}),
      address: `${a.address}/${plen}`,
      gateway: a.gateway,
      interface: base + 1,
    });
    routes.push({ dst, gw: a.gateway });
  }
  return { cniVersion: version, interfaces, ips, routes, dns: {} };
}

export function versionResult(version: string): {
  cniVersion: string;
  supportedVersions: string[];
} {
  return { cniVersion: version, supportedVersions: [...SUPPORTED_VERSIONS] };
}

export function errorResult(
  version: string,
  code: number,
  msg: string,
  details: string,
): { cniVersion: string; code: number; msg: string; details: string } {
  return { cniVersion: version, code, msg, details };
}
