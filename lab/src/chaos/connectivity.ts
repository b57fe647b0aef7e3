// A probe loop between long-lived pods, one per node, in every family: the longest time any
// ordered pair could not connect, and which probes failed in a given window.
import type { Family } from '@dyad/netaddr';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlClient } from '../control.ts';
import type { PodRecordValue } from '../records.ts';
import { ECHO_PORT } from './churn.ts';

export interface ProbeFailure {
  readonly at: number;
  readonly from: string;
  readonly to: string;
  readonly family: Family;
  readonly reason: string;
}

/** The address of a family in a record's podIPs. */
export function addressOf(p: Pick<PodRecordValue, 'podIPs'>, family: Family): string | undefined {
  return p.podIPs.find((a) => (family === 'IPv6') === a.includes(':'));
}

/** Longest stretch, per family, from a pair's last success to its next one (or to now). */
export class GapMeter {
  readonly #lastOk = new Map<string, number>();
  readonly #longest = new Map<Family, number>();

  readonly families: readonly Family[];

  constructor(families: readonly Family[]) {
    this.families = families;
  }

  record(pair: string, family: Family, ok: boolean, at: number): void {
    const key = `${pair} ${family}`;
    const last = this.#lastOk.get(key) ?? at;
    if (!this.#lastOk.has(key)) this.#lastOk.set(key, at);
    if (ok) {
      this.#bump(family, at - last);
      this.#lastOk.set(key, at);
    }
  }

  /** Per family, the longest gap since the last reset, open gaps counted up to `now`. */
  take(now: number): Record<string, number> {
    for (const [key, last] of this.#lastOk)
      this.#bump(key.slice(key.lastIndexOf(' ') + 1) as Family, now - last);
    const out: Record<string, number> = {};
    for (const f of this.families) out[f] = this.#longest.get(f) ?? 0;
    this.#longest.clear();
    return out;
  }

  #bump(family: Family, ms: number): void {
    this.#longest.set(family, Math.max(this.#longest.get(family) ?? 0, ms));
  }
}

export class ConnectivityMonitor {
  readonly #pods: readonly PodRecordValue[];
  readonly #clients = new Map<string, ControlClient>();
  readonly meter: GapMeter;
  readonly failures: ProbeFailure[] = [];
  #running = false;
  #loop: Promise<void> | undefined;

  constructor(pods: readonly PodRecordValue[], families: readonly Family[]) {
    this.#pods = pods;
    this.meter = new GapMeter(families);
  }

  start(): void {
    this.#running = true;
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
    for (const c of this.#clients.values()) c.close();
  }

  /** Failures between `from` and `to` (ms since the epoch). */
  failuresBetween(from: number, to: number): ProbeFailure[] {
    return this.failures.filter((f) => f.at >= from && f.at <= to);
  }

  async #run(): Promise<void> {
    while (this.#running) {
      const round = Date.now();
      await Promise.all(
        this.#pods.flatMap((src) =>
          this.#pods
            .filter((d) => d !== src)
            .flatMap((dst) => this.meter.families.map((f) => this.#probe(src, dst, f))),
        ),
      );
      await sleep(Math.max(0, 250 - (Date.now() - round)));
    }
  }

  async #probe(src: PodRecordValue, dst: PodRecordValue, family: Family): Promise<void> {
    const to = addressOf(dst, family);
    if (to === undefined) return;
    let client = this.#clients.get(src.name);
    if (client === undefined) {
      client = new ControlClient(src.control);
      this.#clients.set(src.name, client);
    }
    const r = await client.probe('TCP', to, ECHO_PORT, 1000);
    const at = Date.now();
    const pair = `${src.name}->${dst.name}`;
    if (r.result === 'error') {
      // the stand-in's socket went away (its pod runtime restarted): reconnect next time
      client.close();
      this.#clients.delete(src.name);
    }
    const ok = r.result === 'connected';
    this.meter.record(pair, family, ok, at);
    if (!ok)
      this.failures.push({
        at,
        from: src.name,
        to: dst.name,
        family,
        reason: r.reason ?? r.result ?? 'unknown',
      });
  }
}
