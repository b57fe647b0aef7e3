import { NatsEnv, connectBus, natsSettings } from '@dyad/bus';
import type { Bus } from '@dyad/bus';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { Exit } from '../command.ts';
import { CliError, UsageError } from '../errors.ts';

// The connection to NATS of the cluster-wide commands (ipam list, identity list, policy get),
// apart so that only they import the bus.
// @dyad/telemetry is here only for the prom-client Registry (and a silent logger) that
// connectBus requires; the CLI exports no metrics.

type Checked<T> =
  | { readonly success: true; readonly data: T }
  | {
      readonly success: false;
      readonly error: { readonly issues: readonly { message: string }[] };
    };

/** One environment variable through its schema in NatsEnv; a bad value is a usage error. */
function setting<T>(name: string, r: Checked<T>): T {
  if (r.success) return r.data;
  throw new UsageError(`${name}: ${r.error.issues.map((i) => i.message).join('; ')}`);
}

/**
 * How the cluster-wide commands reach NATS: the settings every service reads (NATS_URL, NATS_CREDS
 * or NATS_TOKEN_FILE with NATS_IDENTITY, NATS_CA, NATS_USER/NATS_PASSWORD, NATS_TOKEN; see
 * @dyad/bus env.ts), `--nats` before NATS_URL. Each
 * goes through bus's own schema, so the CLI and the services cannot read them differently.
 */
function natsOptions(env: Readonly<Record<string, string | undefined>>, url: string | undefined) {
  const s = natsSettings({
    NATS_URL: setting('NATS_URL', NatsEnv.NATS_URL.safeParse(url ?? env['NATS_URL'])),
    NATS_CREDS: setting('NATS_CREDS', NatsEnv.NATS_CREDS.safeParse(env['NATS_CREDS'])),
    NATS_TOKEN_FILE: setting(
      'NATS_TOKEN_FILE',
      NatsEnv.NATS_TOKEN_FILE.safeParse(env['NATS_TOKEN_FILE']),
    ),
    NATS_IDENTITY: setting('NATS_IDENTITY', NatsEnv.NATS_IDENTITY.safeParse(env['NATS_IDENTITY'])),
    NATS_CA: setting('NATS_CA', NatsEnv.NATS_CA.safeParse(env['NATS_CA'])),
    NATS_USER: setting('NATS_USER', NatsEnv.NATS_USER.safeParse(env['NATS_USER'])),
    NATS_PASSWORD: setting('NATS_PASSWORD', NatsEnv.NATS_PASSWORD.safeParse(env['NATS_PASSWORD'])),
    NATS_TOKEN: setting('NATS_TOKEN', NatsEnv.NATS_TOKEN.safeParse(env['NATS_TOKEN'])),
    DYAD_NATS_COALESCE: setting(
      'DYAD_NATS_COALESCE',
      NatsEnv.DYAD_NATS_COALESCE.safeParse(env['DYAD_NATS_COALESCE']),
    ),
  });
  return s;
}

/** A bus connected as every service connects; exit 3 when NATS does not let us in. */
export async function connectNats(
  env: Readonly<Record<string, string | undefined>>,
  url: string | undefined,
): Promise<{ bus: Bus; where: string }> {
  const nats = natsOptions(env, url);
  const where = nats.servers.join(',');
  try {
    const bus = await connectBus({
      ...nats,
      name: 'dyad-cli',
      logger: createLogger({ service: 'dyad-cli', level: 'silent' }),
      registry: createMetrics({ processMetrics: false }),
      reconnect: { maxAttempts: 0 },
      connectTimeoutMs: 5000,
    });
    return { bus, where };
  } catch (err) {
    throw new CliError(
      Exit.unavailable,
      `cannot reach NATS at ${where}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}
