import { ConfigFileError } from './errors.ts';

/*
 * A Dyad identity's credentials file holds its NKey seed in the block nats-server's tools write
 * (testbed's credsFileText writes it; `nats --nkey <file>` reads it too).
 */
// A user seed: 'S', 'U', then base32 of the rest (58 characters in all).
const USER_SEED = /\bSU[A-Z2-7]{56}\b/;

/** The user seed in a credentials file; `where` names the file in the error. */
export function seedFromCreds(text: string, where: string): string {
  const m = USER_SEED.exec(text);
  if (m === null) throw new ConfigFileError(`${where}: no NKey user seed (SU…) in the file`);
  return m[0];
}
