// ICMP / ICMPv6 echo over a raw socket (the image has no ping binary). Run inside a pod netns:
//   ping.ts DST COUNT TIMEOUT_MS [INTERVAL_MS]
// prints {"sent":n,"received":m} and exits 0 when every request got its matching reply.
import koffi from 'koffi';
import { isIPv4 } from 'node:net';
import { parseIp } from '@dyad/libbpf-ts';

const [dst = '', countText = '1', timeoutText = '1500', intervalText = '0'] = process.argv.slice(2);
const libc = koffi.load('libc.so.6');
const socket = libc.func('int socket(int domain, int type, int protocol)') as (
  d: number,
  t: number,
  p: number,
) => number;
const sendto = libc.func(
  'long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)',
) as (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number) => number;
const recv = libc.func('long recv(int fd, _Out_ void *buf, size_t len, int flags)') as (
  fd: number,
  buf: Buffer,
  len: number,
  flags: number,
) => number;
const poll = libc.func('int poll(_Inout_ void *fds, unsigned long nfds, int timeout)') as (
  fds: Buffer,
  n: number,
  t: number,
) => number;

const v4 = isIPv4(dst);
const fd = v4 ? socket(2, 3, 1) : socket(10, 3, 58);
if (fd < 0) {
  process.stderr.write(`socket failed: errno ${koffi.errno()}\n`);
  process.exit(2);
}
const ip = parseIp(dst);
const sa = Buffer.alloc(v4 ? 16 : 28);
sa.writeUInt16LE(v4 ? 2 : 10, 0);
if (v4) sa.set(ip.bytes.subarray(0, 4), 4);
else sa.set(ip.bytes, 8);

function csum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length % 2) s += (b[b.length - 1] ?? 0) << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const id = process.pid & 0xffff;
const count = Number(countText);
const interval = Number(intervalText);
let ok = 0;
for (let seq = 1; seq <= count; seq++) {
  const started = Date.now();
  const pkt = Buffer.alloc(16);
  pkt[0] = v4 ? 8 : 128;
  pkt.writeUInt16BE(id, 4);
  pkt.writeUInt16BE(seq, 6);
  pkt.write('dyadping', 8);
  if (v4) pkt.writeUInt16BE(csum(pkt), 2); // the kernel fills the ICMPv6 checksum itself
  if (sendto(fd, pkt, pkt.length, 0, sa, sa.length) >= 0) {
    const deadline = Date.now() + Number(timeoutText);
    const buf = Buffer.alloc(2048);
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const pfd = Buffer.alloc(8);
      pfd.writeInt32LE(fd, 0);
      pfd.writeInt16LE(1, 4);
      if (poll(pfd, 1, left) <= 0) break;
      const n = recv(fd, buf, buf.length, 0);
      if (n <= 0) break;
      const off = v4 ? ((buf[0] ?? 0) & 0xf) * 4 : 0; // raw IPv4 sockets include the IP header
      if (
        buf[off] === (v4 ? 0 : 129) &&
        buf.readUInt16BE(off + 4) === id &&
        buf.readUInt16BE(off + 6) === seq
      ) {
        ok++;
        break;
      }
    }
  }
  const wait = interval - (Date.now() - started);
  if (seq < count && wait > 0) await sleep(wait);
}
process.stdout.write(`${JSON.stringify({ sent: count, received: ok })}\n`);
process.exit(ok === count ? 0 : 1);
