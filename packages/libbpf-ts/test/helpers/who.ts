// Who answers a Service address. server NAME PORT...: TCP and UDP on [::] (both families) for
// each port; every TCP connection and UDP datagram gets NAME back; prints "ready".
// A request "peer" is answered with "NAME ADDR", ADDR the client's address as the server sees it.
// client tcp|udp ADDR PORT TIMEOUT_MS [COUNT] [REQUEST]: COUNT round trips (a new connection or a
// new socket each) sending REQUEST ("who" by default), prints each answer on a line; exit 0 when
// all answered, 3 on ECONNREFUSED (the datapath's refusal), 1 otherwise.
// hold ADDR PORT: one TCP connection; prints the answer to every line read on stdin.
import { createServer, connect, isIPv6 } from 'node:net';
import type { Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';

const [mode, ...rest] = process.argv.slice(2);

function once(
  proto: string,
  addr: string,
  port: number,
  timeoutMs: number,
  request: string,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timeout')), timeoutMs);
    const done = (err: Error | undefined, v?: string) => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(v ?? '');
    };
    if (proto === 'tcp') {
      const s = connect({ host: addr, port }, () => s.write(request));
      s.on('data', (d) => {
        s.destroy();
        done(undefined, d.toString());
      });
      s.on('error', (e) => done(e));
    } else {
      const u = createSocket(isIPv6(addr) ? 'udp6' : 'udp4');
      u.on('message', (m) => {
        u.close();
        done(undefined, m.toString());
      });
      u.on('error', (e) => {
        u.close();
        done(e);
      });
      // connected, so an ICMP port unreachable surfaces as ECONNREFUSED
      u.connect(port, addr, () => u.send(request));
    }
  });
}

if (mode === 'server') {
  const [name = 'anon', ...ports] = rest;
  let pending = ports.length * 2;
  const ready = () => {
    if (--pending === 0) process.stdout.write('ready\n');
  };
  for (const p of ports) {
    const port = Number(p);
    const answer = (req: Buffer, peer: string | undefined) =>
      req.toString() === 'peer' ? `${name} ${(peer ?? '').replace(/^::ffff:/, '')}` : name;
    createServer((s: Socket) => s.on('data', (d) => s.write(answer(d, s.remoteAddress)))).listen(
      { port, host: '::', ipv6Only: false },
      ready,
    );
    const u = createSocket({ type: 'udp6', ipv6Only: false });
    u.on('message', (m, rinfo) => u.send(answer(m, rinfo.address), rinfo.port, rinfo.address));
    u.bind(port, '::', ready);
  }
} else if (mode === 'client') {
  const [proto = 'tcp', addr = '', port, timeout, count, request = 'who'] = rest;
  const n = Number(count ?? 1);
  try {
    for (let i = 0; i < n; i++) {
      process.stdout.write(
        `${await once(proto, addr, Number(port), Number(timeout ?? 1500), request)}\n`,
      );
    }
    process.exit(0);
  } catch (e) {
    process.stderr.write(`${String(e)}\n`);
    process.exit((e as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? 3 : 1);
  }
} else if (mode === 'hold') {
  const [addr = '', port] = rest;
  const s = connect({ host: addr, port: Number(port) });
  s.on('data', (d) => process.stdout.write(`${d.toString()}\n`));
  s.on('error', (e) => {
    process.stderr.write(`${String(e)}\n`);
    process.exit(1);
  });
  s.on('close', () => process.exit(1));
  createInterface({ input: process.stdin }).on('line', () => s.write('who'));
} else {
  process.stderr.write(
    'usage: who.ts server NAME PORT... | client tcp|udp ADDR PORT TIMEOUT [N] | hold ADDR PORT\n',
  );
  process.exit(2);
}
