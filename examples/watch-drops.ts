// A consumer of Dyad's dropped flows as a third party writes one: only @nats-io/transport-node and
// the published schema (docs/events/schemas), no Dyad package. NATS_URL=nats://… node watch-drops.ts
import { readFileSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';

type End = { namespace?: string; pod_name?: string };
type Flow = {
  time: string;
  node_name: string;
  drop_reason_desc?: string;
  source: End;
  destination: End;
};
type Flows = Flow & { IP: { source: string; destination: string; ipVersion: string } };

const url = new URL('../docs/events/schemas/io.dyad.flow.v1.json', import.meta.url);
const schema = JSON.parse(readFileSync(url, 'utf8')) as { title: string; required: string[] };
const nc = await connect({ servers: process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222' });
// dyad.flow.v1.<node>.<verdict>.<family>.<source namespace>.<destination namespace>
const sub = nc.subscribe('dyad.flow.v1.*.dropped.>');
await nc.flush();
console.log('ready');
const who = (e: End, ip: string) => (e.pod_name ? `${e.namespace ?? '-'}/${e.pod_name}` : ip);
for await (const m of sub) {
  if (m.headers?.get('ce-type') !== schema.title) continue; // a type this consumer does not know
  const f = m.json<Flows>();
  const missing = schema.required.filter((k) => !(k in f));
  if (missing.length > 0) {
    console.error(`skipped a flow without ${missing.join(', ')}`);
    continue;
  }
  const [src, dst] = [who(f.source, f.IP.source), who(f.destination, f.IP.destination)];
  console.log(
    `${f.time} ${f.node_name} ${f.IP.ipVersion} ${src} -> ${dst} ${f.drop_reason_desc ?? ''}`,
  );
}
