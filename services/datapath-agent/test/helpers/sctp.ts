// SCTP packets over raw IP sockets, run inside a pod netns:
//   sctp.ts send ADDR SPORT DPORT NONCE   one packet: SCTP common header + a 4-byte nonce
//   sctp.ts recv 4|6 TIMEOUT_MS NONCE     prints "ready"; exits 0 printing the destination port
//                                         once a packet with NONCE arrives, 1 after TIMEOUT_MS
// The test kernels have no SCTP module (no SCTP sockets), and the datapath judges only the
// common header's ports, so a crafted packet is exactly what policy sees. Raw sockets receive
// every packet of their protocol whether or not the kernel handles that protocol.
import koffi from 'koffi';
import { Family, parseIp } from '@dyad/netaddr';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_RAW = 3;
const IPPROTO_SCTP = 132;
const POLLIN = 1;

const lib = koffi.load('libc.so.6');
const socket = lib.func('int socket(int domain, int type, int protocol)') as (
  d: number,
  t: number,
  p: number,
) => number;
const sendto = lib.func(
  'long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)',
) as (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number) => number;
const recv = lib.func('long recv(int fd, _Out_ void *buf, size_t len, int flags)') as (
  fd: number,
  buf: Buffer,
  len: number,
  flags: number,
) => number;
const poll = lib.func('int poll(_Inout_ void *fds, unsigned long nfds, int timeout)') as (
  fds: Buffer,
  n: number,
  timeout: number,
) => number;

function open(family: Family): number {
  const fd = socket(family === Family.IPv4 ? AF_INET : AF_INET6, SOCK_RAW, IPPROTO_SCTP);
  if (fd < 0) {
    process.stderr.write('raw SCTP socket refused\n');
    process.exit(2);
  }
  return fd;
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'send') {
  const [addr = '', sport = '0', dport = '0', nonce = '0'] = args;
  const ip = parseIp(addr);
  const pkt = Buffer.alloc(16);
  pkt.writeUInt16BE(Number(sport), 0);
  pkt.writeUInt16BE(Number(dport), 2);
  pkt.writeUInt32BE(Number(nonce), 12);
  // sockaddr_in / sockaddr_in6 with port 0: the kernel builds the IP header
  const sa = Buffer.alloc(ip.family === Family.IPv4 ? 16 : 28);
  sa.writeUInt16LE(ip.family === Family.IPv4 ? AF_INET : AF_INET6, 0);
  sa.set(
    ip.family === Family.IPv4 ? ip.bytes.subarray(0, 4) : ip.bytes,
    ip.family === Family.IPv4 ? 4 : 8,
  );
  const fd = open(ip.family);
  process.exit(sendto(fd, pkt, pkt.length, 0, sa, sa.length) === pkt.length ? 0 : 1);
} else if (mode === 'recv') {
  const family = args[0] === '4' ? Family.IPv4 : Family.IPv6;
  const deadline = Date.now() + Number(args[1] ?? '1500');
  const nonce = Number(args[2] ?? '0');
  const fd = open(family);
  process.stdout.write('ready\n');
  const buf = Buffer.alloc(2048);
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) process.exit(1);
    const fds = Buffer.alloc(8);
    fds.writeInt32LE(fd, 0);
    fds.writeInt16LE(POLLIN, 4);
    if (poll(fds, 1, left) <= 0) continue;
    const n = recv(fd, buf, buf.length, 0);
    // an IPv4 raw socket hands over the IP header too, an IPv6 one does not
    const off = family === Family.IPv4 ? ((buf[0] ?? 0) & 0x0f) * 4 : 0;
    if (n < off + 16 || buf.readUInt32BE(off + 12) !== nonce) continue;
    process.stdout.write(`${buf.readUInt16BE(off + 2)}\n`);
    process.exit(0);
  }
} else {
  process.stderr.write('usage: sctp.ts send ADDR SPORT DPORT NONCE | recv 4|6 TIMEOUT_MS NONCE\n');
  process.exit(2);
}
