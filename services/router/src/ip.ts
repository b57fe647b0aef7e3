// Canonical address and prefix text, as the router keys its tables: @dyad/netaddr's parser and
// RFC 5952 formatter, the ones the datapath codecs use. node:net decides what is an address, so
// the router accepts what Node does.
import { isIP } from 'node:net';
import type { Family } from '@dyad/contracts';
import { formatIp, formatPrefix, parseIp, parsePrefix } from '@dyad/netaddr';
import type { IpBytes } from '@dyad/netaddr';

/** 4 or 6 for the address part of `addr` or `addr/len`, 0 when it is not an address. */
function ipVersion(text: string): number {
  const slash = text.indexOf('/');
  return isIP(slash < 0 ? text : text.slice(0, slash));
}

/** The codec throws on what it cannot parse; here that is simply "not an address". */
function attempt<T>(text: string, parse: () => T): T | undefined {
  if (ipVersion(text) === 0) return undefined;
  try {
    return parse();
  } catch {
    return undefined;
  }
}

function address(text: string): IpBytes | undefined {
  return text.includes('/') ? undefined : attempt(text, () => parseIp(text));
}

export function familyOf(text: string): Family | undefined {
  const v = ipVersion(text);
  return v === 4 ? 'IPv4' : v === 6 ? 'IPv6' : undefined;
}

export function canonicalAddress(text: string): string | undefined {
  const p = address(text);
  return p === undefined ? undefined : formatIp(p.family, p.bytes);
}

/** `addr/len` with the host bits cleared and the address in canonical form; a bare address is a host prefix. */
export function canonicalPrefix(text: string): string | undefined {
  return attempt(text, () => formatPrefix(parsePrefix(text)));
}

/** The /32 or /128 prefix of one address, canonical. */
export function hostPrefix(text: string): string | undefined {
  const p = address(text);
  return p === undefined
    ? undefined
    : `${formatIp(p.family, p.bytes)}/${p.family === 4 ? 32 : 128}`;
}
