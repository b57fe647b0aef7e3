import * as nkeys from '@nats-io/nkeys';
import type { KeyPair } from '@nats-io/nkeys';
import { authorizationConfig } from './server-config.ts';

/** The Secret's keys. Seeds are secrets; `auth.conf` holds public keys only. */
export const SecretKey = {
  issuer: 'issuer.nk',
  callout: 'callout.nk',
  /** The only key nats-server mounts. */
  authConf: 'auth.conf',
} as const;

export interface CalloutKeys {
  readonly issuer: KeyPair;
  readonly callout: KeyPair;
}

/** The Secret as this service reads and writes it: string data and its resourceVersion. */
export interface StoredSecret {
  readonly data: Readonly<Record<string, string>>;
  readonly resourceVersion: string;
}

export interface SecretStore {
  /** undefined: the Secret does not exist. */
  read(): Promise<StoredSecret | undefined>;
  /** Replaces the data if the Secret is still at `resourceVersion`; false if it was not. */
  write(data: Record<string, string>, resourceVersion: string): Promise<boolean>;
}

export class KeySecretMissingError extends Error {
  override readonly name = 'KeySecretMissingError';
}

function fromSeeds(data: Readonly<Record<string, string>>): CalloutKeys | undefined {
  const seeds = [data[SecretKey.issuer], data[SecretKey.callout]];
  if (seeds.some((s) => s === undefined || s === '')) return undefined;
  const [issuer, callout] = seeds.map((s) =>
    nkeys.fromSeed(new TextEncoder().encode((s as string).trim())),
  ) as [KeyPair, KeyPair];
  return { issuer, callout };
}

function seed(kp: KeyPair): string {
  return new TextDecoder().decode(kp.getSeed());
}

/**
 * The callout's keys, generated once. Helm cannot make NKeys, so the chart creates the Secret
 * empty and the first replica to start fills it (the write is revision-checked: when two race,
 * one writes and the other reads what it wrote). nats-server waits for `auth.conf` to appear
 * (the kubelet does not start a pod whose Secret key is missing).
 */
export async function ensureCalloutKeys(store: SecretStore, what: string): Promise<CalloutKeys> {
  for (;;) {
    const s = await store.read();
    if (s === undefined) {
      throw new KeySecretMissingError(`${what} does not exist: the chart creates it (empty)`);
    }
    const have = fromSeeds(s.data);
    if (have !== undefined) return have;
    const keys: CalloutKeys = {
      issuer: nkeys.createAccount(),
      callout: nkeys.createUser(),
    };
    const data = {
      ...s.data,
      [SecretKey.issuer]: seed(keys.issuer),
      [SecretKey.callout]: seed(keys.callout),
      [SecretKey.authConf]: authorizationConfig({
        issuer: keys.issuer.getPublicKey(),
        callout: keys.callout.getPublicKey(),
      }),
    };
    if (await store.write(data, s.resourceVersion)) return keys;
  }
}
