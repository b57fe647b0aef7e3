import type { PolicyPortsValue } from '@dyad/contracts';

/** The protocols a NetworkPolicy port names, spelled as Kubernetes spells them. */
export const Protocol = { TCP: 'TCP', UDP: 'UDP', SCTP: 'SCTP' } as const;
export type Protocol = (typeof Protocol)[keyof typeof Protocol];
/** Fixed order: canonical output lists protocols in it. */
export const PROTOCOLS: readonly Protocol[] = [Protocol.TCP, Protocol.UDP, Protocol.SCTP];

export const MAX_PORT = 65535;

/** A container port a pod declares; named ones are what named NetworkPolicy ports resolve to. */
export interface ContainerPortInput {
  readonly name?: string;
  readonly port: number;
  readonly protocol: Protocol;
}

/** One entry of a rule's `ports`, normalized. An empty `ports` list is one `any`. */
export type PortSpec =
  | { readonly kind: 'any' }
  | {
      readonly kind: 'range';
      readonly protocol: Protocol;
      readonly from: number;
      readonly to: number;
    }
  | { readonly kind: 'named'; readonly protocol: Protocol; readonly name: string };

type Range = [from: number, to: number];

/**
 * A set of (protocol, port) pairs being built: everything (`any`: every protocol, ICMP
 * included), or per protocol a list of inclusive port ranges. `canonical()` merges overlapping
 * and adjacent ranges, so equal sets have equal keys and equal rules.
 */
export class PortSet {
  any = false;
  readonly #ranges: Record<Protocol, Range[]> = { TCP: [], UDP: [], SCTP: [] };
  #clean = true;

  static of(...specs: PortSpec[]): PortSet {
    const s = new PortSet();
    for (const p of specs) {
      if (p.kind === 'any') s.addAny();
      else if (p.kind === 'range') s.addRange(p.protocol, p.from, p.to);
    }
    return s;
  }

  addAny(): void {
    this.any = true;
  }

  addRange(protocol: Protocol, from: number, to: number): void {
    if (this.any) return;
    this.#ranges[protocol].push([from, to]);
    this.#clean = false;
  }

  addSet(other: PortSet): void {
    if (other.any) {
      this.any = true;
      return;
    }
    for (const p of PROTOCOLS) for (const [f, t] of other.ranges(p)) this.addRange(p, f, t);
  }

  isEmpty(): boolean {
    return !this.any && PROTOCOLS.every((p) => this.#ranges[p].length === 0);
  }

  /** Merged, sorted ranges of one protocol (empty when `any`: that covers it). */
  ranges(protocol: Protocol): readonly Range[] {
    if (this.any) return [];
    this.#canonicalize();
    return this.#ranges[protocol];
  }

  /** A text equal for equal sets; groups peers that are allowed the same. */
  key(): string {
    if (this.any) return '*';
    this.#canonicalize();
    return PROTOCOLS.map(
      (p) => `${p}:${this.#ranges[p].map(([f, t]) => `${f}-${t}`).join(',')}`,
    ).join(';');
  }

  /** As contract entries, in canonical order; a whole protocol has no `ports`. */
  toRules(): PolicyPortsValue[] {
    if (this.any) return [{}];
    this.#canonicalize();
    const out: PolicyPortsValue[] = [];
    for (const p of PROTOCOLS) {
      for (const [from, to] of this.#ranges[p]) {
        out.push(
          from === 0 && to === MAX_PORT ? { protocol: p } : { protocol: p, ports: { from, to } },
        );
      }
    }
    return out;
  }

  #canonicalize(): void {
    if (this.#clean) return;
    for (const p of PROTOCOLS) this.#ranges[p] = mergeRanges(this.#ranges[p]);
    this.#clean = true;
  }
}

function mergeRanges(ranges: Range[]): Range[] {
  if (ranges.length < 2) return ranges;
  const sorted = [...ranges].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out: Range[] = [];
  for (const [f, t] of sorted) {
    const last = out.at(-1);
    // Adjacent ranges merge too: 80-80 and 81-81 are the set 80-81.
    if (last !== undefined && f <= last[1] + 1) last[1] = Math.max(last[1], t);
    else out.push([f, t]);
  }
  return out;
}

/**
 * Adds what `specs` allow towards a pod with `containerPorts`: numbers and ranges as they are, a
 * named port as the number of each container port of that name and protocol (none: nothing).
 */
export function resolvePorts(
  specs: readonly PortSpec[],
  containerPorts: readonly ContainerPortInput[],
  into: PortSet,
): void {
  for (const s of specs) {
    if (s.kind === 'any') into.addAny();
    else if (s.kind === 'range') into.addRange(s.protocol, s.from, s.to);
    else {
      for (const c of containerPorts) {
        if (c.name === s.name && c.protocol === s.protocol)
          into.addRange(s.protocol, c.port, c.port);
      }
    }
  }
}

export function hasNamedPort(specs: readonly PortSpec[]): boolean {
  return specs.some((s) => s.kind === 'named');
}
