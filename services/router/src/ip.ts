// Canonical address and prefix text, as the router keys its tables: @dyad/netaddr's parser and
// RFC 5952 formatter, the ones the datapath codecs use, so the router accepts what they accept.
import type { Family } from '@dyad/netaddr';
import {
  ADDRESS_BITS,
  AddressError,
  formatIp,
  formatPrefix,
  parsePrefixLenient,
  tryParseIp,
} from '@dyad/netaddr';

export function familyOf(text: string): Family | undefined {
  const slash = text.indexOf('/');
  const ip = tryParseIp(slash < 0 ? text : text.slice(0, slash));
  return ip?.family;
}

export function canonicalAddress(text: string): string | undefined {
  const ip = tryParseIp(text);
  return ip === undefined ? undefined : formatIp(ip.family, ip.bytes);
}

/** `addr/len` with the host bits cleared and the address in canonical form; a bare address is a host prefix. */
export function canonicalPrefix(text: string): string | undefined {
  try {
    return formatPrefix(parsePrefixLenient(text));
  } catch (err) {
    if (err instanceof AddressError) return undefined;
    throw err;
  }
}

/** The /32 or /128 prefix of one address, canonical. */
export function hostPrefix(text: string): string | undefined {
  const ip = tryParseIp(text);
  return ip === undefined
    ? undefined
    : `${formatIp(ip.family, ip.bytes)}/${ADDRESS_BITS[ip.family]}`;
}
