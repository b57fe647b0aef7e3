// `dial.ts UNIX_PATH HOST:PORT`: the reverse of forward.ts. Serves a unix socket and relays each
// connection to TCP HOST:PORT from the netns it runs in. Kubelet mode: the machine's side (the
// supervisor, tests, the CLI) reaches the chart's NATS, which listens on node addresses inside
// the node netns, through it.
import { unixToTcpRelay } from './relay.ts';

const [path = '', target = ''] = process.argv.slice(2);
const colon = target.lastIndexOf(':');
const host = target.slice(0, colon).replace(/^\[|\]$/g, '');
const port = Number(target.slice(colon + 1));
if (path === '' || host === '' || !Number.isInteger(port)) {
  process.stderr.write('usage: dial.ts UNIX_PATH HOST:PORT\n');
  process.exit(2);
}
await unixToTcpRelay(path, host, port);
process.stdout.write(`relaying ${path} -> ${target}\n`);
