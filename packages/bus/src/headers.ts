import { Match, headers as natsHeaders } from '@nats-io/transport-node';
import type { MsgHdrs } from '@nats-io/transport-node';

/** Header lookup by name, case-insensitive, undefined when absent (nats.js returns ''). */
export type HeaderGetter = (name: string) => string | undefined;

export function headerGetter(h: MsgHdrs | undefined): HeaderGetter {
  if (h === undefined) return () => undefined;
  // nats.js looks a name up case-insensitively by lower-casing every key on every call; a decoded
  // CloudEvent asks for ten names, so the keys are lower-cased once, lazily, here.
  let byLower: Map<string, string> | undefined;
  return (name) => {
    if (byLower === undefined) {
      byLower = new Map();
      for (const k of h.keys()) {
        const lk = k.toLowerCase();
        if (!byLower.has(lk)) byLower.set(lk, h.get(k, Match.Exact));
      }
    }
    return byLower.get(name.toLowerCase());
  };
}

/** Headers of a new message; a record's keys are distinct, so each is appended, not replaced. */
export function headersFrom(record: Readonly<Record<string, string>>): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(record)) h.append(k, v);
  return h;
}

/** NATS header values are one line; details from validators may not be. */
export function headerValue(v: string, max = 1024): string {
  const flat = v.replace(/[\r\n]+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
