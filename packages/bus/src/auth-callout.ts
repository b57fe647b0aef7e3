import { AUTH_CALLOUT_SUBJECT } from '@dyad/contracts';
import type { BusContext } from './context.ts';
import { track } from './context.ts';
import { limiter } from './inbound.ts';
import type { BusSubscription } from './subscribe.ts';

/**
 * Answers nats-server's auth callout requests. Unlike everything else on the bus these are not
 * CloudEvents but nats-server's own protocol: the request body is a JWT the server signed, the
 * answer a JWT the callout signs. The handler decodes and answers; it must always answer (a
 * refusal is an answer with an error), since a request left unanswered holds the client until
 * the server's auth timeout.
 */
export interface AuthCalloutOptions {
  /** Queue group, so replicas share the requests. Default: the service name. */
  readonly queue?: string;
  /** Requests handled at once (each waits for a TokenReview). Default 16. */
  readonly concurrency?: number;
}

export type AuthCalloutHandler = (request: string) => Promise<string>;

export function serveAuthCallout(
  ctx: BusContext,
  handler: AuthCalloutHandler,
  opts: AuthCalloutOptions = {},
): BusSubscription {
  const sub = ctx.nc.subscribe(AUTH_CALLOUT_SUBJECT, { queue: opts.queue ?? ctx.service });
  const limit = limiter(opts.concurrency ?? 16, (err) =>
    ctx.logger.error({ err }, 'auth callout request not answered'),
  );
  const done = (async () => {
    for await (const msg of sub) {
      await limit.run(async () => {
        if (msg.reply === undefined) return;
        msg.respond(await handler(msg.string()));
      });
    }
    await limit.idle();
  })();
  return track(
    ctx,
    async () => {
      if (!sub.isClosed()) await sub.drain();
    },
    done,
    AUTH_CALLOUT_SUBJECT,
  );
}
