// ICMP / ICMPv6 echo over a raw socket through libc: the machines have no ping binary and Node has
// no raw sockets. libc is bound on first use, so importing the package costs nothing for callers
// that never ping.
import koffi from 'koffi';
import { Family, parseIp } from '@dyad/netaddr';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_RAW = 3;
const IPPROTO_ICMP = 1;
const IPPROTO_ICMPV6 = 58;
const POLLIN = 1;
const MSG_DONTWAIT = 0x40;

type Libc = {
  socket(d: number, t: number, p: number): number;
  sendto(
    fd: number,
    buf: Buffer,
    len: number,
    flags: number,
    addr: Buffer,
    addrlen: number,
  ): number;
  recv(fd: number, buf: Buffer, len: number, flags: number): number;
  poll(fds: Buffer, n: number, timeout: number): number;
  close(fd: number): number;
};

let bound: Libc | undefined;
function libc(): Libc {
  if (bound) return bound;
  const lib = koffi.load('libc.so.6');
  bound = {
    socket: lib.func('int socket(int domain, int type, int protocol)') as Libc['socket'],
    sendto: lib.func(
      'long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)',
    ) as Libc['sendto'],
    recv: lib.func('long recv(int fd, _Out_ void *buf, size_t len, int flags)') as Libc['recv'],
    poll: lib.func('int poll(_Inout_ void *fds, unsigned long nfds, int timeout)') as Libc['poll'],
    close: lib.func('int close(int fd)') as Libc['close'],
  };
  return bound;
}

function checksum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length % 2) s += (b[b.length - 1] ?? 0) << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function sockaddr(address: string): Buffer {
  const ip = parseIp(address);
  if (ip.family === Family.IPv4) {
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    sa.set(ip.bytes.subarray(0, 4), 4);
    return sa;
  }
  const sa = Buffer.alloc(28);
  sa.writeUInt16LE(AF_INET6, 0);
  sa.set(ip.bytes, 8);
  return sa;
}

/** A raw ICMP socket towards one address. */
export type IcmpSocket = {
  fd: number;
  /** Sends echo request `seq`; false when the kernel refused it (e.g. no route). */
  send(seq: number): boolean;
  /**
   * True once the reply to `seq` arrived, false after `timeoutMs` without it. Blocks the thread
   * while waiting: callers that share the event loop pass 0 and poll.
   */
  recv(seq: number, timeoutMs: number): boolean;
  close(): void;
};

/** Opens a raw ICMP (v4) or ICMPv6 socket towards `address`; needs root or CAP_NET_RAW. */
export function openIcmp(address: string): Promise<IcmpSocket> {
  // a failure rejects, as the callers of this promise expect
  return new Promise((resolve) => resolve(icmpSocket(address)));
}

function icmpSocket(address: string): IcmpSocket {
  const c = libc();
  const v4 = parseIp(address).family === Family.IPv4;
  const fd = v4
    ? c.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
    : c.socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
  if (fd < 0) throw new Error(`raw socket failed: errno ${koffi.errno()}`);
  const sa = sockaddr(address);
  // The fd keeps several sockets of one process apart: the kernel hands every raw socket all echoes.
  const id = (process.pid ^ fd) & 0xffff;
  const buf = Buffer.alloc(2048);
  const pfd = Buffer.alloc(8);
  return {
    fd,
    send(seq) {
      const pkt = Buffer.alloc(16);
      pkt[0] = v4 ? 8 : 128;
      pkt.writeUInt16BE(id, 4);
      pkt.writeUInt16BE(seq & 0xffff, 6);
      pkt.write('dyadping', 8);
      if (v4) pkt.writeUInt16BE(checksum(pkt), 2); // the kernel fills the ICMPv6 checksum
      return c.sendto(fd, pkt, pkt.length, 0, sa, sa.length) >= 0;
    },
    recv(seq, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        pfd.writeInt32LE(fd, 0);
        pfd.writeInt16LE(POLLIN, 4);
        pfd.writeInt16LE(0, 6);
        if (c.poll(pfd, 1, Math.max(0, deadline - Date.now())) <= 0) return false;
        const n = c.recv(fd, buf, buf.length, MSG_DONTWAIT);
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
      c.close(fd);
    },
  };
}

export type PingOptions = {
  /** Echo requests to send; default 1. */
  count?: number;
  /** How long to wait for each reply; default 1500. */
  timeoutMs?: number;
  /** Minimum spacing between the starts of two requests; default 0. */
  intervalMs?: number;
  /** Called on each reply, so a caller can wait for traffic instead of for time. */
  onReply?: (seq: number) => void;
};

export type PingResult = { sent: number; received: number };

/**
 * Sends `count` echo requests one after another, each waiting for its reply. Waiting blocks the
 * thread, so this belongs in a process of its own (e.g. a script run inside a pod's netns).
 */
export async function ping(address: string, options: PingOptions = {}): Promise<PingResult> {
  const { count = 1, timeoutMs = 1500, intervalMs = 0 } = options;
  const sock = await openIcmp(address);
  let received = 0;
  try {
    for (let seq = 1; seq <= count; seq++) {
      const started = Date.now();
      if (sock.send(seq) && sock.recv(seq, timeoutMs)) {
        received++;
        options.onReply?.(seq);
      }
      const wait = intervalMs - (Date.now() - started);
      if (seq < count && wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  } finally {
    sock.close();
  }
  return { sent: count, received };
}
