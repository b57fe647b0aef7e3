// Run inside a node's network namespace: one TCP or UDP round trip from the node's own stack
// (a client beyond the node it reaches) to an echo server at `address`:`port`. Prints one JSON
// line {"result": "connected" | "refused" | "timeout" | "error"}; UDP is connected, so an ICMP
// port unreachable shows as "refused".
import { connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';

const [proto = 'TCP', address = '', port = '0', timeout = '1500'] = process.argv.slice(2);
type Result = 'connected' | 'refused' | 'timeout' | 'error';

function once(): Promise<Result> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish('timeout'), Number(timeout));
    let close = () => {};
    const finish = (r: Result) => {
      clearTimeout(timer);
      close();
      resolve(r);
    };
    const failed = (e: NodeJS.ErrnoException) =>
      finish(e.code === 'ECONNREFUSED' ? 'refused' : 'error');
    if (proto === 'TCP') {
      const s = connect({ host: address, port: Number(port) }, () => s.write('nodeport'));
      close = () => s.destroy();
      s.on('data', () => finish('connected'));
      s.on('error', failed);
    } else {
      const u = createSocket(isIPv6(address) ? 'udp6' : 'udp4');
      close = () => u.close();
      u.on('message', () => finish('connected'));
      u.on('error', failed);
      u.connect(Number(port), address, () => u.send('nodeport'));
    }
  });
}

process.stdout.write(`${JSON.stringify({ result: await once() })}\n`);
