import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { KubeApiError } from './errors.ts';

export interface KubeTls {
  readonly caPath: string;
  readonly certPath: string;
  readonly keyPath: string;
}

export interface WatchEvent {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: Record<string, unknown>;
}

/**
 * A small Kubernetes REST client for the lab's kubelet stand-in: the few calls it makes (list,
 * watch, create, patch, delete) over HTTPS with the admin client certificate. Kept minimal and
 * dependency-free so the pod runtime's behaviour on errors is plain to read.
 */
export class KubeClient {
  readonly #server: URL;
  readonly #agent: Agent;

  constructor(server: string, tls: KubeTls) {
    this.#server = new URL(server);
    this.#agent = new Agent({
      ca: readFileSync(tls.caPath),
      cert: readFileSync(tls.certPath),
      key: readFileSync(tls.keyPath),
      keepAlive: true,
      maxSockets: 16,
    });
  }

  close(): void {
    this.#agent.destroy();
  }

  /** One request; JSON in and out. Rejects with KubeApiError on a non-2xx answer. */
  async call<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<T> {
    const res = await this.#send(method, path, body, contentType);
    const text = await readAll(res);
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      let message = text;
      try {
        const m = (JSON.parse(text) as { message?: unknown }).message;
        if (typeof m === 'string') message = m;
      } catch {
        // not JSON
      }
      throw new KubeApiError(`${method} ${path}: ${status} ${message}`, status);
    }
    return (text === '' ? {} : JSON.parse(text)) as T;
  }

  /** Like call, but a 404 (or 409 for create) is returned as undefined instead of thrown. */
  async tryCall<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    contentType?: string,
    tolerate: readonly number[] = [404],
  ): Promise<T | undefined> {
    try {
      return await this.call<T>(method, path, body, contentType);
    } catch (err) {
      if (err instanceof KubeApiError && tolerate.includes(err.status)) return undefined;
      throw err;
    }
  }

  /**
   * Streams watch events from `path` (which must carry `watch=1` and a resourceVersion) until the
   * server ends the watch or `signal` aborts. Resolves when the stream ends.
   */
  async watch(path: string, onEvent: (e: WatchEvent) => void, signal: AbortSignal): Promise<void> {
    const res = await this.#send('GET', path, undefined, 'application/json', signal);
    if ((res.statusCode ?? 0) !== 200) {
      const text = await readAll(res);
      throw new KubeApiError(`watch ${path}: ${res.statusCode} ${text}`, res.statusCode ?? 0);
    }
    let buffered = '';
    await new Promise<void>((resolve, reject) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line !== '') onEvent(JSON.parse(line) as WatchEvent);
        }
      });
      res.on('end', resolve);
      res.on('close', resolve);
      res.on('error', reject);
    });
  }

  #send(
    method: string,
    path: string,
    body: unknown,
    contentType: string,
    signal?: AbortSignal,
  ): Promise<IncomingMessage> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = request(
        {
          protocol: this.#server.protocol,
          hostname: this.#server.hostname,
          port: this.#server.port,
          path,
          method,
          agent: this.#agent,
          headers: {
            accept: 'application/json',
            ...(payload === undefined
              ? {}
              : { 'content-type': contentType, 'content-length': payload.length }),
          },
          ...(signal === undefined ? {} : { signal }),
          timeout: signal === undefined ? 30_000 : 0,
        },
        resolve,
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }
}

function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => (text += c));
    res.on('end', () => resolve(text));
    res.on('error', reject);
  });
}
