// `npm run bench -- flows [--seconds S]`: flow export from a flooded ring buffer, on one core.
// A child process keeps dy_events full (BPF_PROG_TEST_RUN of dy_to_container on a datagram to a
// pod whose policy admits nothing: one drop event per run; it pauses 5 ms whenever the ring is
// full, so it keeps the ring full without taking a core from nats-server). In this process, one after the other
// for S seconds each: the ring buffer drained and discarded (drain_per_s); the agent's flow
// exporter (enrich, encode, publish to a real nats-server: events_per_s); and the client's own
// ceiling, a plain nats.js loop publishing pre-encoded messages of a flow's size with the same
// headers to the same server (client_ceiling_per_s). `lost`: events the datapath produced
// (its DROP_POLICY counter) that the exporter neither published nor counted as dropped. Needs
// root. Details to stderr; the last stdout line is the summary JSON.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { connectBus } from '@dyad/bus';
import { FlowEvent, flowSubject } from '@dyad/contracts';
import { EndpointFlags, Libbpf, Reason, decodeDatapathEvent, loadDatapath } from '@dyad/libbpf-ts';
import { Family } from '@dyad/netaddr';
import type { DatapathMapSet } from '@dyad/libbpf-ts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { startNats } from '@dyad/testbed';
import { connect, headers } from '@nats-io/transport-node';
import {
  FLOW_QUEUE,
  FLOW_UNCONFIRMED,
  FlowDirectory,
  FlowExporter,
  flowOf,
} from '@dyad/datapath-agent';

const { values: opts } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'flows'),
  options: { seconds: { type: 'string', default: '5' } },
});
const SECONDS = Number(opts.seconds);
const SRC = '198.18.0.1';
const DST = '198.18.0.2';

/** Ethernet + IPv4 + UDP 40000 → 9999, checksums left zero (the datapath does not check them). */
function datagram(): Buffer {
  const b = Buffer.alloc(14 + 20 + 8 + 16);
  b.writeUInt16BE(0x0800, 12);
  const ip = 14;
  b[ip] = 0x45;
  b.writeUInt16BE(20 + 8 + 16, ip + 2);
  b[ip + 8] = 64;
  b[ip + 9] = 17;
  b.set(SRC.split('.').map(Number), ip + 12);
  b.set(DST.split('.').map(Number), ip + 16);
  b.writeUInt16BE(40000, ip + 20);
  b.writeUInt16BE(9999, ip + 22);
  b.writeUInt16BE(8 + 16, ip + 24);
  return b;
}

function policyDrops(maps: DatapathMapSet): number {
  let n = 0;
  for (const [k, vs] of maps.metrics.entriesPerCpu())
    if (k.reason === Reason.DROP_POLICY) for (const v of vs) n += Number(v.packets);
  return n;
}
function ringLost(maps: DatapathMapSet): number {
  let n = 0;
  for (const [k, vs] of maps.metrics.entriesPerCpu())
    if (k.reason === Reason.EVENT_LOST) for (const v of vs) n += Number(v.packets);
  return n;
}

const log = (o: object) => process.stderr.write(`${JSON.stringify(o)}\n`);

