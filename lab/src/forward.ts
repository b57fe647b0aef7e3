// `forward.ts HOST:PORT UNIX_PATH [HOST:PORT UNIX_PATH ...]`: listens on each TCP HOST:PORT in the
// netns it runs in and relays each connection to its unix socket. A node netns has no route to
// the machine's loopback, but the filesystem is shared: this is how agents inside node netns
// reach NATS (and nothing else does). The NATS relays listen on the servers' own port numbers,
// so the cluster addresses the servers announce to clients work inside the node too.
import { connect, createServer } from 'node:net';

const argv = process.argv.slice(2);
const pairs: Array<{ host: string; port: number; target: string }> = [];
for (let i = 0; i < argv.length; i += 2) {
  const listen = argv[i] ?? '';
  const target = argv[i + 1] ?? '';
  const colon = listen.lastIndexOf(':');
  pairs.push({ host: listen.slice(0, colon), port: Number(listen.slice(colon + 1)), target });
}
if (
  pairs.length === 0 ||
  pairs.some((p) => p.host === '' || !Number.isInteger(p.port) || p.target === '')
) {
  process.stderr.write('usage: forward.ts HOST:PORT UNIX_PATH [HOST:PORT UNIX_PATH ...]\n');
  process.exit(2);
}
for (const { host, port, target } of pairs) {
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
  server.listen(port, host, () =>
    process.stdout.write(`forwarding ${host}:${port} -> ${target}\n`),
  );
}
