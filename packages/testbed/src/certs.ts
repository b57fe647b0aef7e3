import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CommandError } from './errors.ts';

const execFileAsync = promisify(execFile);

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  try {
    await execFileAsync('openssl', args, { cwd });
  } catch (error) {
    const stderr =
      typeof error === 'object' && error !== null && 'stderr' in error
        ? String(error.stderr)
        : String(error);
    throw new CommandError(`openssl ${args[0] ?? ''}`, stderr.trim(), { cause: error });
  }
}

export interface KeyPair {
  certPath: string;
  keyPath: string;
}

export interface CertRequest {
  /** File stem: writes <name>.crt and <name>.key in dir. */
  name: string;
  commonName: string;
  organization?: string;
  /** 'server' for serving certs, 'client' for client auth. */
  usage: 'server' | 'client' | 'both';
  dnsNames?: readonly string[];
  ipAddresses?: readonly string[];
}

// ECDSA P-256: generated in milliseconds, accepted by every Kubernetes component and by etcd.
const KEY_ARGS = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
const DAYS = '2';

/** A self-signed CA written to <name>.crt and <name>.key in dir. */
export async function createCa(
  dir: string,
  commonName = 'dyad-testbed-ca',
  name = 'ca',
): Promise<KeyPair> {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  await openssl(
    [
      'req',
      '-x509',
      ...KEY_ARGS,
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      DAYS,
      '-subj',
      `/CN=${commonName}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
    ],
    dir,
  );
  return { certPath, keyPath };
}

export function subjectAltNames(
  dnsNames: readonly string[] = [],
  ipAddresses: readonly string[] = [],
): string {
  return [...dnsNames.map((d) => `DNS:${d}`), ...ipAddresses.map((ip) => `IP:${ip}`)].join(',');
}

export async function issueCert(dir: string, ca: KeyPair, request: CertRequest): Promise<KeyPair> {
  const certPath = join(dir, `${request.name}.crt`);
  const keyPath = join(dir, `${request.name}.key`);
  const csrPath = join(dir, `${request.name}.csr`);
  const extPath = join(dir, `${request.name}.ext`);
  const subject = `${request.organization ? `/O=${request.organization}` : ''}/CN=${request.commonName}`;
  const usages = { server: 'serverAuth', client: 'clientAuth', both: 'serverAuth,clientAuth' }[
    request.usage
  ];
  const sans = subjectAltNames(request.dnsNames, request.ipAddresses);
  const ext = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${usages}`,
    ...(sans ? [`subjectAltName=${sans}`] : []),
  ].join('\n');
  await writeFile(extPath, `${ext}\n`);
  await openssl(
    ['req', '-new', ...KEY_ARGS, '-keyout', keyPath, '-out', csrPath, '-subj', subject],
    dir,
  );
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      csrPath,
      '-CA',
      ca.certPath,
      '-CAkey',
      ca.keyPath,
      '-set_serial',
      `0x${randomBytes(8).toString('hex')}`,
      '-days',
      DAYS,
      '-extfile',
      extPath,
      '-out',
      certPath,
    ],
    dir,
  );
  return { certPath, keyPath };
}

export interface ServiceAccountKeys {
  privateKeyPath: string;
  publicKeyPath: string;
}

/** Key pair the apiserver signs service-account tokens with (and the controller-manager too). */
export async function createServiceAccountKeys(dir: string): Promise<ServiceAccountKeys> {
  const privateKeyPath = join(dir, 'sa.key');
  const publicKeyPath = join(dir, 'sa.pub');
  await openssl(
    ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', privateKeyPath],
    dir,
  );
  await openssl(['pkey', '-in', privateKeyPath, '-pubout', '-out', publicKeyPath], dir);
  return { privateKeyPath, publicKeyPath };
}
