// A bounded UDP flood: `flood.ts <dst> <port> <count>` sends exactly <count> small datagrams as
// fast as the socket takes them, then prints {"sent": n}. Run inside a pod netns (nsenter).
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';

const [dst = '', portText = '', countText = ''] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const sock = createSocket(isIPv6(dst) ? 'udp6' : 'udp4');
const payload = Buffer.alloc(16, 0x61);
let sent = 0;
let failed = 0;

async function main(): Promise<void> {
  while (sent + failed < count) {
    const batch = Math.min(256, count - sent - failed);
    await Promise.all(
      Array.from(
        { length: batch },
        () =>
          new Promise<void>((resolve) => {
            sock.send(payload, port, dst, (err) => {
              if (err) failed++;
              else sent++;
              resolve();
            });
          }),
      ),
    );
  }
  sock.close();
  console.log(JSON.stringify({ sent, failed }));
}

main().catch((e: unknown) => {
  console.error(String(e));
  process.exit(1);
});
