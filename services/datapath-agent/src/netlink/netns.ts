import { fstatSync } from 'node:fs';
import { NetnsError } from '../errors.ts';
import type { Libc } from './libc.ts';
import { CLONE_NEWNET, O_CLOEXEC, O_RDONLY } from './libc.ts';
import { NetlinkSocket } from './socket.ts';

/** What a CNI_NETNS path turned out to be. */
export type NetnsProblem = 'missing' | 'not-a-netns' | 'own-netns';

/**
 * Opens other network namespaces for the agent. A netlink socket belongs to the namespace it was
 * created in, so the agent switches its main thread into a pod's namespace just long enough to
 * open one (synchronously: no other JavaScript runs meanwhile), then comes straight back.
 */
export class Netns {
  readonly #libc: Libc;
  readonly #home: number;
  readonly #homeIno: string;
  readonly #stranded: (err: NetnsError) => never;

  /** `stranded` runs if the thread cannot get back to its own namespace: the process must end. */
  constructor(libc: Libc, stranded: (err: NetnsError) => never) {
    this.#libc = libc;
    this.#stranded = stranded;
    const fd = libc.open('/proc/thread-self/ns/net', O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw new NetnsError('cannot open the agent netns', libc.errno());
    this.#home = fd;
    const st = fstatSync(fd);
    this.#homeIno = `${st.dev}:${st.ino}`;
  }

  /** An fd of the namespace at `path` (caller closes it with close()), or why not. */
  open(path: string): { fd: number } | { problem: NetnsProblem; errno: number } {
    const fd = this.#libc.open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return { problem: 'missing', errno: this.#libc.errno() };
    let st;
    try {
      st = fstatSync(fd);
    } catch {
      this.#libc.close(fd);
      return { problem: 'missing', errno: 2 };
    }
    if (`${st.dev}:${st.ino}` === this.#homeIno) {
      this.#libc.close(fd);
      return { problem: 'own-netns', errno: 0 };
    }
    return { fd };
  }

  close(fd: number): void {
    this.#libc.close(fd);
  }

  /** A netlink socket inside the namespace open at `fd`. */
  socketIn(fd: number): NetlinkSocket {
    if (this.#libc.setns(fd, CLONE_NEWNET) < 0)
      throw new NetnsError('not a network namespace', this.#libc.errno());
    try {
      return NetlinkSocket.open(this.#libc);
    } finally {
      if (this.#libc.setns(this.#home, CLONE_NEWNET) < 0)
        this.#stranded(new NetnsError('cannot return to the agent netns', this.#libc.errno()));
    }
  }

  /** A netlink socket in the agent's own namespace. */
  socketHere(): NetlinkSocket {
    return NetlinkSocket.open(this.#libc);
  }
}
