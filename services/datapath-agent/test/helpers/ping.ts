// Run inside a pod netns: ping.ts DST COUNT TIMEOUT_MS [INTERVAL_MS]
// prints a line `reply <seq>` per reply as it comes, then {"sent":n,"received":m}, and exits 0 when every request got its matching reply, 2 when the
// raw socket could not be opened.
import { ping } from '@dyad/testbed';

const [dst = '', countText = '1', timeoutText = '1500', intervalText = '0'] = process.argv.slice(2);
try {
  const r = await ping(dst, {
    count: Number(countText),
    timeoutMs: Number(timeoutText),
    intervalMs: Number(intervalText),
    onReply: (seq) => process.stdout.write(`reply ${seq}\n`),
  });
  process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(r.received === r.sent ? 0 : 1);
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(2);
}
