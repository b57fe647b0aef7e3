// ICMP / ICMPv6 echo over a raw socket through libc (the lab machine has no ping binary, and
// Node has no raw sockets). Loaded only when a pod is asked for an ICMP probe.
import koffi from 'koffi';
import { isIPv4 } from 'node:net';

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
const close = libc.func('int close(int fd)') as (fd: number) => number;

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_RAW = 3;
const MSG_DONTWAIT = 0x40;

function checksum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length % 2) s += (b[b.length - 1] ?? 0) << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function sockaddr(address: string): Buffer {
  if (isIPv4(address)) {
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    address.split('.').forEach((o, i) => sa.writeUInt8(Number(o), 4 + i));
    return sa;
  }
  const sa = Buffer.alloc(28);
  sa.writeUInt16LE(AF_INET6, 0);
  const [head = '', tail] = address.split('::') as [string, string | undefined];
  const hi = head === '' ? [] : head.split(':');
  const lo = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...hi, ...new Array<string>(8 - hi.length - lo.length).fill('0'), ...lo];
  groups.forEach((g, i) => sa.writeUInt16BE(parseInt(g, 16), 8 + 2 * i));
  return sa;
}

/** A raw ICMP socket towards one address: send(seq) an echo request, recv(seq) its reply. */
export async function openIcmp(address: string): Promise<{
  fd: number;
  send(seq: number): boolean;
  recv(seq: number, timeoutMs: number): boolean;
  close(): void;
}> {
  const v4 = isIPv4(address);
  const fd = v4 ? socket(AF_INET, SOCK_RAW, 1) : socket(AF_INET6, SOCK_RAW, 58);
  if (fd < 0) throw new Error(`raw socket failed: errno ${koffi.errno()}`);
  const sa = sockaddr(address);
  const id = (process.pid ^ fd) & 0xffff;
  const buf = Buffer.alloc(2048);
  return {
    fd,
    send(seq) {
      const pkt = Buffer.alloc(16);
      pkt[0] = v4 ? 8 : 128;
      pkt.writeUInt16BE(id, 4);
      pkt.writeUInt16BE(seq & 0xffff, 6);
      pkt.write('dyadping', 8);
      if (v4) pkt.writeUInt16BE(checksum(pkt), 2); // the kernel fills the ICMPv6 checksum
      return sendto(fd, pkt, pkt.length, 0, sa, sa.length) >= 0;
    },
    recv(seq) {
      for (;;) {
        const n = recv(fd, buf, buf.length, MSG_DONTWAIT);
        if (n <= 0) return false;
        const off = v4 ? ((buf[0] ?? 0) & 0xf) * 4 : 0; // raw IPv4 sockets include the IP header
        if (
          buf[off] === (v4 ? 0 : 129) &&
          buf.readUInt16BE(off + 4) === id &&
          buf.readUInt16BE(off + 6) === (seq & 0xffff)
        ) {
          return true;
        }
      }
    },
    close() {
      close(fd);
    },
  };
}
