// The producer of `bench flows`: `ring-flood.ts <pinDir> <packet hex>` loads the datapath on the
// bench's pinned maps and runs dy_to_container on one packet (a datagram to a pod whose policy
// admits nothing) over and over in the kernel, so every run is a drop event in dy_events, until
// SIGTERM. A process of its own: the bench's process keeps its one core for reading.
import { Libbpf, loadDatapath } from '@dyad/libbpf-ts';

const [pinDir = '', hex = ''] = process.argv.slice(2);
const lib = Libbpf.open();
const dp = loadDatapath(lib, { pinDir });
const packet = Buffer.from(hex, 'hex');
// set by a callback: declared boolean so TypeScript does not take the loop's test for constant
let stop = false as boolean;
process.on('SIGTERM', () => (stop = true));
console.log('ready');
while (!stop) {
  try {
    dp.toContainer.testRun(packet, 256);
  } catch (e) {
    // SIGTERM interrupts a run in the kernel; the loop then sees stop
    if (!(e instanceof Error && 'code' in e && e.code === 'EINTR')) throw e;
  }
  // let SIGTERM in between bursts
  await new Promise((r) => setImmediate(r));
}
dp.close();
