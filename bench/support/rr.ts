// Request/response over one TCP connection, as fast as it goes: `rr.ts ADDR PORT MS` connects,
// then for MS milliseconds sends one 64-byte request and waits for its echo, and prints the
// number of round trips completed. Run inside a pod's netns; the server is an echo server.
import { connect } from 'node:net';

const [addr = '', portText = '0', msText = '2000'] = process.argv.slice(2);
const REQ = Buffer.alloc(64, 0x61);
const s = connect({ host: addr, port: Number(portText) }, () => {
  s.setNoDelay(true);
  const until = performance.now() + Number(msText);
  let n = 0;
  let got = 0;
  s.on('data', (d) => {
    got += d.length;
    if (got < REQ.length) return;
    got -= REQ.length;
    n++;
    if (performance.now() < until) s.write(REQ);
    else {
      process.stdout.write(`${n}\n`);
      s.destroy();
    }
  });
  s.write(REQ);
});
s.on('error', (e) => {
  process.stderr.write(`${e.message}\n`);
  process.exit(1);
});
