import { connect, createServer } from 'node:net';
import type { Server } from 'node:net';
import { rmSync } from 'node:fs';

/** Serves a unix socket that relays each connection to TCP host:port (the root-netns end). */
export async function unixToTcpRelay(path: string, host: string, port: number): Promise<Server> {
  rmSync(path, { force: true });
  const server = createServer((client) => {
    const upstream = connect({ host, port });
    client.pipe(upstream).pipe(client);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, resolve);
  });
  return server;
}

/** Listens on TCP host:port (port 0: any) and relays each connection to a unix socket. */
export async function tcpToUnixRelay(host: string, port: number, path: string): Promise<Server> {
  const server = createServer((client) => {
    const upstream = connect(path);
    client.pipe(upstream).pipe(client);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return server;
}
