// Run inside a node netns: accepts TCP on 127.0.0.1:PORT and pipes each connection to a unix
// socket. The test process serves that unix socket and pipes it on to nats-server on the host's
// loopback, so an agent inside its node namespace reaches NATS without any route or interface
// being added to the host. Prints "ready" once listening.
import { connect, createServer } from 'node:net';

const [portText = '', unixPath = ''] = process.argv.slice(2);
const server = createServer((c) => {
  const u = connect(unixPath);
  c.pipe(u).pipe(c);
  const close = () => {
    c.destroy();
    u.destroy();
  };
  c.on('error', close);
  u.on('error', close);
  c.on('close', close);
  u.on('close', close);
});
server.listen(Number(portText), '127.0.0.1', () => process.stdout.write('ready\n'));
