import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { HealthServerListenError } from './errors.ts';

export type Probe = () => boolean | Promise<boolean>;

export interface HealthServerOptions {
  /** 0 binds a free port; the bound one is returned. */
  readonly port: number;
  /**
   * Defaults to every address of both families (`::` with IPv4 mapped, or `0.0.0.0` on a host
   * without IPv6): the kubelet's probes and Prometheus come from outside the process's loopback.
   */
  readonly host?: string | undefined;
  readonly registry: Registry;
  /** Ready to take work (e.g. connected to the bus). Drives /readyz. */
  readonly isReady: Probe;
  /** Alive at all. Drives /healthz; defaults to always true. */
  readonly isHealthy?: Probe;
}

export interface HealthServer {
  readonly port: number;
  readonly host: string;
  /** `http://host:port`, IPv6 hosts bracketed. */
  readonly url: string;
  close(): Promise<void>;
}

/** `/metrics` (Prometheus text), `/healthz` and `/readyz` (200 or 503). */
export async function startHealthServer(opts: HealthServerOptions): Promise<HealthServer> {
  const isHealthy = opts.isHealthy ?? (() => true);
  const server = createServer((req, res) => {
    handle(req, res, opts.registry, opts.isReady, isHealthy).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    });
  });
  // Probes are short-lived; idle keep-alive sockets must not hold close() open.
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(
        new HealthServerListenError(
          `cannot listen on ${opts.host ?? '*'}:${opts.port}: ${err.message}`,
          {
            cause: err,
          },
        ),
      );
    };
    server.once('error', onError);
    const listening = (): void => {
      server.off('error', onError);
      resolve();
    };
    if (opts.host === undefined) server.listen({ port: opts.port, ipv6Only: false }, listening);
    else server.listen(opts.port, opts.host, listening);
  });
  const { port, address: host } = server.address() as AddressInfo;
  // A wildcard is not an address to dial: the URL names the loopback of its family.
  const dial = host === '::' ? '::1' : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    port,
    host,
    url: `http://${dial.includes(':') ? `[${dial}]` : dial}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err === undefined ? resolve() : reject(err)));
        server.closeAllConnections();
      }),
  };
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  registry: Registry,
  isReady: Probe,
  isHealthy: Probe,
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  switch (path) {
    case '/metrics': {
      const body = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType }).end(body);
      return;
    }
    case '/healthz':
      return probe(res, isHealthy);
    case '/readyz':
      return probe(res, isReady);
    default:
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  }
}

async function probe(res: ServerResponse, check: Probe): Promise<void> {
  let ok: boolean;
  try {
    ok = await check();
  } catch {
    // A probe that throws is a failing probe, not a server error.
    ok = false;
  }
  res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'not ok\n');
}
