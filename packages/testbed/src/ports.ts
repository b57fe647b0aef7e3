import { createServer } from 'node:net';

const LOOPBACK = '127.0.0.1';

function listenOnce(): Promise<{ port: number; close: () => Promise<void> }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: LOOPBACK, port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error(`unexpected listen address ${String(address)}`));
        return;
      }
      resolve({
        port: address.port,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}

/**
 * Returns `count` distinct free TCP ports on 127.0.0.1. All sockets stay open until every port is
 * chosen, so one call never hands out the same port twice.
 */
export async function freePorts(count: number): Promise<number[]> {
  const held: { port: number; close: () => Promise<void> }[] = [];
  try {
    for (let i = 0; i < count; i++) held.push(await listenOnce());
    return held.map((h) => h.port);
  } finally {
    await Promise.all(held.map((h) => h.close()));
  }
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error('no free port');
  return port;
}

/**
 * A port found free can be taken before the server that was given it binds it: by another test
 * process, or as the local end of an outgoing connection (free ports and those come from the same
 * range). Runs `start` again, on fresh ports, when it failed that way; other failures are thrown.
 */
export async function retryOnPortClash<T>(start: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      const clash = err instanceof Error && /address already in use/i.test(err.message);
      if (!clash || attempt >= attempts) throw err;
    }
  }
}
