import type { KeyPair } from '@nats-io/nkeys';
import type { Counter } from 'prom-client';
import type { BusLogger } from '@dyad/bus';
import { admit } from './identity.ts';
import type { ReviewedToken } from './identity.ts';
import {
  InvalidAuthorizationRequest,
  authorizationResponse,
  decodeAuthorizationRequest,
  userJwt,
} from './jwt.ts';

/** Asks the API server who a token is (a TokenReview with Dyad's audience). */
export type TokenReviewer = (token: string) => Promise<ReviewedToken>;

export interface ResponderOptions {
  readonly issuer: KeyPair;
  /** The release namespace: only its Dyad ServiceAccounts are admitted. */
  readonly namespace: string;
  readonly review: TokenReviewer;
  readonly logger: BusLogger;
  /** dyad_nats_auth_requests_total{result}. */
  readonly requests: Counter<'result'>;
}

/**
 * Answers one auth callout request (the server's JWT) with a signed response: the connecting
 * client's identity and permissions, or why it is refused. A request that does not decode gets
 * no answer (there is no user key to answer for); the server refuses the client at its timeout.
 */
export function authCalloutHandler(o: ResponderOptions): (request: string) => Promise<string> {
  return async (request) => {
    let req;
    try {
      req = decodeAuthorizationRequest(request);
    } catch (err) {
      o.requests.inc({ result: 'invalid-request' });
      if (err instanceof InvalidAuthorizationRequest) {
        o.logger.error({ err: err.message }, 'auth callout request refused');
      }
      throw err;
    }
    const { user_nkey: userNkey, server_id: server, client_info: client } = req.nats;
    const refuse = (result: string, reason: string): string => {
      o.requests.inc({ result });
      o.logger.warn(
        { reason, client: client?.name, host: client?.host, server: server.name },
        'NATS connection refused',
      );
      return authorizationResponse(userNkey, server.id, { error: reason }, o.issuer);
    };
    const token = req.nats.connect_opts?.auth_token;
    if (token === undefined || token === '') return refuse('no-token', 'no token presented');
    let review: ReviewedToken;
    try {
      review = await o.review(token);
    } catch (err) {
      // the API server is away: refused now, the client retries
      return refuse('review-failed', `TokenReview failed: ${String(err)}`);
    }
    const a = admit(review, o.namespace);
    if (!a.admitted) return refuse('refused', a.reason);
    o.requests.inc({ result: 'admitted' });
    o.logger.info(
      { identity: a.identity, client: client?.name, host: client?.host, server: server.name },
      'NATS connection admitted',
    );
    const jwt = userJwt(userNkey, a.identity, a.permissions, o.issuer);
    return authorizationResponse(userNkey, server.id, { jwt }, o.issuer);
  };
}
