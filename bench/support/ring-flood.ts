// The producer of `bench flows`: `ring-flood.ts <pinDir> <packet hex>` loads the datapath on the
// bench's pinned maps and runs dy_to_container on one packet (a datagram to a pod whose policy
// admits nothing) over and over in the kernel, so every run is a drop event in dy_events, until
// SIGTERM. A process of its own: the bench's process keeps its one core for reading. It keeps the
// ring full, not the CPU: once a burst finds the ring full (the datapath counts EVENT_LOST), it
// waits 5 ms before the next. The ring holds ~3,600 events and a reader takes at most ~500 in that
// time, so the reader always finds it nearly full, and nats-server still gets the CPU it needs.
import { setTimeout as sleep } from 'node:timers/promises';
import { Libbpf, Reason, loadDatapath } from '@dyad/libbpf-ts';

const [pinDir = '', hex = ''] = process.argv.slice(2);
const lib = Libbpf.open();
const dp = loadDatapath(lib, { pinDir });
const packet = Buffer.from(hex, 'hex');
const ringLost = (): number => {
  let n = 0;
  for (const [k, vs] of dp.maps.metrics.entriesPerCpu())
    if (k.reason === Reason.EVENT_LOST) for (const v of vs) n += Number(v.packets);
  return n;
};
// set by a callback: declared boolean so TypeScript does not take the loop's test for constant
let stop = false as boolean;
process.on('SIGTERM', () => (stop = true));
console.log('ready');
let lost = ringLost();
while (!stop) {
  try {
    dp.toContainer.testRun(packet, 256);
  } catch (e) {
    // SIGTERM interrupts a run in the kernel; the loop then sees stop
    if (!(e instanceof Error && 'code' in e && e.code === 'EINTR')) throw e;
  }
  const now = ringLost();
  if (now > lost) {
    lost = now;
    await sleep(5);
  } else {
    // let SIGTERM in between bursts
    await new Promise((r) => setImmediate(r));
  }
}
dp.close();