async function main(): Promise<void> {
  const lib = Libbpf.open();
  const pinDir = `/sys/fs/bpf/dybench-${randomBytes(3).toString('hex')}`;
  const nats = await startNats();
  const dp = loadDatapath(lib, { pinDir });
  const maps = dp.maps;
  maps.endpoints.update(
    { address: DST },
    {
      ifindex: 1,
      endpointId: 2,
      identity: 0x10002,
      flags: EndpointFlags.ENFORCE_INGRESS,
      mac: '02:00:00:00:00:02',
      nodeMac: '02:00:00:00:00:01',
    },
  );
  const packetHex = datagram().toString('hex');
  let flood: ChildProcess | undefined;
  const startFlood = async () => {
    const child = spawn(
      process.execPath,
      [join(import.meta.dirname, 'support', 'ring-flood.ts'), pinDir, packetHex],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    flood = child;
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child.once('exit', (code) => reject(new Error(`flood exited ${code}`)));
    });
  };
  const stopFlood = async () => {
    const child = flood;
    flood = undefined;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  const bus = await connectBus({
    servers: nats.url,
    name: 'datapath-agent',
    logger: createLogger({ service: 'bench', level: 'silent' }),
    registry: createMetrics({ processMetrics: false }),
  });
  const nc = await connect({ servers: nats.url });
  const directory = new FlowDirectory();
  const pods = directory.replacement();
  pods.set(`${SRC}/32`, { namespace: 'bench', name: 'client' });
  pods.set(`${DST}/32`, { namespace: 'bench', name: 'server' });
  pods.commit();
  directory.replaceLabels([[0x10002, ['dyad:namespace=bench', 'k8s:app=server']]]);
  const lookup = () => ({
    node: 'bench',
    wallOffsetNs: BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint(),
    pod: (a: string) => directory.pod(a),
    labels: (i: number) => directory.labels(i),
    ifname: () => 'dybench0',
  });
  const during = (ms: number) => new Promise((r) => setTimeout(r, ms));
  try {
    // 1. drain and discard
    const drainReader = lib.ringBuffer(maps.events.fd, decodeDatapathEvent, {
      maxQueued: FLOW_QUEUE,
    });
    let drained = 0;
    await startFlood();
    const t0 = process.hrtime.bigint();
    const pump = (async () => {
      const events = drainReader[Symbol.asyncIterator]();
      while (!(await events.next()).done) drained++;
    })();
    await during(SECONDS * 1000);
    const drainCount = drained + drainReader.dropped;
    const drainS = Number(process.hrtime.bigint() - t0) / 1e9;
    await stopFlood();
    while (drainReader.drainNow().length > 0); // the ring empty before the next phase
    await drainReader.close();
    await pump;
    log({ phase: 'drain', received: drainCount, seconds: drainS });

    // 2. the exporter, publishing
    const publisher = bus.telemetryPublisher(FlowEvent, {
      maxUnconfirmed: FLOW_UNCONFIRMED,
      flushEvery: 256,
    });
    const reader = lib.ringBuffer(maps.events.fd, decodeDatapathEvent, {
      maxQueued: FLOW_QUEUE,
      budget: FLOW_QUEUE,
    });
    const produced0 = policyDrops(maps);
    const lost0 = ringLost(maps);
    const exporter = new FlowExporter({ source: reader, lookup, sink: () => publisher });
    exporter.start((err) => log({ error: String(err) }));
    await startFlood();
    const t1 = process.hrtime.bigint();
    await during(SECONDS * 1000);
    const published = exporter.counters().published;
    const pubS = Number(process.hrtime.bigint() - t1) / 1e9;
    // stop the producer, then let the exporter take what the ring still holds
    await stopFlood();
    for (let last = -1; last !== exporter.counters().received + reader.dropped;) {
      last = exporter.counters().received + reader.dropped;
      await during(200);
    }
    await exporter.close();
    const c = exporter.counters();
    const produced = policyDrops(maps) - produced0;
    const inRing = ringLost(maps) - lost0;
    const lost = produced - (c.published + c.droppedQueue + c.droppedUnsent + inRing);
    log({ phase: 'publish', ...c, ringLost: inRing, produced, seconds: pubS });

    // 3. the client's ceiling: the same bytes and headers, pre-encoded
    const sample = flowOf(
      {
        tsNs: 0n,
        type: 'drop',
        reason: Reason.DROP_POLICY,
        reasonName: 'DROP_POLICY',
        family: Family.IPv4,
        src: SRC,
        dst: DST,
        sport: 40000,
        dport: 9999,
        proto: 17,
        tcpFlags: 0,
        isReply: false,
        direction: 'ingress',
        ifindex: 1,
        srcIdentity: 2,
        dstIdentity: 0x10002,
      },
      lookup(),
    );
    const body = new TextEncoder().encode(JSON.stringify(sample));
    const h = headers();
    for (const [k, v] of Object.entries({
      'ce-specversion': '1.0',
      'ce-id': 'x',
      'ce-source': '/dyad/datapath-agent',
      'ce-type': FlowEvent.type,
      'ce-time': sample.time,
      'ce-dataschema': 'urn:dyad:schema:io.dyad.flow.v1',
      'ce-datacontenttype': 'application/json',
      'content-type': 'application/json',
      'ce-subject': 'pod/bench/server',
    }))
      h.set(k, v);
    const subject = flowSubject(sample);
    let sent = 0;
    const t2 = process.hrtime.bigint();
    const end = Date.now() + SECONDS * 1000;
    while (Date.now() < end) {
      for (let i = 0; i < 1024; i++) nc.publish(subject, body, { headers: h });
      sent += 1024;
      await nc.flush();
    }
    const ceilS = Number(process.hrtime.bigint() - t2) / 1e9;
    log({ phase: 'client', sent, seconds: ceilS, bytes: body.length });

    const events_per_s = Math.round(published / pubS);
    const client_ceiling_per_s = Math.round(sent / ceilS);
    console.log(
      JSON.stringify({
        bench: 'flows',
        events_per_s,
        drain_per_s: Math.round(drainCount / drainS),
        client_ceiling_per_s,
        publish_ratio: Number((events_per_s / client_ceiling_per_s).toFixed(3)),
        lost,
      }),
    );
  } finally {
    await stopFlood();
    await nc.close();
    await bus.close();
    dp.close();
    rmSync(pinDir, { recursive: true, force: true });
    await nats.stop();
  }
}

await main();
