import { FamilySchema } from '@dyad/contracts';
import { z } from 'zod';
import { CniError } from '../errors.ts';
import {
  CONTAINER_ID_PATTERN,
  CNI_COMMANDS,
  CniCode,
  LATEST_VERSION,
  NETWORK_NAME_PATTERN,
  SUPPORTED_VERSIONS,
  compareVersions,
  interfaceNameProblem,
  isSupportedVersion,
} from './spec.ts';
import type { CniCommand, CniVersion } from './spec.ts';

/** What dyad-cni sends over the socket: the CNI_* environment and stdin, unchanged. */
export const Envelope = z.object({
  v: z.literal(1),
  env: z.record(z.string(), z.string()),
  stdin: z.string(),
});
export type Envelope = z.output<typeof Envelope>;

/** A CNI result as found in `prevResult`, any supported version (0.3+ layout). */
export const PrevResult = z.looseObject({
  cniVersion: z.string().optional(),
  interfaces: z
    .array(
      z.looseObject({
        name: z.string(),
        mac: z.string().optional(),
        sandbox: z.string().optional(),
      }),
    )
    .default([]),
  ips: z
    .array(
      z.looseObject({
        address: z.string(),
        gateway: z.string().optional(),
        interface: z.number().int().min(0).optional(),
      }),
    )
    .default([]),
  routes: z.array(z.looseObject({ dst: z.string(), gw: z.string().optional() })).default([]),
});
export type PrevResult = z.output<typeof PrevResult>;

/** The plugin configuration Dyad installs (one entry of its .conflist), as the runtime passes it. */
export const NetConf = z
  .looseObject({
    cniVersion: z.string(),
    name: z.string().regex(NETWORK_NAME_PATTERN, 'must be letters, digits, "_", "." or "-"'),
    type: z.string().min(1),
    /** Read by dyad-cni (C) to find the agent; the agent itself ignores it. */
    agentSocket: z.string().min(1).optional(),
    mtu: z.number().int().min(1280).max(65535).default(1500),
    /** Families to give pods on this network; default: every family IPAM enables. */
    ipFamilies: z
      .array(FamilySchema)
      .min(1)
      .max(2)
      .refine((f) => new Set(f).size === f.length, 'lists a family twice')
      .optional(),
    ipam: z.unknown().optional(),
    prevResult: z.unknown().optional(),
    'cni.dev/valid-attachments': z
      .array(z.looseObject({ containerID: z.string(), ifname: z.string() }))
      .optional(),
  })
  .refine((c) => c.ipam === undefined, {
    message: 'unsupported field "ipam": dyad-cni takes addresses from Dyad IPAM, remove it',
    path: ['ipam'],
  });
export type NetConf = z.output<typeof NetConf>;

export interface PodRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string;
}

export interface Attachment {
  readonly containerId: string;
  readonly ifName: string;
}

interface Base {
  readonly version: CniVersion;
  readonly conf: NetConf;
}

export interface AddRequest extends Base, Attachment {
  readonly command: 'ADD';
  readonly netns: string;
  readonly pod: PodRef;
  readonly prevResult?: PrevResult;
}
export interface DelRequest extends Base, Attachment {
  readonly command: 'DEL';
  readonly netns?: string;
  readonly pod?: PodRef;
}
export interface CheckRequest extends Base, Attachment {
  readonly command: 'CHECK';
  readonly netns: string;
  readonly prevResult?: PrevResult;
}
export interface GcRequest extends Base {
  readonly command: 'GC';
  /** Attachments the runtime still wants; everything else on this network may go. */
  readonly valid: readonly Attachment[];
}
export interface StatusRequest extends Base {
  readonly command: 'STATUS';
}
export interface VersionRequest {
  readonly command: 'VERSION';
  /** As given on stdin (echoed back), not necessarily one we support. */
  readonly version: string;
}
export type CniRequest =
  AddRequest | DelRequest | CheckRequest | GcRequest | StatusRequest | VersionRequest;

