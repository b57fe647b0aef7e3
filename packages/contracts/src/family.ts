import { z } from 'zod';

/** An address family, spelled as Kubernetes spells it in `ipFamilies`. */
export const Family = { IPv4: 'IPv4', IPv6: 'IPv6' } as const;
export type Family = (typeof Family)[keyof typeof Family];
export const FamilySchema = z.enum([Family.IPv4, Family.IPv6]);

export const IpAddress = z.union([z.ipv4(), z.ipv6()]);
export const Cidr = z.union([z.cidrv4(), z.cidrv6()]);

/** An address and its family; the address must be of the family it says. */
export const FamilyAddress = z.discriminatedUnion('family', [
  z.object({ family: z.literal(Family.IPv4), address: z.ipv4() }),
  z.object({ family: z.literal(Family.IPv6), address: z.ipv6() }),
]);
