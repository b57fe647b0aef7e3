import { request as httpRequest } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface TlsMaterial {
  /** PEM contents, not paths. */
  ca?: string;
  cert?: string;
  key?: string;
  /** Accept any server certificate (components with self-signed serving certs). */
  insecure?: boolean;
}

export interface HttpResponse {
  status: number;
  body: string;
}

/** A GET with a short timeout, for readiness probes. */
export function httpGet(
  url: string,
  tls: TlsMaterial = {},
  timeoutMs = 5_000,
): Promise<HttpResponse> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    };
    const req =
      target.protocol === 'https:'
        ? httpsRequest(
            target,
            {
              method: 'GET',
              ca: tls.ca,
              cert: tls.cert,
              key: tls.key,
              rejectUnauthorized: tls.insecure !== true,
              agent: false,
            },
            onResponse,
          )
        : httpRequest(target, { method: 'GET', agent: false }, onResponse);
    req.setTimeout(timeoutMs, () =>
      req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)),
    );
    req.on('error', reject);
    req.end();
  });
}

/** Probe adapter for waitUntilReady: true on 200, otherwise the status and body as the reason. */
export async function probe200(url: string, tls: TlsMaterial = {}): Promise<true | string> {
  const res = await httpGet(url, tls);
  if (res.status === 200) return true;
  return `GET ${url} -> ${res.status} ${res.body.slice(0, 300)}`;
}
