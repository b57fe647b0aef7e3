import { Match, headers as natsHeaders } from '@nats-io/transport-node';
import type { MsgHdrs } from '@nats-io/transport-node';

/** Header lookup by name, case-insensitive, undefined when absent (nats.js returns ''). */
export type HeaderGetter = (name: string) => string | undefined;

export function headerGetter(h: MsgHdrs | undefined): HeaderGetter {
  if (h === undefined) return () => undefined;
  return (name) => (h.has(name, Match.IgnoreCase) ? h.get(name, Match.IgnoreCase) : undefined);
}

export function headersFrom(record: Readonly<Record<string, string>>): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(record)) h.set(k, v);
  return h;
}

/** NATS header values are one line; details from validators may not be. */
export function headerValue(v: string, max = 1024): string {
  const flat = v.replace(/[\r\n]+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