function issues(e: z.ZodError): string {
  return e.issues
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

/** `K=V;K2=V2` as the spec spells CNI_ARGS. */
export function parseCniArgs(raw: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (raw === undefined || raw === '') return out;
  for (const pair of raw.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0)
      throw new CniError(
        CniCode.invalidEnvironment,
        'invalid CNI_ARGS',
        `CNI_ARGS: "${pair}" is not KEY=VALUE`,
      );
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

function podFromArgs(args: Map<string, string>): PodRef | undefined {
  const namespace = args.get('K8S_POD_NAMESPACE');
  const name = args.get('K8S_POD_NAME');
  if (!namespace || !name) return undefined;
  const uid = args.get('K8S_POD_UID');
  return uid ? { namespace, name, uid } : { namespace, name };
}

function requireEnv(env: Record<string, string>, names: readonly string[]): void {
  const missing = names.filter((n) => !env[n]);
  if (missing.length > 0)
    throw new CniError(
      CniCode.invalidEnvironment,
      'missing environment variables',
      `required for ${env.CNI_COMMAND ?? '?'}: ${missing.join(', ')}`,
    );
}

function attachment(env: Record<string, string>): Attachment {
  const containerId = env.CNI_CONTAINERID ?? '';
  const ifName = env.CNI_IFNAME ?? '';
  if (!CONTAINER_ID_PATTERN.test(containerId))
    throw new CniError(
      CniCode.invalidEnvironment,
      'invalid CNI_CONTAINERID',
      `CNI_CONTAINERID "${containerId}" must be letters, digits, "_", "." or "-", starting with a letter or digit`,
    );
  const bad = interfaceNameProblem(ifName);
  if (bad !== undefined)
    throw new CniError(
      CniCode.invalidEnvironment,
      'invalid CNI_IFNAME',
      `CNI_IFNAME "${ifName}" ${bad}`,
    );
  return { containerId, ifName };
}

/**
 * Reads a forwarded call into a typed request, or throws the CniError the spec asks for:
 * environment problems 4, undecodable stdin 6, unknown version 1, bad configuration 7 (2 for a
 * field Dyad does not support).
 */
export function parseRequest(envelope: Envelope): CniRequest {
  const env = envelope.env;
  const command = env.CNI_COMMAND;
  if (command === undefined || !(CNI_COMMANDS as readonly string[]).includes(command))
    throw new CniError(
      CniCode.invalidEnvironment,
      'invalid CNI_COMMAND',
      `CNI_COMMAND "${command ?? ''}" is not one of ${CNI_COMMANDS.join(', ')}`,
    );
  const cmd = command as CniCommand;

  let json: unknown;
  try {
    json = JSON.parse(envelope.stdin);
  } catch (e) {
    throw new CniError(
      CniCode.decodeFailure,
      'cannot decode the network configuration',
      `stdin is not JSON: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new CniError(
      CniCode.decodeFailure,
      'cannot decode the network configuration',
      'stdin is not a JSON object',
    );
  const rawVersion = (json as { cniVersion?: unknown }).cniVersion;

  if (cmd === 'VERSION')
    return {
      command: 'VERSION',
      version: typeof rawVersion === 'string' ? rawVersion : LATEST_VERSION,
    };

  if (typeof rawVersion !== 'string')
    throw new CniError(
      CniCode.invalidConfig,
      'invalid network configuration',
      'cniVersion: missing',
    );
  if (!isSupportedVersion(rawVersion))
    throw new CniError(
      CniCode.incompatibleVersion,
      'incompatible CNI version',
      `cniVersion "${rawVersion}" is not supported; supported: ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  const version = rawVersion;
  if ((cmd === 'GC' || cmd === 'STATUS') && compareVersions(version, '1.1.0') < 0)
    throw new CniError(
      CniCode.incompatibleVersion,
      'incompatible CNI version',
      `${cmd} needs cniVersion 1.1.0 or later, got ${version}`,
    );
  if (cmd === 'CHECK' && compareVersions(version, '0.4.0') < 0)
    throw new CniError(
      CniCode.incompatibleVersion,
      'incompatible CNI version',
      `CHECK needs cniVersion 0.4.0 or later, got ${version}`,
    );

  const parsed = NetConf.safeParse(json);
  if (!parsed.success) {
    const unsupported = parsed.error.issues.some((i) => i.path[0] === 'ipam');
    throw new CniError(
      unsupported ? CniCode.unsupportedField : CniCode.invalidConfig,
      unsupported ? 'unsupported field in network configuration' : 'invalid network configuration',
      issues(parsed.error),
    );
  }
  const conf = parsed.data;

  let prevResult: PrevResult | undefined;
  if (conf.prevResult !== undefined && conf.prevResult !== null) {
    const p = PrevResult.safeParse(conf.prevResult);
    if (!p.success)
      throw new CniError(
        CniCode.invalidConfig,
        'invalid network configuration',
        `prevResult: ${issues(p.error)}`,
      );
    prevResult = p.data;
  }

  switch (cmd) {
    case 'ADD': {
      requireEnv(env, ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME']);
      const att = attachment(env);
      const pod = podFromArgs(parseCniArgs(env.CNI_ARGS));
      if (pod === undefined)
        throw new CniError(
          CniCode.invalidEnvironment,
          'invalid CNI_ARGS',
          'CNI_ARGS must name the pod: K8S_POD_NAMESPACE and K8S_POD_NAME',
        );
      return {
        command: 'ADD',
        version,
        conf,
        ...att,
        netns: env.CNI_NETNS ?? '',
        pod,
        ...(prevResult ? { prevResult } : {}),
      };
    }
    case 'DEL': {
      requireEnv(env, ['CNI_CONTAINERID', 'CNI_IFNAME']);
      const att = attachment(env);
      // DEL is best effort: an unreadable CNI_ARGS must not stop the cleanup.
      let pod: PodRef | undefined;
      try {
        pod = podFromArgs(parseCniArgs(env.CNI_ARGS));
      } catch {
        pod = undefined;
      }
      return {
        command: 'DEL',
        version,
        conf,
        ...att,
        ...(env.CNI_NETNS ? { netns: env.CNI_NETNS } : {}),
        ...(pod ? { pod } : {}),
      };
    }
    case 'CHECK': {
      requireEnv(env, ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME']);
      return {
        command: 'CHECK',
        version,
        conf,
        ...attachment(env),
        netns: env.CNI_NETNS ?? '',
        ...(prevResult ? { prevResult } : {}),
      };
    }
    case 'GC': {
      const valid = (conf['cni.dev/valid-attachments'] ?? []).map((a) => ({
        containerId: a.containerID,
        ifName: a.ifname,
      }));
      return { command: 'GC', version, conf, valid };
    }
    case 'STATUS':
      return { command: 'STATUS', version, conf };
  }
}

/** The version to write an error in: the request's when it could be read, else the latest. */
export function versionForError(envelope: Envelope | undefined): string {
  if (envelope === undefined) return LATEST_VERSION;
  try {
    const v = (JSON.parse(envelope.stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === 'string' && v.length > 0 && v.length < 32 ? v : LATEST_VERSION;
  } catch {
    return LATEST_VERSION;
  }
}
