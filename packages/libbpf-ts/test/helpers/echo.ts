// Echo server / client for lab pods. server PORT...: TCP and UDP on [::] (dual-stack) for each
// port, prints "ready". client tcp|udp ADDR PORT TIMEOUT_MS [SIZE]: one round trip, exit 0 on a
// match (SIZE: a payload of that many bytes, e.g. more than the MTU so UDP goes in fragments);
// client udp-refused ...: exit 0 when the port-unreachable error comes back.
import { createServer, connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';

const [mode, ...rest] = process.argv.slice(2);
const PAYLOAD = 'dyad-echo';

if (mode === 'server') {
  let pending = rest.length * 2;
  const ready = () => {
    if (--pending === 0) process.stdout.write('ready\n');
  };
  for (const p of rest) {
    const port = Number(p);
    createServer((s) => s.pipe(s)).listen({ port, host: '::', ipv6Only: false }, ready);
    const u = createSocket({ type: 'udp6', ipv6Only: false });
    u.on('message', (msg, rinfo) => u.send(msg, rinfo.port, rinfo.address));
    u.bind(port, '::', ready);
  }
} else if (mode === 'client') {
  const [proto, addr = '', portText, timeoutText, sizeText] = rest;
  const port = Number(portText);
  const payload =
    sizeText === undefined
      ? Buffer.from(PAYLOAD)
      : Buffer.from(Array.from({ length: Number(sizeText) }, (_, i) => 97 + (i % 26)));
  const timer = setTimeout(() => process.exit(1), Number(timeoutText ?? 1500));
  const done = (ok: boolean) => {
    clearTimeout(timer);
    process.exit(ok ? 0 : 1);
  };
  if (proto === 'tcp') {
    const s = connect({ host: addr, port }, () => s.write(PAYLOAD));
    let got = '';
    s.on('data', (d) => {
      got += d.toString();
      if (got === PAYLOAD) done(true);
    });
    s.on('error', () => done(false));
  } else if (proto === 'udp-refused') {
    // A connected UDP socket surfaces the ICMP port-unreachable as ECONNREFUSED.
    const u = createSocket(isIPv6(addr) ? 'udp6' : 'udp4');
    u.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED'));
    u.on('message', () => done(false));
    u.connect(port, addr, () => {
      u.send(PAYLOAD);
      setTimeout(() => u.send(PAYLOAD), 200);
    });
  } else {
    const u = createSocket(isIPv6(addr) ? 'udp6' : 'udp4');
    u.on('message', (m) => done(m.equals(payload)));
    u.on('error', () => done(false));
    u.send(payload, port, addr);
  }
} else {
  process.stderr.write('usage: echo.ts server PORT... | client tcp|udp ADDR PORT TIMEOUT_MS\n');
  process.exit(2);
}
