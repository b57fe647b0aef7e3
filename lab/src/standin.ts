// A lab pod's stand-in process, run inside the pod's netns by its node's pod runtime:
//   standin.ts CONTROL_SOCKET PORTS_JSON      (started in the netns, e.g. by nsenter --net)
//   standin.ts --pool                         (started ahead of need; its first stdin line
//                                              {"netns","control","ports"} moves it into the
//                                              pod's netns with setns(2), see netns-enter.ts)
// Answers TCP and UDP (echo) on every port it is given, on all addresses of both families, and
// serves probe requests from the lab CLI on a unix socket (JSON lines), so a probe is made from
// this pod's netns without starting a process per probe.
import { createSocket } from 'node:dgram';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { probeOnce } from './probe-once.ts';
import type { ProbeProtocol } from './probe-once.ts';

async function assignment(): Promise<[string, string]> {
  if (process.argv[2] !== '--pool') return [process.argv[2] ?? '', process.argv[3] ?? '[]'];
  const { enterNetns } = await import('./netns-enter.ts');
  const line = await new Promise<string>((resolve) => {
    let buffered = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (c: string) => {
      buffered += c;
      const nl = buffered.indexOf('\n');
      if (nl >= 0) resolve(buffered.slice(0, nl));
    });
    // An idle stand-in whose runtime went away has nothing to do.
    process.stdin.on('end', () => process.exit(0));
  });
  process.stdin.removeAllListeners('end');
  process.stdin.on('end', () => undefined);
  const a = JSON.parse(line) as { netns: string; control: string; ports: unknown };
  enterNetns(a.netns);
  return [a.control, JSON.stringify(a.ports)];
}

const [control, portsJson] = await assignment();
// No zod here: it would add ~100 ms to every pod's start, and the input is two small shapes.
const isPort = (v: unknown): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65535;
const ports: unknown = JSON.parse(portsJson);
if (!Array.isArray(ports) || !ports.every((p) => isPort(p) && p > 0)) {
  process.stderr.write(`bad ports ${portsJson}\n`);
  process.exit(2);
}

interface Request {
  id: number | string;
  op: 'hello' | 'probe';
  address?: string;
  port?: number;
  protocol?: ProbeProtocol;
  timeoutMs?: number;
}

function parseRequest(line: string): Request {
  const v: unknown = JSON.parse(line);
  if (typeof v !== 'object' || v === null) throw new Error('a request is a JSON object');
  const r = v as Record<string, unknown>;
  const id = r.id;
  if (typeof id !== 'number' && typeof id !== 'string')
    throw new Error('id must be a number or string');
  if (r.op !== 'hello' && r.op !== 'probe') throw new Error('op must be hello or probe');
  const out: Request = { id, op: r.op };
  if (r.address !== undefined) {
    if (typeof r.address !== 'string') throw new Error('address must be a string');
    out.address = r.address;
  }
  if (r.port !== undefined) {
    if (!isPort(r.port)) throw new Error('port must be 0..65535');
    out.port = r.port;
  }
  if (r.protocol !== undefined) {
    if (r.protocol !== 'TCP' && r.protocol !== 'UDP' && r.protocol !== 'ICMP') {
      throw new Error('protocol must be TCP, UDP or ICMP');
    }
    out.protocol = r.protocol;
  }
  if (r.timeoutMs !== undefined) {
    const t = r.timeoutMs;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > 600_000) {
      throw new Error('timeoutMs must be 1..600000');
    }
    out.timeoutMs = t;
  }
  return out;
}

function listen(): Promise<void>[] {
  const ready: Promise<void>[] = [];
  for (const port of new Set(ports as number[])) {
    const tcp = createServer((s) => {
      s.on('error', () => s.destroy());
      s.pipe(s);
    });
    ready.push(new Promise((r) => tcp.listen({ port, host: '::', ipv6Only: false }, r)));
    const udp = createSocket({ type: 'udp6', ipv6Only: false });
    udp.on('message', (msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address));
    udp.on('error', (e) => process.stderr.write(`udp ${port}: ${e.message}\n`));
    ready.push(new Promise((r) => udp.bind(port, '::', r)));
  }
  return ready;
}

function serveControl(sock: Socket): void {
  let buffered = '';
  sock.setEncoding('utf8');
  sock.on('error', () => sock.destroy());
  sock.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim() !== '') void answer(sock, line);
    }
  });
}

async function answer(sock: Socket, line: string): Promise<void> {
  let id: string | number = 0;
  try {
    const req = parseRequest(line);
    id = req.id;
    if (req.op === 'hello') {
      reply(sock, { id, ok: true, pid: process.pid, ports });
      return;
    }
    if (req.address === undefined || req.protocol === undefined) {
      throw new Error('a probe needs address and protocol');
    }
    const out = await probeOnce(req.protocol, req.address, req.port ?? 0, req.timeoutMs ?? 1000);
    reply(sock, { id, ...out });
  } catch (err) {
    reply(sock, { id, result: 'error', reason: err instanceof Error ? err.message : String(err) });
  }
}

function reply(sock: Socket, v: unknown): void {
  if (!sock.destroyed) sock.write(JSON.stringify(v) + '\n');
}

await Promise.all(listen());
rmSync(control, { force: true });
const server = createServer(serveControl);
await new Promise<void>((r) => server.listen(control, r));
process.stdout.write(`ready ${process.pid} ports ${(ports as number[]).join(',') || '-'}\n`);
for (const s of ['SIGTERM', 'SIGINT'] as const) {
  process.on(s, () => {
    server.close();
    rmSync(control, { force: true });
    process.exit(0);
  });
}
