import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as nkeys from '@nats-io/nkeys';
import { createCa, issueCert } from './certs.ts';

/** What one identity may do; the same shape as contracts' SubjectPermissions. */
export interface IdentityPermissions {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
  readonly allowResponses: boolean;
}

/** One identity as the server knows it: a public NKey and its permissions. */
export interface NatsIdentity {
  readonly name: string;
  readonly publicKey: string;
  readonly permissions: IdentityPermissions;
  /** Its own inbox filter (contracts' inboxPermission of publicKey). */
  readonly inbox: string;
}

export interface NatsTlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** The material a secured nats-server and its clients need, written under one directory. */
export interface NatsSecurity {
  readonly tls: NatsTlsFiles;
  readonly identities: readonly NatsIdentity[];
  /** `<dir>/creds/<identity>.creds` by identity name. */
  readonly creds: ReadonlyMap<string, string>;
}

const q = (s: string): string => JSON.stringify(s);
const list = (xs: readonly string[]): string => `[${xs.map(q).join(', ')}]`;

/**
 * The server side of Dyad's bus security as nats-server configuration: TLS required (the server's
 * certificate), every client an NKey user with its subject permissions, nobody anonymous. It is
 * a block of top-level settings, so a cluster configuration appends it to each server's file.
 */
export function natsSecurityConfig(identities: readonly NatsIdentity[], tls: NatsTlsFiles): string {
  const users = identities.map((id) => {
    const p = id.permissions;
    return [
      `    # ${id.name}`,
      `    { nkey: ${q(id.publicKey)}, permissions: {`,
      `        publish: { allow: ${list(p.publish)} }`,
      `        subscribe: { allow: ${list([...p.subscribe, id.inbox])} }`,
      ...(p.allowResponses ? ['        allow_responses: true'] : []),
      '    } }',
    ].join('\n');
  });
  return [
    'tls {',
    `  cert_file: ${q(tls.certFile)}`,
    `  key_file: ${q(tls.keyFile)}`,
    `  ca_file: ${q(tls.caFile)}`,
    '  timeout: 5',
    '}',
    'authorization {',
    '  users: [',
    users.join('\n'),
    '  ]',
    '}',
    '',
  ].join('\n');
}

/** A credentials file: the identity's NKey seed in the block nats-server's tools use. */
export function credsFileText(seed: string): string {
  return [
    '-----BEGIN USER NKEY SEED-----',
    seed,
    '------END USER NKEY SEED------',
    '',
    '* NKey seeds are secrets: whoever holds this file is this identity on the bus.',
    '',
  ].join('\n');
}

export interface NatsSecurityRequest {
  /** Permissions by identity name (contracts' clusterIdentities). */
  readonly identities: ReadonlyMap<string, IdentityPermissions>;
  /** Builds an identity's inbox filter from its public key (contracts' inboxPermission). */
  readonly inbox: (publicKey: string) => string;
  /** Names and addresses the server certificate is valid for; default localhost, 127.0.0.1. */
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
}

/**
 * Writes a CA and a server certificate (openssl) to `<dir>/tls`, a fresh NKey per identity and
 * its `<dir>/creds/<identity>.creds` (mode 0600).
 */
export async function createNatsSecurity(
  dir: string,
  req: NatsSecurityRequest,
): Promise<NatsSecurity> {
  const tlsDir = join(dir, 'tls');
  const credsDir = join(dir, 'creds');
  mkdirSync(tlsDir, { recursive: true, mode: 0o700 });
  mkdirSync(credsDir, { recursive: true, mode: 0o700 });
  const ca = await createCa(tlsDir, 'dyad-nats-ca', 'ca');
  const server = await issueCert(tlsDir, ca, {
    name: 'nats-server',
    commonName: 'nats-server',
    usage: 'server',
    dnsNames: req.dnsNames ?? ['localhost'],
    ipAddresses: req.ipAddresses ?? ['127.0.0.1'],
  });
  const identities: NatsIdentity[] = [];
  const creds = new Map<string, string>();
  for (const [name, permissions] of req.identities) {
    const kp = nkeys.createUser();
    const publicKey = kp.getPublicKey();
    const path = join(credsDir, `${name}.creds`);
    writeFileSync(path, credsFileText(new TextDecoder().decode(kp.getSeed())), { mode: 0o600 });
    chmodSync(path, 0o600);
    creds.set(name, path);
    identities.push({ name, publicKey, permissions, inbox: req.inbox(publicKey) });
  }
  return {
    tls: { caFile: ca.certPath, certFile: server.certPath, keyFile: server.keyPath },
    identities,
    creds,
  };
}
