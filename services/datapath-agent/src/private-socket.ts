import { statSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { SOL_SOCKET, SO_PEERCRED, openLibc } from './netlink/libc.ts';
import type { Libc } from './netlink/libc.ts';

/**
 * The agent's unix sockets (CNI, API) control the node's pod networking: root only. The file is
 * created 0600 by bind itself (a umask around listen, no listen-then-chmod window), every peer's
 * credentials are checked (SO_PEERCRED) before it is served, and connections are capped.
 */
export interface PrivateSocketOptions {
  /** Connections served at once; more are closed at once (the server's maxConnections). */
  readonly maxConnections: number;
  /** Peers allowed by uid; default root and the agent's own uid. */
  readonly allowedUids?: readonly number[];
  /** Called for each refused peer (logged by the caller). */
  readonly onRefused: (why: string) => void;
}

export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

let libc: Libc | undefined;

/** The connected peer's pid, uid and gid as the kernel recorded them at connect. */
export function peerCredentials(sock: Socket): PeerCredentials | undefined {
  // net.Socket keeps the fd of a unix stream on its handle; there is no public accessor.
  const fd = (sock as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  libc ??= openLibc();
  const cred = Buffer.alloc(12);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(cred.length);
  if (libc.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len) !== 0) return undefined;
  return { pid: cred.readInt32LE(0), uid: cred.readUInt32LE(4), gid: cred.readUInt32LE(8) };
}

function defaultUids(): number[] {
  const own = process.geteuid?.();
  return own === undefined || own === 0 ? [0] : [0, own];
}

/** Whether `sock`'s peer may be served; refuses (and reports) otherwise. */
export function admitPeer(sock: Socket, opts: PrivateSocketOptions): boolean {
  const peer = peerCredentials(sock);
  const allowed = opts.allowedUids ?? defaultUids();
  if (peer === undefined) {
    opts.onRefused('peer credentials unavailable');
    return false;
  }
  if (!allowed.includes(peer.uid)) {
    opts.onRefused(`peer pid ${peer.pid} uid ${peer.uid} is not allowed (${allowed.join(', ')})`);
    return false;
  }
  return true;
}

/**
 * Listens on `path` with the socket file 0600 from the moment bind creates it: the process umask
 * is 0177 for exactly the synchronous bind inside `listen`, and restored before anything else
 * runs. Checks the mode afterwards, so a platform that bound later fails loudly.
 */
export async function listenPrivate(
  server: Server,
  path: string,
  opts: PrivateSocketOptions,
): Promise<void> {
  server.maxConnections = opts.maxConnections;
  server.on('drop', () => opts.onRefused(`more than ${opts.maxConnections} connections`));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const old = process.umask(0o177);
    try {
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
  const mode = statSync(path).mode & 0o777;
  if (mode !== 0o600) {
    server.close();
    throw new Error(`${path} was created with mode ${mode.toString(8)}, not 600`);
  }
}
