import { FamilySchema } from '@dyad/contracts';
import { isIP } from 'node:net';
import { z } from 'zod';
import { ControlClient } from './control.ts';
import { labPaths } from './paths.ts';
import type { ProbeProtocol } from './probe-once.ts';
import { listPodRecords, parsePodRef, readPodRecord } from './records.ts';
import type { PodRecordValue } from './records.ts';

export const ProbeSpec = z.object({
  from: z.string(),
  /** `<ns>/<pod>`, or an IP literal of either family (a Service's cluster IP, say). */
  to: z.string(),
  /** A number, or a container port's name on the target pod. */
  port: z.union([z.number().int().min(0).max(65535), z.string().min(1)]),
  protocol: z.enum(['TCP', 'UDP', 'ICMP']),
  /** Which of a pod target's addresses; optional for an address target (its own family). */
  family: FamilySchema.optional(),
});
export type ProbeSpecValue = z.output<typeof ProbeSpec>;

export type ProbeResult = 'connected' | 'blocked' | 'error';

export interface ProbeAnswer {
  readonly result: ProbeResult;
  readonly reason?: string;
  /** The address probed, when one was found. */
  readonly address?: string;
  readonly ms?: number;
}

/**
 * Runs probes from lab pods: each from the source pod's stand-in (so from its netns), to the
 * target pod's address of the asked family, looked up in the pod records the pod runtimes write.
 * Keeps one control connection per source pod.
 */
export class Prober {
  readonly #podsDir: string;
  readonly #clients = new Map<string, ControlClient>();
  #records: Map<string, PodRecordValue> | undefined;

  constructor(options: { podsDir?: string; preload?: boolean } = {}) {
    this.#podsDir = options.podsDir ?? labPaths().pods;
    if (options.preload === true) {
      this.#records = new Map(
        listPodRecords(this.#podsDir).map((r) => [`${r.namespace}/${r.name}`, r]),
      );
    }
  }

  pod(ref: string): PodRecordValue | { error: string } {
    const parsed = parsePodRef(ref);
    if (parsed === undefined) return { error: `'${ref}' is not <namespace>/<pod>` };
    const r = this.#records?.get(ref) ?? readPodRecord(this.#podsDir, parsed[0], parsed[1]);
    return r ?? { error: `no pod ${ref} in the lab (not created, not yet running, or deleted)` };
  }

  async probe(spec: ProbeSpecValue, timeoutMs: number): Promise<ProbeAnswer> {
    const literal = isIP(spec.to);
    if (literal !== 0) {
      const family = literal === 4 ? 'IPv4' : 'IPv6';
      if (spec.family !== undefined && spec.family !== family)
        return {
          result: 'error',
          reason: `${spec.to} is an ${family} address, not ${spec.family}`,
        };
      if (typeof spec.port !== 'number')
        return {
          result: 'error',
          reason: `a port name needs a pod target; ${spec.to} is an address`,
        };
      return this.probeAddress(spec.from, spec.to, spec.port, spec.protocol, timeoutMs);
    }
    if (spec.family === undefined)
      return { result: 'error', reason: `--family (IPv4 or IPv6) is needed for pod ${spec.to}` };
    const to = this.pod(spec.to);
    if ('error' in to) return { result: 'error', reason: to.error };
    const address = to.podIPs.find((ip) => (spec.family === 'IPv6') === ip.includes(':'));
    if (address === undefined)
      return { result: 'error', reason: `${spec.to} has no ${spec.family} address` };
    let port: number;
    if (typeof spec.port === 'number') port = spec.port;
    else {
      const named = to.ports.find((p) => p.name === spec.port);
      if (named === undefined)
        return { result: 'error', reason: `${spec.to} declares no port named '${spec.port}'` };
      port = named.port;
    }
    return this.probeAddress(spec.from, address, port, spec.protocol, timeoutMs);
  }

  /** A probe to any address (e.g. a deleted pod's old one). */
  async probeAddress(
    from: string,
    address: string,
    port: number,
    protocol: ProbeProtocol,
    timeoutMs: number,
  ): Promise<ProbeAnswer> {
    const src = this.pod(from);
    if ('error' in src) return { result: 'error', reason: src.error, address };
    let client = this.#clients.get(src.control);
    if (client === undefined) {
      client = new ControlClient(src.control);
      this.#clients.set(src.control, client);
    }
    const r = await client.probe(protocol, address, port, timeoutMs);
    const result = r.result ?? 'error';
    return {
      result,
      address,
      ...(r.reason === undefined ? {} : { reason: r.reason }),
      ...(r.ms === undefined ? {} : { ms: r.ms }),
    };
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}
