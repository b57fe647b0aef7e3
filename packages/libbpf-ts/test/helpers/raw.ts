// Raw Ethernet frames through an AF_PACKET socket, run inside a netns (Node has no raw sockets;
// libc is called through koffi as in @dyad/testbed's ping).
//   raw.ts send IFNAME          frames as hex, one per line on stdin; exit 0 when all were sent
//                               (or dropped by tc on the way out)
//   raw.ts capture IFNAME MARKER_HEX WINDOW_MS STOP_AFTER
//                               prints "ready", then counts frames arriving on IFNAME (not ones
//                               it sends) that contain MARKER; exits printing the count after
//                               WINDOW_MS, when its stdin closes, or as soon as STOP_AFTER of
//                               them arrived
import { readFileSync } from 'node:fs';
import koffi from 'koffi';

const AF_PACKET = 17;
const SOCK_RAW = 3;
const ETH_P_ALL_BE = 0x0300; // htons(ETH_P_ALL)
const PACKET_OUTGOING = 4;
const POLLIN = 1;
const MSG_DONTWAIT = 0x40;
const ENOBUFS = 105;

const lib = koffi.load('libc.so.6');
const socket = lib.func('int socket(int domain, int type, int protocol)') as (
  d: number,
  t: number,
  p: number,
) => number;
const bind = lib.func('int bind(int fd, const void *addr, uint32_t len)') as (
  fd: number,
  a: Buffer,
  l: number,
) => number;
const sendto = lib.func(
  'long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t alen)',
) as (fd: number, b: Buffer, l: number, f: number, a: Buffer, al: number) => number;
const recvfrom = lib.func(
  'long recvfrom(int fd, _Out_ void *buf, size_t len, int flags, _Out_ void *addr, _Inout_ uint32_t *alen)',
) as (fd: number, b: Buffer, l: number, f: number, a: Buffer, al: number[]) => number;
const poll = lib.func('int poll(_Inout_ void *fds, unsigned long nfds, int timeout)') as (
  fds: Buffer,
  n: number,
  t: number,
) => number;
const ifNameToIndex = lib.func('uint32_t if_nametoindex(const char *name)') as (
  n: string,
) => number;

function fail(what: string): never {
  process.stderr.write(`${what}: errno ${koffi.errno()}\n`);
  process.exit(2);
}

/** struct sockaddr_ll bound to one device, all protocols. */
function sockaddrLl(ifindex: number): Buffer {
  const sa = Buffer.alloc(20);
  sa.writeUInt16LE(AF_PACKET, 0);
  sa.writeUInt16LE(ETH_P_ALL_BE, 2);
  sa.writeInt32LE(ifindex, 4);
  sa[11] = 6;
  return sa;
}

const [mode, ifname = '', markerHex = '', windowText = '1000', stopText = '1'] =
  process.argv.slice(2);
const ifindex = ifNameToIndex(ifname);
if (ifindex === 0) fail(`no device ${ifname}`);
const fd = socket(AF_PACKET, SOCK_RAW, ETH_P_ALL_BE);
if (fd < 0) fail('socket');
const sa = sockaddrLl(ifindex);
if (bind(fd, sa, sa.length) < 0) fail('bind');

if (mode === 'send') {
  const frames = readFileSync(0, 'utf8').split('\n').filter(Boolean);
  for (const hex of frames) {
    const f = Buffer.from(hex, 'hex');
    // ENOBUFS: a tc program on the device's egress dropped it, which is a test's business
    if (sendto(fd, f, f.length, 0, sa, sa.length) !== f.length && koffi.errno() !== ENOBUFS)
      fail('sendto');
  }
  process.exit(0);
} else if (mode === 'capture') {
  const marker = Buffer.from(markerHex, 'hex');
  const stopAfter = Number(stopText);
  const deadline = Date.now() + Number(windowText);
  const buf = Buffer.alloc(65536);
  const from = Buffer.alloc(20);
  // two pollfds: the socket, and stdin (closed by the parent to end the capture)
  const pfd = Buffer.alloc(16);
  let count = 0;
  process.stdout.write('ready\n');
  while (count < stopAfter) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    pfd.writeInt32LE(fd, 0);
    pfd.writeInt16LE(POLLIN, 4);
    pfd.writeInt16LE(0, 6);
    pfd.writeInt32LE(0, 8);
    pfd.writeInt16LE(POLLIN, 12);
    pfd.writeInt16LE(0, 14);
    if (poll(pfd, 2, left) <= 0) continue;
    if (pfd.readInt16LE(14) !== 0) {
      // stdin readable or hung up: the parent is done sending; count what is queued, then stop
      for (;;) {
        const n = recvfrom(fd, buf, buf.length, MSG_DONTWAIT, from, [from.length]);
        if (n <= 0) break;
        if (from[10] !== PACKET_OUTGOING && buf.subarray(0, n).includes(marker)) count++;
      }
      break;
    }
    const n = recvfrom(fd, buf, buf.length, MSG_DONTWAIT, from, [from.length]);
    if (n <= 0) continue;
    if (from[10] === PACKET_OUTGOING) continue;
    if (buf.subarray(0, n).includes(marker)) count++;
  }
  process.stdout.write(`${count}\n`);
  process.exit(0);
} else {
  process.stderr.write('usage: raw.ts send IFNAME | capture IFNAME MARKER WINDOW_MS STOP_AFTER\n');
  process.exit(2);
}
