import type { Family } from '@dyad/netaddr';
import { LabUsageError } from './errors.ts';

export interface LabOptions {
  readonly nodes: number;
  readonly ipv4: boolean;
  readonly ipv6: boolean;
  /** Real kubelets and containerd on the nodes instead of the pod runtime (kubelet-mode.ts). */
  readonly kubelet?: boolean;
  /** Run Jaeger and point every service at it. */
  readonly tracing?: boolean;
}

export const DEFAULT_OPTIONS: LabOptions = { nodes: 3, ipv4: true, ipv6: true };
export const MAX_NODES = 16;

export interface NodePlan {
  /** Kubernetes Node name. */
  readonly name: string;
  readonly netns: string;
  /** The node's interface on the fabric, inside its netns. */
  readonly uplink: string;
  /** The other end, a port of the fabric bridge. */
  readonly fabricPort: string;
  readonly addresses: Partial<Record<Family, string>>;
  /** bpffs directory of its pinned maps. */
  readonly pinDir: string;
}

/** Where everything of one lab run lives. Every name starts with the run's prefix. */
export interface LabPlan {
  readonly prefix: string;
  readonly options: LabOptions;
  /** Enabled families, primary first. */
  readonly families: readonly Family[];
  readonly fabricNetns: string;
  readonly bridge: string;
  /** Subnet of the node fabric per family (node addresses are in it). */
  readonly fabric: Partial<Record<Family, string>>;
  /** IPAM cluster pool per family and its per-node block size. */
  readonly podPools: Partial<Record<Family, { readonly cidr: string; readonly maskSize: number }>>;
  /** Service cluster IP ranges, primary first, comma-separated as the apiserver takes them. */
  readonly serviceRange: string;
  readonly pinRoot: string;
  readonly nodes: readonly NodePlan[];
}

/**
 * Addresses for one run, unique per run: IPv4 only from 198.18.0.0/15 (pods from the lower
 * half's first 128 /24s, services from the upper half of 198.18/16, node fabric from 198.19/16),
 * IPv6 only from fd00::/8 (a random /48 per run, like a ULA). `seed` is 6 random bytes.
 */
export function makePlan(options: LabOptions, seed: Uint8Array): LabPlan {
  if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > MAX_NODES) {
    throw new LabUsageError(`--nodes must be an integer from 1 to ${MAX_NODES}`);
  }
  if (!options.ipv4 && !options.ipv6) {
    throw new LabUsageError('at least one of IPv4 and IPv6 must stay enabled');
  }
  if (seed.length < 6) throw new LabUsageError('seed must be 6 bytes');
  const b = (i: number): number => seed[i] ?? 0;
  const prefix = `dl${hex(b(0))}${hex(b(1))}`;
  const slot = b(2) % 8; // one of 8 /20 pod pools and service ranges
  const fabricOctet = b(3); // 198.19.<fabricOctet>.0/24
  const ula = `fd${hex(b(4))}:${hex(b(5))}${hex(b(0))}:${hex(b(1))}${hex(b(2))}`;
  const families: Family[] = [];
  if (options.ipv4) families.push('IPv4');
  if (options.ipv6) families.push('IPv6');

  const fabric: Partial<Record<Family, string>> = {};
  const podPools: Partial<Record<Family, { cidr: string; maskSize: number }>> = {};
  const services: string[] = [];
  if (options.ipv4) {
    fabric.IPv4 = `198.19.${fabricOctet}.0/24`;
    podPools.IPv4 = { cidr: `198.18.${slot * 16}.0/20`, maskSize: 24 };
    services.push(`198.18.${128 + slot * 16}.0/20`);
  }
  if (options.ipv6) {
    fabric.IPv6 = `${ula}:f::/64`;
    podPools.IPv6 = { cidr: `${ula}:100::/104`, maskSize: 120 };
    services.push(`${ula}:5e::/112`);
  }
  const pinRoot = `/sys/fs/bpf/${prefix}`;
  const nodes: NodePlan[] = [];
  for (let i = 1; i <= options.nodes; i++) {
    const name = `node-${i}`;
    nodes.push({
      name,
      netns: `${prefix}-${name}`,
      uplink: 'eth0',
      fabricPort: `${prefix}f${i}`,
      addresses: {
        ...(options.ipv4 ? { IPv4: `198.19.${fabricOctet}.${10 + i}` } : {}),
        ...(options.ipv6 ? { IPv6: `${ula}:f::${(10 + i).toString(16)}` } : {}),
      },
      pinDir: `${pinRoot}/${name}`,
    });
  }
  return {
    prefix,
    options,
    families,
    fabricNetns: `${prefix}-fabric`,
    bridge: 'br0',
    fabric,
    podPools,
    serviceRange: services.join(','),
    pinRoot,
    nodes,
  };
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

/** Prefix length of a CIDR. */
export function prefixLength(cidr: string): number {
  return Number(cidr.slice(cidr.indexOf('/') + 1));
}

/** The run prefix format: `dl` and four hex digits. */
export const PREFIX_PATTERN = /^dl[0-9a-f]{4}$/;

/**
 * `up` options from the command line: `--nodes N`, `--nodes=N`, `--ipv4=false`, `--ipv6=false`,
 * `--kubelet`, `--tracing` (also `=true`/`=false`; a bare boolean flag means true).
 */
export function parseUpArgs(args: readonly string[]): LabOptions {
  let nodes = DEFAULT_OPTIONS.nodes;
  let ipv4 = true;
  let ipv6 = true;
  let kubelet = false;
  let tracing = false;
  const bool = (flag: string, v: string): boolean => {
    if (v === 'true') return true;
    if (v === 'false') return false;
    throw new LabUsageError(`${flag} takes true or false, not '${v}'`);
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    const [flag, inline] = a.includes('=')
      ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
      : [a, undefined];
    if (flag === '--nodes') {
      const v = inline ?? args[++i];
      if (v === undefined || !/^[0-9]+$/.test(v)) throw new LabUsageError('--nodes takes a number');
      nodes = Number(v);
    } else if (flag === '--ipv4') {
      ipv4 = inline === undefined ? true : bool(flag, inline);
    } else if (flag === '--ipv6') {
      ipv6 = inline === undefined ? true : bool(flag, inline);
    } else if (flag === '--kubelet') {
      kubelet = inline === undefined ? true : bool(flag, inline);
    } else if (flag === '--tracing') {
      tracing = inline === undefined ? true : bool(flag, inline);
    } else {
      throw new LabUsageError(
        `unknown option ${a} (up takes --nodes N, --ipv4=false, --ipv6=false, --kubelet, --tracing)`,
      );
    }
  }
  const options = {
    nodes,
    ipv4,
    ipv6,
    ...(kubelet ? { kubelet } : {}),
    ...(tracing ? { tracing } : {}),
  };
  makePlan(options, new Uint8Array(6)); // validates
  return options;
}
