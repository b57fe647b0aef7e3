import { NetlinkError } from '../errors.ts';
import type { Libc } from './libc.ts';
import {
  AF_NETLINK,
  NETLINK_EXT_ACK,
  NETLINK_GET_STRICT_CHK,
  NETLINK_ROUTE,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_NETLINK,
  SOL_SOCKET,
  SO_RCVBUF,
} from './libc.ts';
import {
  NLMSG_DONE,
  NLMSG_ERROR,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  decodeError,
  decodeMessages,
  nlmsg,
} from './message.ts';
import type { RawMessage } from './message.ts';

const RECV_BUF = 1 << 16;

/** One request of a batch: what it is (for errors) and the errnos that count as success. */
export interface NetlinkRequest {
  readonly type: number;
  readonly flags: number;
  readonly body: Buffer;
  readonly what: string;
  /** Errnos treated as success, e.g. EEXIST for an idempotent add. */
  readonly ok?: readonly number[];
}

/** The outcome of one request of a batch: 0 or a positive errno. */
export interface NetlinkOutcome {
  readonly request: NetlinkRequest;
  readonly errno: number;
  readonly message?: string;
}

export const ENOENT = 2;
export const ESRCH = 3;
export const ENODEV = 19;
export const EEXIST = 17;
export const EADDRNOTAVAIL = 99;

function errnoText(errno: number): string {
  const names: Record<number, string> = {
    1: 'EPERM',
    2: 'ENOENT',
    3: 'ESRCH',
    13: 'EACCES',
    16: 'EBUSY',
    17: 'EEXIST',
    19: 'ENODEV',
    22: 'EINVAL',
    34: 'ERANGE',
    95: 'EOPNOTSUPP',
    99: 'EADDRNOTAVAIL',
    101: 'ENETUNREACH',
  };
  return names[errno] ?? `errno ${errno}`;
}

/**
 * A blocking NETLINK_ROUTE socket in the netns it was opened in. rtnetlink handles a request
 * while it is being sent, so replies are already queued when send() returns: blocking reads
 * cost no waiting. Several requests go out in one datagram (one syscall) and are acked one by one.
 */
export class NetlinkSocket implements Disposable {
  readonly #libc: Libc;
  #fd: number;
  #seq = Math.floor(Math.random() * 0x7fffffff);
  readonly #buf = Buffer.alloc(RECV_BUF);

  private constructor(libc: Libc, fd: number) {
    this.#libc = libc;
    this.#fd = fd;
  }

  /** Opens a socket in the calling thread's current network namespace. */
  static open(libc: Libc): NetlinkSocket {
    const fd = libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) throw new NetlinkError('socket', libc.errno(), 'cannot open a netlink socket');
    const sock = new NetlinkSocket(libc, fd);
    const one = Buffer.alloc(4);
    one.writeInt32LE(1, 0);
    // best effort: the error text is a nicety, strict dumps only filter more
    libc.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
    libc.setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, one, 4);
    const rcv = Buffer.alloc(4);
    rcv.writeInt32LE(1 << 20, 0);
    libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, rcv, 4);
    const addr = Buffer.alloc(12); // sockaddr_nl: family, pad, pid 0 (kernel assigns), groups 0
    addr.writeUInt16LE(AF_NETLINK, 0);
    if (libc.bind(fd, addr, 12) < 0) {
      const e = libc.errno();
      sock.close();
      throw new NetlinkError('bind', e, 'cannot bind a netlink socket');
    }
    return sock;
  }

  #nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }

  #send(buf: Buffer, what: string): void {
    if (this.#fd < 0) throw new NetlinkError(what, 9, 'netlink socket is closed');
    const n = this.#libc.send(this.#fd, buf, buf.length, 0);
    if (n < 0) throw new NetlinkError(what, this.#libc.errno(), 'send failed');
  }

  #recv(what: string): RawMessage[] {
    const n = this.#libc.recv(this.#fd, this.#buf, this.#buf.length, 0);
    if (n < 0) throw new NetlinkError(what, this.#libc.errno(), 'recv failed');
    return decodeMessages(Buffer.from(this.#buf.subarray(0, n)));
  }

  /** Sends the requests in one datagram and collects every ack. The kernel runs each request
   *  even when an earlier one failed, so outcomes are per request. */
  batch(requests: readonly NetlinkRequest[]): NetlinkOutcome[] {
    if (requests.length === 0) return [];
    const seqs = new Map<number, number>();
    const parts = requests.map((r, i) => {
      const seq = this.#nextSeq();
      seqs.set(seq, i);
      return nlmsg(r.type, r.flags | NLM_F_REQUEST | NLM_F_ACK, seq, r.body);
    });
    this.#send(Buffer.concat(parts), requests[0]?.what ?? 'netlink');
    const out: Array<NetlinkOutcome | undefined> = requests.map(() => undefined);
    let pending = requests.length;
    while (pending > 0) {
      for (const m of this.#recv('netlink ack')) {
        const i = seqs.get(m.seq);
        if (i === undefined || m.type !== NLMSG_ERROR || out[i] !== undefined) continue;
        const req = requests[i] as NetlinkRequest;
        const e = decodeError(m);
        const errno = req.ok?.includes(e.errno) ? 0 : e.errno;
        out[i] = { request: req, errno, ...(e.message ? { message: e.message } : {}) };
        pending--;
      }
    }
    return out as NetlinkOutcome[];
  }

  /** Like batch(), but throws the first failure. */
  apply(requests: readonly NetlinkRequest[]): void {
    for (const o of this.batch(requests)) {
      if (o.errno !== 0) throw outcomeError(o);
    }
  }

  /** A request answered by one message (e.g. RTM_GETLINK by name); undefined for `missing` errnos. */
  get(
    type: number,
    body: Buffer,
    what: string,
    missing: readonly number[] = [ENODEV],
  ): RawMessage | undefined {
    const seq = this.#nextSeq();
    this.#send(nlmsg(type, NLM_F_REQUEST, seq, body), what);
    for (;;) {
      for (const m of this.#recv(what)) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_ERROR) {
          const e = decodeError(m);
          if (e.errno === 0) continue;
          if (missing.includes(e.errno)) return undefined;
          throw new NetlinkError(what, e.errno, e.message ?? errnoText(e.errno));
        }
        return m;
      }
    }
  }

  /** A dump request: every message until NLMSG_DONE. */
  dump(type: number, body: Buffer, what: string): RawMessage[] {
    const seq = this.#nextSeq();
    this.#send(nlmsg(type, NLM_F_REQUEST | NLM_F_DUMP, seq, body), what);
    const out: RawMessage[] = [];
    for (;;) {
      for (const m of this.#recv(what)) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_DONE) return out;
        if (m.type === NLMSG_ERROR) {
          const e = decodeError(m);
          if (e.errno === 0) continue;
          throw new NetlinkError(what, e.errno, e.message ?? errnoText(e.errno));
        }
        out.push(m);
      }
    }
  }

  close(): void {
    if (this.#fd >= 0) this.#libc.close(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export function outcomeError(o: NetlinkOutcome): NetlinkError {
  return new NetlinkError(
    o.request.what,
    o.errno,
    o.message ? `${errnoText(o.errno)}: ${o.message}` : errnoText(o.errno),
  );
}
