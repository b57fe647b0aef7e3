// A lab pod's stand-in process, run inside the pod's netns by its node's pod runtime:
//   standin.ts CONTROL_SOCKET PORTS_JSON
// Answers TCP and UDP (echo) on every port it is given, on all addresses of both families, and
// serves probe requests from the lab CLI on a unix socket (JSON lines), so a probe is made from
// this pod's netns without starting a process per probe.
import { createSocket } from 'node:dgram';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { z } from 'zod';
import { probeOnce } from './probe-once.ts';

const [control = '', portsJson = '[]'] = process.argv.slice(2);
const ports = z.array(z.number().int().min(1).max(65535)).parse(JSON.parse(portsJson));

const Request = z.object({
  id: z.union([z.number(), z.string()]),
  op: z.enum(['hello', 'probe']),
  address: z.string().optional(),
  port: z.number().int().min(0).max(65535).optional(),
  protocol: z.enum(['TCP', 'UDP', 'ICMP']).optional(),
  timeoutMs: z.number().int().min(1).max(600_000).optional(),
});

function listen(): Promise<void>[] {
  const ready: Promise<void>[] = [];
  for (const port of new Set(ports)) {
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
    const req = Request.parse(JSON.parse(line));
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
process.stdout.write(`ready ${process.pid} ports ${ports.join(',') || '-'}\n`);
for (const s of ['SIGTERM', 'SIGINT'] as const) {
  process.on(s, () => {
    server.close();
    rmSync(control, { force: true });
    process.exit(0);
  });
}
