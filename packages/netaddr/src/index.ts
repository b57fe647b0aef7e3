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
export type { IpBytes, IpFamily } from './text.ts';
export {
  formatPrefix,
  maskBytes,
  maskInPlace,
  parsePrefixInto,
  parsePrefixLenient,
  parsePrefixStrict,
} from './prefix.ts';
export type { Prefix } from './prefix.ts';
export { ADDRESS_BITS, ipFromBigInt, ipToBigInt } from './int.ts';
