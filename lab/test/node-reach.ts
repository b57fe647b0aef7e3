// Run inside a node's network namespace: does the node's own stack (not a pod) reach `address`?
// Prints one JSON line: {"tcp": bool, "icmp": bool}. A kubelet probe or a host-network pod
// reaches pods on other nodes exactly this way.
import { connect } from 'node:net';
import { ping } from '@dyad/testbed';

const [address = '', port = '0'] = process.argv.slice(2);

function tcp(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: address, port: Number(port), timeout: 2000 });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(false));
  });
}

const icmp = (await ping(address, { count: 3, timeoutMs: 1000 })).received > 0;
process.stdout.write(`${JSON.stringify({ tcp: await tcp(), icmp })}\n`);
