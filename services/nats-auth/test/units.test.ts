import * as nkeys from '@nats-io/nkeys';
import {
  ServiceIdentity,
  agentPermissions,
  inboxPermission,
  servicePermissions,
} from '@dyad/contracts';
import { describe, expect, it } from 'vitest';
import { NODE_NAME_EXTRA, admit } from '../src/identity.ts';
import { ensureCalloutKeys } from '../src/keys.ts';
import type { SecretStore, StoredSecret } from '../src/keys.ts';
import {
  authorizationResponse,
  decodeAuthorizationRequest,
  encodeJwt,
  userJwt,
} from '../src/jwt.ts';

const NS = 'kube-system';
const sa = (name: string): string => `system:serviceaccount:${NS}:${name}`;

describe('admit: ServiceAccount → identity', () => {
  it("gives an agent token its pod's node and exactly agentPermissions(node) plus its inbox", () => {
    const a = admit(
      { authenticated: true, username: sa('dyad-agent'), extra: { [NODE_NAME_EXTRA]: ['node-1'] } },
      NS,
    );
    expect(a).toEqual({
      admitted: true,
      identity: 'agent-node-1',
      permissions: {
        ...agentPermissions('node-1'),
        subscribe: [...agentPermissions('node-1').subscribe, inboxPermission('agent-node-1')],
      },
    });
  });

  it('maps each service account to its service identity', () => {
    for (const [account, id] of [
      ['dyad-kube-bridge', ServiceIdentity.kubeBridge],
      ['dyad-ipam', ServiceIdentity.ipam],
      ['dyad-router', ServiceIdentity.router],
      ['dyad-policy', ServiceIdentity.policy],
      ['dyad-observer', ServiceIdentity.observer],
      ['dyad-operator', ServiceIdentity.operator],
    ] as const) {
      const a = admit({ authenticated: true, username: sa(account) }, NS);
      expect(a.admitted && a.identity).toBe(id);
      expect(a.admitted && a.permissions.publish).toEqual(servicePermissions(id).publish);
    }
  });

  it('refuses unauthenticated tokens, other accounts, other namespaces and unbound agents', () => {
    const refused = [
      { authenticated: false, error: 'expired' },
      { authenticated: true, username: sa('default') },
      { authenticated: true, username: 'system:serviceaccount:other:dyad-ipam' },
      { authenticated: true, username: 'admin' },
      // the callout's own account is exempt by its NKey, never admitted by token
      { authenticated: true, username: sa('dyad-nats-auth') },
      { authenticated: true, username: sa('dyad-agent') },
      { authenticated: true, username: sa('dyad-agent'), extra: { [NODE_NAME_EXTRA]: ['a', 'b'] } },
    ];
    for (const r of refused) expect(admit(r, NS).admitted, JSON.stringify(r)).toBe(false);
  });
});

function claimsOf(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
}

describe('NATS JWTs', () => {
  it('signs a user with its permissions; an empty list denies everything', () => {
    const issuer = nkeys.createAccount();
    const user = nkeys.createUser().getPublicKey();
    const jwt = userJwt(
      user,
      'x',
      { publish: [], subscribe: ['a.>'], allowResponses: false },
      issuer,
    );
    const [h, p, s] = jwt.split('.') as [string, string, string];
    expect(issuer.verify(new TextEncoder().encode(`${h}.${p}`), Buffer.from(s, 'base64url'))).toBe(
      true,
    );
    const c = claimsOf(jwt);
    expect(c).toMatchObject({ sub: user, aud: '$G', iss: issuer.getPublicKey(), name: 'x' });
    expect(c['nats']).toMatchObject({
      pub: { deny: ['>'] },
      sub: { allow: ['a.>'] },
      type: 'user',
    });
    expect(c['jti']).toMatch(/^[A-Z2-7]{52}$/);
  });

  it("decodes the server's request only with a valid signature", () => {
    const server = nkeys.createServer();
    const req = encodeJwt(
      {
        sub: 'A',
        aud: 'nats-authorization-request',
        nats: {
          type: 'authorization_request',
          server_id: { id: 'NSERVER', name: 's1' },
          user_nkey: 'UUSER',
          connect_opts: { auth_token: 't' },
        },
      },
      server,
    );
    expect(decodeAuthorizationRequest(req).nats.connect_opts?.auth_token).toBe('t');
    const [h, p] = req.split('.') as [string, string, string];
    const forged = `${h}.${p}.${Buffer.from('x'.repeat(64)).toString('base64url')}`;
    expect(() => decodeAuthorizationRequest(forged)).toThrow(/bad signature/);
    expect(() => decodeAuthorizationRequest('garbage')).toThrow(/not a JWT/);
    const c = claimsOf(req);
    const selfSigned = encodeJwt(
      { sub: 'A', nats: c['nats'] as Record<string, unknown> },
      nkeys.createUser(),
    );
    expect(() => decodeAuthorizationRequest(selfSigned)).toThrow(/not signed by a server/);
    const resp = claimsOf(
      authorizationResponse('UUSER', 'NSERVER', { error: 'no' }, nkeys.createAccount()),
    );
    expect(resp).toMatchObject({ sub: 'UUSER', aud: 'NSERVER', nats: { error: 'no' } });
  });
});

describe('ensureCalloutKeys', () => {
  it('fills an empty Secret once; later starts read the same keys', async () => {
    let stored: StoredSecret = { data: {}, resourceVersion: '1' };
    let writes = 0;
    const store: SecretStore = {
      read: () => Promise.resolve(stored),
      write: (data, rv) => {
        writes++;
        if (rv !== stored.resourceVersion) return Promise.resolve(false);
        stored = { data, resourceVersion: String(Number(rv) + 1) };
        return Promise.resolve(true);
      },
    };
    const first = await ensureCalloutKeys(store, 's');
    const again = await ensureCalloutKeys(store, 's');
    expect(writes).toBe(1);
    expect(again.issuer.getPublicKey()).toBe(first.issuer.getPublicKey());
    expect(stored.data['auth.conf']).toContain(`issuer: "${first.issuer.getPublicKey()}"`);
    expect(stored.data['auth.conf']).not.toContain(
      new TextDecoder().decode(first.issuer.getSeed()),
    );
  });
});
