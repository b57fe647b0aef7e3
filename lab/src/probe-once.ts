import { createSocket } from 'node:dgram';
import { connect, isIPv6 } from 'node:net';
import type { IcmpSocket } from '@dyad/testbed';

export type ProbeProtocol = 'TCP' | 'UDP' | 'ICMP';

export interface ProbeOutcome {
  readonly result: 'connected' | 'blocked';
  /** Why it was blocked: timeout, refused, unreachable, or the socket error code. */
  readonly reason?: string;
  readonly ms: number;
}

const PAYLOAD = Buffer.from('dyad-lab-probe');

/**
 * One connection attempt from this process's netns. TCP: the handshake completes. UDP: a
 * datagram is echoed back. ICMP: an echo request is answered. Anything else within the timeout
 * is `blocked`, with the reason.
 */
export function probeOnce(
  protocol: ProbeProtocol,
  address: string,
  port: number,
  timeoutMs: number,
): Promise<ProbeOutcome> {
  const started = performance.now();
  const took = () => Math.round((performance.now() - started) * 10) / 10;
  if (protocol === 'ICMP') return icmpEcho(address, timeoutMs, took);
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: 'connected' | 'blocked', reason?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      cleanup();
      resolve({ result, ...(reason === undefined ? {} : { reason }), ms: took() });
    };
    const timer = setTimeout(() => finish('blocked', 'timeout'), timeoutMs);
    let cleanup = (): void => undefined;
    if (protocol === 'TCP') {
      const s = connect({ host: address, port });
      cleanup = () => s.destroy();
      s.once('connect', () => finish('connected'));
      s.once('error', (e: NodeJS.ErrnoException) => finish('blocked', reasonOf(e)));
    } else {
      const u = createSocket(isIPv6(address) ? 'udp6' : 'udp4');
      cleanup = () => u.close();
      u.on('message', (m) => {
        if (m.equals(PAYLOAD)) finish('connected');
      });
      // A connected socket reports the ICMP port-unreachable as ECONNREFUSED.
      u.on('error', (e: NodeJS.ErrnoException) => finish('blocked', reasonOf(e)));
      u.connect(port, address, () => {
        u.send(PAYLOAD);
        // One datagram may be lost while a neighbour is resolved; a second one is cheap.
        setTimeout(() => !settled && u.send(PAYLOAD), Math.min(200, timeoutMs / 3)).unref();
      });
    }
  });
}

function reasonOf(e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'unreachable';
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return e.code ?? e.message;
  }
}

// Loaded on first use: most probes are TCP/UDP and need no libc binding.
let icmpFactory: ((address: string) => Promise<IcmpSocket>) | undefined;

async function icmpEcho(
  address: string,
  timeoutMs: number,
  took: () => number,
): Promise<ProbeOutcome> {
  icmpFactory ??= (await import('@dyad/testbed')).openIcmp;
  const sock = await icmpFactory(address);
  try {
    const deadline = Date.now() + timeoutMs;
    for (let seq = 1; Date.now() < deadline; seq++) {
      if (!sock.send(seq)) return { result: 'blocked', reason: 'unreachable', ms: took() };
      const wait = Math.min(250, deadline - Date.now());
      // Polls in small steps so the event loop keeps serving other probes.
      const until = Date.now() + wait;
      while (Date.now() < until) {
        if (sock.recv(seq, 0)) return { result: 'connected', ms: took() };
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    return { result: 'blocked', reason: 'timeout', ms: took() };
  } finally {
    sock.close();
  }
}
