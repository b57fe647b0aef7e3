/** CNI 1.1.0 constants Dyad relies on. */

/** Versions whose ADD result layout this plugin can write. cni/dyad-cni.c repeats this list for
 *  VERSION while the agent is down; a unit test keeps the two equal. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

export const LATEST_VERSION: CniVersion = '1.1.0';

export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

/** Spec error codes (1–99) and Dyad's own (100+). */
export const CniCode = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  notAvailable: 50,
  notAvailableDegraded: 51,
  /** Dyad: the node's address block (or the cluster pool) has no free address. */
  addressesExhausted: 100,
  /** Dyad: CNI_IFNAME already exists in the container's netns. */
  interfaceExists: 101,
  /** Dyad: CHECK found the endpoint different from what ADD made. */
  checkFailed: 102,
  /** Dyad: an unexpected failure inside the agent; details name it. */
  internal: 999,
} as const;
export type CniCode = (typeof CniCode)[keyof typeof CniCode];

/** Spec 1.1.0: container ids are alphanumeric plus `_`, `.`, `-`, starting alphanumeric. */
export const CONTAINER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** Network names follow the same rule. */
export const NETWORK_NAME_PATTERN = CONTAINER_ID_PATTERN;

/** Linux interface names: 1–15 bytes, no '/', ':' or white space, not '.' or '..'. */
export function interfaceNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (Buffer.byteLength(name) > 15) return 'is longer than 15 bytes';
  if (name === '.' || name === '..') return 'is "." or ".."';
  if (/[/:\s]/.test(name)) return 'contains "/", ":" or white space';
  return undefined;
}

/** Orders dotted versions numerically ("0.4.0" < "1.0.0"). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function isSupportedVersion(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}
