import { createHash } from 'node:crypto';
import * as nkeys from '@nats-io/nkeys';
import type { KeyPair } from '@nats-io/nkeys';
import { z } from 'zod';

/*
 * The two JWTs of nats-server's auth callout, in the NATS JWT v2 format (github.com/nats-io/jwt):
 * header {"typ":"JWT","alg":"ed25519-nkey"}, base64url without padding, claims signed with the
 * issuer's NKey over `header.claims`, `jti` the base32 SHA-512/256 of the claims with an empty
 * `jti`. Written here rather than taken from @nats-io/jwt (a 0.0.x pre-release) because we need
 * exactly two claim types and one decode.
 */

const HEADER = b64url(Buffer.from(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' })));

function b64url(b: Buffer | Uint8Array): string {
  return Buffer.from(b).toString('base64url');
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
function base32(b: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of b) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32.charAt((value >>> (bits - 5)) & 31);
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32.charAt((value << (5 - bits)) & 31);
  return out;
}

interface Claims {
  readonly sub: string;
  readonly aud?: string;
  readonly name?: string;
  readonly exp?: number;
  readonly nats: Record<string, unknown>;
}

/** Signs `claims` with `issuer` (an account key) as a NATS JWT v2. */
export function encodeJwt(claims: Claims, issuer: KeyPair, now: Date = new Date()): string {
  const body: Record<string, unknown> = {
    jti: '',
    iat: Math.floor(now.getTime() / 1000),
    iss: issuer.getPublicKey(),
    ...claims,
  };
  body['jti'] = base32(createHash('sha512-256').update(JSON.stringify(body)).digest());
  const payload = b64url(Buffer.from(JSON.stringify(body)));
  const sig = issuer.sign(new TextEncoder().encode(`${HEADER}.${payload}`));
  return `${HEADER}.${payload}.${b64url(sig)}`;
}

/** Permissions in a user JWT (nats-server applies them to the connection). */
export interface UserPermissions {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
  readonly allowResponses: boolean;
}

/** nats-server reads an empty allow list as no restriction: deny everything instead. */
function rule(allow: readonly string[]): { allow: string[] } | { deny: string[] } {
  return allow.length === 0 ? { deny: ['>'] } : { allow: [...allow] };
}

/**
 * The user a callout admits: `sub` is the per-connection user key the server put in its
 * request, `aud` the account the user joins (`$G`, the global account of a server without
 * accounts), `name` the identity (the server logs it as the user). No `exp`: an admitted
 * connection lasts until it drops; every new connection presents a token again.
 */
export function userJwt(
  userNkey: string,
  name: string,
  p: UserPermissions,
  issuer: KeyPair,
  account = '$G',
): string {
  return encodeJwt(
    {
      sub: userNkey,
      aud: account,
      name,
      nats: {
        pub: rule(p.publish),
        sub: rule(p.subscribe),
        // allow_responses in the server's configuration: one reply to each request received
        ...(p.allowResponses ? { resp: { max: 1, ttl: 0 } } : {}),
        subs: -1,
        data: -1,
        payload: -1,
        type: 'user',
        version: 2,
      },
    },
    issuer,
  );
}

/** The answer to one request: the user's JWT, or why it is refused. */
export function authorizationResponse(
  userNkey: string,
  serverId: string,
  answer: { readonly jwt: string } | { readonly error: string },
  issuer: KeyPair,
): string {
  return encodeJwt(
    {
      sub: userNkey,
      aud: serverId,
      nats: { ...answer, type: 'authorization_response', version: 2 },
    },
    issuer,
  );
}

/** What Dyad reads of the server's request (its claims; other fields are ignored). */
export const AuthorizationRequest = z.object({
  iss: z.string(),
  nats: z.object({
    type: z.literal('authorization_request'),
    server_id: z.object({ id: z.string().min(1), name: z.string().optional() }),
    user_nkey: z.string().min(1),
    client_info: z
      .object({ host: z.string().optional(), name: z.string().optional() })
      .partial()
      .optional(),
    connect_opts: z.object({ auth_token: z.string().optional() }).partial().optional(),
  }),
});
export type AuthorizationRequest = z.infer<typeof AuthorizationRequest>;

export class InvalidAuthorizationRequest extends Error {
  override readonly name = 'InvalidAuthorizationRequest';
}

/**
 * Decodes the server's request and checks its signature against the key in its `iss` (a server
 * key: only nats-server publishes on the callout subject, which no identity but the callout's
 * own may touch; the signature check keeps a garbled request from being answered).
 */
export function decodeAuthorizationRequest(jwt: string): AuthorizationRequest {
  const parts = jwt.split('.');
  if (parts.length !== 3) throw new InvalidAuthorizationRequest('not a JWT');
  const [h, p, s] = parts as [string, string, string];
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidAuthorizationRequest('claims are not JSON');
  }
  const r = AuthorizationRequest.safeParse(claims);
  if (!r.success) throw new InvalidAuthorizationRequest(`claims: ${r.error.message}`);
  let ok: boolean;
  try {
    ok = nkeys
      .fromPublic(r.data.iss)
      .verify(new TextEncoder().encode(`${h}.${p}`), Buffer.from(s, 'base64url'));
  } catch {
    ok = false;
  }
  if (!ok) throw new InvalidAuthorizationRequest('bad signature');
  // a server's key (N…): a client key that signed its own request is no server
  if (!r.data.iss.startsWith('N')) throw new InvalidAuthorizationRequest('not signed by a server');
  return r.data;
}
