// What this machine allows any allocator that stores each pair in JetStream KV, for
// `npm run bench -- ipam`: a replica in plain nats.js with no Dyad code (no CloudEvents, no
// schema checks, no tracing, no allocation logic) that answers each allocate request after
// WRITES (1 or 2) conditional KV creates of fresh keys, in sequence as ipam makes its owner record
// and slot claim, and publishes the event. Requests and replies are the same bytes ipam sees.
// Prints "ready" when serving.
import { createInbox, connect, headers } from '@nats-io/transport-node';
import type { Msg } from '@nats-io/transport-node';
import { Allocation, Header, IpamEventKind, IpamSubject, ipamEventSubject } from '@dyad/contracts';

const url = process.env['NATS_URL'];
const bucket = process.env['BUCKET'];
const writes = Number(process.env['WRITES'] ?? '2');
if (url === undefined || bucket === undefined) throw new Error('NATS_URL and BUCKET must be set');

const nc = await connect({ servers: url, name: 'ipam-raw', noAsyncTraces: true });
const enc = new TextEncoder();
const dec = new TextDecoder();
const inbox = createInbox();
const acks = new Map<number, { ok: () => void; fail: (e: Error) => void }>();
let seq = 0;
nc.subscribe(`${inbox}.*`, {
  callback: (_err, m) => {
    const id = Number(m.subject.slice(inbox.length + 1));
    const a = acks.get(id);
    acks.delete(id);
    const ack = JSON.parse(dec.decode(m.data)) as { error?: { description?: string } };
    if (ack.error === undefined) a?.ok();
    else a?.fail(new Error(ack.error.description));
  },
});

function create(key: string, value: unknown): Promise<void> {
  const id = ++seq;
  const h = headers();
  h.set('Nats-Expected-Last-Subject-Sequence', '0');
  return new Promise((ok, fail) => {
    acks.set(id, { ok, fail });
    nc.publish(`$KV.${bucket}.${key}`, enc.encode(JSON.stringify(value)), {
      headers: h,
      reply: `${inbox}.${id}`,
    });
  });
}

let n = 0;
async function answer(m: Msg): Promise<void> {
  const r = JSON.parse(dec.decode(m.data)) as Record<string, string>;
  const i = ++n;
  const at = Date.now();
  const node = r['node'] ?? '';
  if (writes >= 1) await create(`owner.${node}.${process.pid}-${i}`, { slot: i, at });
  if (writes >= 2) {
    await create(`slot.${node}.${process.pid}-${i}`, { ...r, ips: {}, at });
  }
  const body = {
    ...r,
    addresses: [
      { family: 'IPv4', address: `198.18.${(i >> 8) & 255}.${i & 255}` },
      { family: 'IPv6', address: `fd00:d1ad::${i.toString(16)}` },
    ],
    allocatedAt: new Date(at).toISOString(),
  };
  const reply = headers();
  reply.set(Header.type, Allocation.type);
  m.respond(enc.encode(JSON.stringify(body)), { headers: reply });
  nc.publish(ipamEventSubject(IpamEventKind.allocated), enc.encode(JSON.stringify(body)));
}

nc.subscribe(IpamSubject.allocate, {
  queue: 'ipam',
  callback: (_err, m) => {
    answer(m).catch((err: unknown) => {
      m.respond(enc.encode(String(err)));
    });
  },
});
await nc.flush();
console.log('ready');
