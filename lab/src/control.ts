import { connect } from 'node:net';
import type { Socket } from 'node:net';
import type { ProbeProtocol } from './probe-once.ts';

export interface ControlReply {
  readonly result?: 'connected' | 'blocked' | 'error';
  readonly reason?: string;
  readonly ms?: number;
  readonly ok?: boolean;
}

/**
 * A connection to one pod's stand-in control socket; many requests may be in flight on it, each
 * answered by id.
 */
export class ControlClient {
  readonly #sock: Socket;
  readonly #pending = new Map<number, (r: ControlReply) => void>();
  readonly #ready: Promise<void>;
  #nextId = 1;
  #failed: Error | undefined;

  constructor(path: string) {
    this.#sock = connect(path);
    this.#ready = new Promise((resolve, reject) => {
      this.#sock.once('connect', resolve);
      this.#sock.once('error', reject);
    });
    let buffered = '';
    this.#sock.setEncoding('utf8');
    this.#sock.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const r = JSON.parse(line) as ControlReply & { id: number };
          this.#pending.get(r.id)?.(r);
          this.#pending.delete(r.id);
        } catch {
          // ignore a garbled line; its request times out below
        }
      }
    });
    const failAll = (err: Error): void => {
      this.#failed = err;
      for (const resolve of this.#pending.values())
        resolve({ result: 'error', reason: err.message });
      this.#pending.clear();
    };
    this.#sock.on('error', failAll);
    this.#sock.on('close', () => failAll(new Error('control socket closed')));
  }

  async request(body: Record<string, unknown>, timeoutMs: number): Promise<ControlReply> {
    try {
      await this.#ready;
    } catch (err) {
      return { result: 'error', reason: `pod control socket: ${(err as Error).message}` };
    }
    if (this.#failed) return { result: 'error', reason: this.#failed.message };
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve({ result: 'error', reason: 'the pod did not answer' });
      }, timeoutMs);
      this.#pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.#sock.write(JSON.stringify({ id, ...body }) + '\n');
    });
  }

  probe(
    protocol: ProbeProtocol,
    address: string,
    port: number,
    timeoutMs: number,
  ): Promise<ControlReply> {
    // The stand-in gives up at timeoutMs; the margin covers the socket round trip.
    return this.request({ op: 'probe', protocol, address, port, timeoutMs }, timeoutMs + 5000);
  }

  close(): void {
    this.#sock.destroy();
  }
}
