// Run inside a pod netns: ping.ts DST COUNT TIMEOUT_MS; exit 0 when every request got its matching
// reply, 2 when the raw socket could not be opened.
import { ping } from '@dyad/testbed';

const [dst = '', countText = '1', timeoutText = '1500'] = process.argv.slice(2);
try {
  const r = await ping(dst, { count: Number(countText), timeoutMs: Number(timeoutText) });
  process.exit(r.received === r.sent ? 0 : 1);
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(2);
}
