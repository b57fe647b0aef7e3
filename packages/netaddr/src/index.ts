export { AddressError } from './errors.ts';
export {
  formatIp,
  formatMac,
  formatPrefix,
  maskBytes,
  maskInPlace,
  parseIp,
  parseIpInto,
  parseMac,
  parseMacInto,
  parsePrefix,
  parsePrefixInto,
  tryParseIp,
} from './text.ts';
export type { IpBytes, IpFamily, IpPrefix } from './text.ts';
export { ADDRESS_BITS, ipFromBigInt, ipToBigInt } from './int.ts';
