export { AddressError } from './errors.ts';
export {
  formatIp,
  formatMac,
  parseIp,
  parseIpInto,
  parseMac,
  parseMacInto,
  tryParseIp,
} from './text.ts';
export type { IpBytes } from './text.ts';
export {
  ADDRESS_BITS,
  FAMILIES,
  Family,
  FamilyVersion,
  familyOfVersion,
  isFamily,
} from './family.ts';
export {
  formatPrefix,
  maskBytes,
  maskInPlace,
  parsePrefixInto,
  parsePrefixLenient,
  parsePrefixStrict,
  prefixContains,
} from './prefix.ts';
export type { Prefix } from './prefix.ts';
export { ipFromBigInt, ipToBigInt } from './int.ts';
