import { mkdirSync, unlinkSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { dirname } from 'node:path';
import { admitPeer, listenPrivate } from '../private-socket.ts';
import type { CniReply } from './handler.ts';

const MAX_REQUEST = 8 << 20;

export interface CniSocketLimits {
  /** Calls at once; a container runtime runs a few per pod, a node has a few hundred pods. */
  readonly maxConnections?: number;
  /** A client silent this long while sending its request is cut off (dyad-cni sends at once). */
  readonly idleTimeoutMs?: number;
  /** Peers allowed by uid (default: root and the agent's own uid). */
  readonly allowedUids?: readonly number[];
  /** A refused peer or connection, for the log. */
  readonly onRefused?: (why: string) => void;
}

const DEFAULT_MAX_CONNECTIONS = 256;
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

export interface CniServer {
  readonly path: string;
  /** Stops accepting, waits for calls in flight, removes the socket file. */
  close(): Promise<void>;
}

/** True when something accepts connections at `path` (another agent is alive there). */
function inUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Serves dyad-cni on a unix socket: one call per connection, the request read until the client
 * shuts its write side, the reply `<exit code>\n<stdout>`. Calls run concurrently; the agent
 * serialises what must be serialised per attachment.
 */
export async function startCniServer(
  path: string,
  handle: (raw: string) => Promise<CniReply>,
  onError: (err: unknown) => void,
  limits: CniSocketLimits = {},
): Promise<CniServer> {
  const guard = {
    maxConnections: limits.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    ...(limits.allowedUids === undefined ? {} : { allowedUids: limits.allowedUids }),
    onRefused:
      limits.onRefused ?? ((why: string) => onError(new Error(`CNI peer refused: ${why}`))),
  };
  mkdirSync(dirname(path), { recursive: true });
  if (await inUse(path)) throw new Error(`another process serves ${path}`);
  try {
    unlinkSync(path);
  } catch {
    // no stale socket
  }
  const inflight = new Set<Promise<void>>();
  const sockets = new Set<Socket>();
  // half-open: dyad-cni shuts its write side to mark the end of the request, then reads
  const server: Server = createServer({ allowHalfOpen: true }, (sock) => {
    if (!admitPeer(sock, guard)) {
      sock.destroy();
      return;
    }
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    // Only while the request arrives: the answer may take as long as the pod's wiring takes.
    sock.setTimeout(limits.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, () => {
      guard.onRefused('idle while sending its request');
      sock.destroy();
    });
    const chunks: Buffer[] = [];
    let size = 0;
    sock.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_REQUEST) {
        sock.destroy();
        return;
      }
      chunks.push(d);
    });
    sock.on('error', onError);
    sock.once('end', () => {
      sock.setTimeout(0);
      const p = handle(Buffer.concat(chunks).toString('utf8'))
        .then((r) => {
          sock.end(`${r.exitCode}\n${r.stdout}`);
        })
        .catch((err: unknown) => {
          onError(err);
          sock.destroy();
        })
        .finally(() => inflight.delete(p));
      inflight.add(p);
    });
  });
  // root only: the socket is the node's control over pod networking
  await listenPrivate(server, path, guard);
  server.on('error', onError);
  return {
    path,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.allSettled([...inflight]);
      // a client that never finished its request gets no answer
      for (const s of sockets) s.destroy();
      await closed;
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}
