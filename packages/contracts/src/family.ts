import {
  AddressError,
  Family,
  parsePrefixLenient,
  parsePrefixStrict,
  tryParseIp,
} from '@dyad/netaddr';
import type { Prefix } from '@dyad/netaddr';
import { z } from 'zod';

/** An address family on the wire: netaddr's `Family`, spelled as Kubernetes spells it. */
export const FamilySchema = z.enum([Family.IPv4, Family.IPv6]);

// Address and prefix schemas read text with @dyad/netaddr, the parser every service and the
// datapath codecs use, so a message the schema accepts is one they can read. `format` keeps the
// JSON Schema documents saying what the text is.

function address(family: Family | undefined, format: string) {
  const what = family === undefined ? 'an IP address' : `an ${family} address`;
  return z
    .string()
    .refine(
      (text) => {
        const ip = tryParseIp(text);
        return ip !== undefined && (family === undefined || ip.family === family);
      },
      { message: `not ${what}` },
    )
    .meta({ format });
}

/** The reason `parse` refuses `text` (or that it is of the other family); undefined if it reads. */
export function prefixProblem(
  text: string,
  parse: (text: string) => Prefix,
  family?: Family,
): string | undefined {
  try {
    const p = parse(text);
    return family === undefined || p.family === family
      ? undefined
      : `'${text}' is not an ${family} CIDR`;
  } catch (err) {
    if (err instanceof AddressError) return err.message;
    throw err;
  }
}

function prefix(parse: (text: string) => Prefix, family: Family | undefined, format: string) {
  return z
    .string()
    .superRefine((text, ctx) => {
      const problem = prefixProblem(text, parse, family);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
    })
    .meta({ format });
}

export const IpAddress = address(undefined, 'ip');
export const Ipv4Address = address(Family.IPv4, 'ipv4');
export const Ipv6Address = address(Family.IPv6, 'ipv6');

/** A prefix as Dyad writes it: `addr/len` with no host bits (netaddr's strict parser). */
export const Cidr = prefix(parsePrefixStrict, undefined, 'cidr');
export const Cidr4 = prefix(parsePrefixStrict, Family.IPv4, 'cidrv4');
export const Cidr6 = prefix(parsePrefixStrict, Family.IPv6, 'cidrv6');
/** A prefix as Kubernetes reads a NetworkPolicy's ipBlock: host bits are masked, not refused. */
export const LenientCidr = prefix(parsePrefixLenient, undefined, 'cidr');

/** An address and its family; the address must be of the family it says. */
export const FamilyAddress = z.discriminatedUnion('family', [
  z.object({ family: z.literal(Family.IPv4), address: Ipv4Address }),
  z.object({ family: z.literal(Family.IPv6), address: Ipv6Address }),
]);
