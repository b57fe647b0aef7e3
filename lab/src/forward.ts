// `forward.ts HOST:PORT UNIX_PATH`: listens on TCP HOST:PORT in the netns it runs in and relays
// each connection to a unix socket. A node netns has no route to the machine's loopback, but the
// filesystem is shared: this is how agents inside node netns reach NATS (and nothing else does).
import { connect, createServer } from 'node:net';

const [listen = '', target = ''] = process.argv.slice(2);
const colon = listen.lastIndexOf(':');
const host = listen.slice(0, colon);
const port = Number(listen.slice(colon + 1));
if (host === '' || !Number.isInteger(port) || target === '') {
  process.stderr.write('usage: forward.ts HOST:PORT UNIX_PATH\n');
  process.exit(2);
}
const server = createServer((client) => {
  const upstream = connect(target);
  client.pipe(upstream).pipe(client);
  const close = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', close);
  upstream.on('close', close);
});
server.listen(port, host, () => process.stdout.write(`forwarding ${listen} -> ${target}\n`));
