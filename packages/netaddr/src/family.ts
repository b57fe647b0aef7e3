/**
 * The one address-family vocabulary of Dyad; nothing else defines a family (a lint rule refuses a
 * local one, see eslint.config.js). A family is named by its wire tag, Kubernetes' spelling (a
 * Service's `ipFamilies`, an EndpointSlice's `addressType`), which every message carries.
 */
export const Family = { IPv4: 'IPv4', IPv6: 'IPv6' } as const;
export type Family = (typeof Family)[keyof typeof Family];

/** Both families, IPv4 first. */
export const FAMILIES: readonly Family[] = [Family.IPv4, Family.IPv6];

/**
 * The IP version of each family: the version field of its packets, and the datapath's tag of the
 * family in map keys and events (C `enum dy_family`; libbpf-ts's drift test compares the two).
 */
export const FamilyVersion = { IPv4: 4, IPv6: 6 } as const satisfies Record<Family, number>;
export type FamilyVersion = (typeof FamilyVersion)[Family];

/** Address bits per family. */
export const ADDRESS_BITS = { IPv4: 32, IPv6: 128 } as const satisfies Record<Family, number>;

/** The family whose version (datapath tag) is `version`; undefined for any other number. */
export function familyOfVersion(version: number): Family | undefined {
  return version === 4 ? Family.IPv4 : version === 6 ? Family.IPv6 : undefined;
}

export function isFamily(value: unknown): value is Family {
  return value === Family.IPv4 || value === Family.IPv6;
}
