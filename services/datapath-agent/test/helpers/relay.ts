// A byte pipe between TCP and a unix socket, so an agent inside its node namespace reaches
// nats-server on the host's loopback without any route or interface added to the host:
//   relay.ts tcp-to-unix PORT PATH   (inside the node netns: 127.0.0.1:PORT -> PATH)
//   relay.ts unix-to-tcp PATH PORT   (in the host netns: PATH -> 127.0.0.1:PORT)
// Prints "ready" once listening. A process of its own, so whoever started it may block.
import { connect, createServer } from 'node:net';
import type { Socket } from 'node:net';

const [mode = '', a = '', b = ''] = process.argv.slice(2);

function pipe(c: Socket, u: Socket): void {
  c.pipe(u).pipe(c);
  const close = () => {
    c.destroy();
    u.destroy();
  };
  for (const s of [c, u]) {
    s.on('error', close);
    s.on('close', close);
  }
}

const server =
  mode === 'tcp-to-unix'
    ? createServer((c) => pipe(c, connect(b)))
    : createServer((c) => pipe(c, connect(Number(b), '127.0.0.1')));
const ready = () => process.stdout.write('ready\n');
if (mode === 'tcp-to-unix') server.listen(Number(a), '127.0.0.1', ready);
else server.listen(a, ready);
