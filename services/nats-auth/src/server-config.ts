import { authCalloutPermissions, inboxPermission } from '@dyad/contracts';
import type { SubjectPermissions } from '@dyad/contracts';

/** The public halves of the callout's keys: all nats-server needs. */
export interface CalloutPublicKeys {
  /** Account key that signs every answer and user JWT (`auth_callout.issuer`). */
  readonly issuer: string;
  /** The callout service's own connection (exempt from the callout). */
  readonly callout: string;
}

const q = (s: string): string => JSON.stringify(s);
const list = (xs: readonly string[]): string => `[${xs.map(q).join(', ')}]`;

/** An empty allow list would mean no restriction to nats-server: deny everything instead. */
function rule(allow: readonly string[]): string {
  return allow.length === 0 ? `{ deny: [">"] }` : `{ allow: ${list(allow)} }`;
}

function user(name: string, nkey: string, p: SubjectPermissions): string {
  return [
    `    # ${name}`,
    `    { nkey: ${q(nkey)}, permissions: {`,
    `        publish: ${rule(p.publish)}`,
    `        subscribe: ${rule([...p.subscribe, inboxPermission(nkey)])}`,
    ...(p.allowResponses ? ['        allow_responses: true'] : []),
    '    } }',
  ].join('\n');
}

/**
 * nats-server's `authorization` block: one NKey user of its own (the callout's connection), every
 * other client (the bootstrap service included) sent to the callout. Written into Secret
 * dyad-nats-auth (key `auth.conf`), which the chart's nats.conf includes.
 */
export function authorizationConfig(keys: CalloutPublicKeys, authTimeoutS = 5): string {
  return [
    '# Written by dyad-nats-auth (services/nats-auth): every client but this user is',
    '# sent to the auth callout, which admits Dyad ServiceAccount tokens.',
    'authorization {',
    `  timeout: ${authTimeoutS}`,
    '  users: [',
    user('nats-auth (the callout)', keys.callout, authCalloutPermissions()),
    '  ]',
    '  auth_callout {',
    `    issuer: ${q(keys.issuer)}`,
    `    auth_users: ${list([keys.callout])}`,
    '  }',
    '}',
    '',
  ].join('\n');
}
