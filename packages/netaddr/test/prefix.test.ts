import { describe, expect, test } from 'vitest';
import {
  AddressError,
  formatPrefix,
  parsePrefixInto,
  parsePrefixLenient,
  parsePrefixStrict,
  prefixContains,
} from '../src/index.ts';

const strict = (t: string) => formatPrefix(parsePrefixStrict(t));
const lenient = (t: string) => formatPrefix(parsePrefixLenient(t));

describe('parsePrefixStrict', () => {
  test.each([
    ['198.18.0.0/15', '198.18.0.0/15'],
    ['198.18.4.0/24', '198.18.4.0/24'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['198.18.0.7/32', '198.18.0.7/32'],
    ['fd00::/8', 'fd00::/8'],
    ['FD00:0018:0::/48', 'fd00:18::/48'],
    ['::/0', '::/0'],
    ['fd00::7/128', 'fd00::7/128'],
    ['fd00:0:0:1::/64', 'fd00:0:0:1::/64'],
  ])('%s reads as %s', (text, out) => {
    expect(strict(text)).toBe(out);
  });

  test.each([
    ['198.18.0.1/16', "'198.18.0.1/16' has host bits set (the network is 198.18.0.0/16)"],
    ['198.19.0.0/15', "'198.19.0.0/15' has host bits set (the network is 198.18.0.0/15)"],
    ['fd00::1/64', "'fd00::1/64' has host bits set (the network is fd00::/64)"],
    ['fd00:0:0:0:8000::/64', "'fd00:0:0:0:8000::/64' has host bits set (the network is fd00::/64)"],
    ['1.0.0.0/0', "'1.0.0.0/0' has host bits set (the network is 0.0.0.0/0)"],
    ['198.18.0.0', "'198.18.0.0' is not a CIDR (no /prefix)"],
    ['fd00::', "'fd00::' is not a CIDR (no /prefix)"],
    ['198.18.0.0/33', "'198.18.0.0/33' has a prefix longer than 32 bits"],
    ['fd00::/129', "'fd00::/129' has a prefix longer than 128 bits"],
    ['198.18.0.0/', "'198.18.0.0/' is not a CIDR"],
    ['198.18.0.0/016', "'198.18.0.0/016' is not a CIDR"],
    ['198.18.0.0/-1', "'198.18.0.0/-1' is not a CIDR"],
    ['198.18.0.0/1a', "'198.18.0.0/1a' is not a CIDR"],
    ['198.18.0/15', "'198.18.0/15' is not a CIDR"],
    ['fd00:::/8', "'fd00:::/8' is not a CIDR"],
    ['fd00::%eth0/64', "'fd00::%eth0/64' is not a CIDR"],
    ['198.18.0.0/15/1', "'198.18.0.0/15/1' is not a CIDR"],
    ['', "'' is not a CIDR (no /prefix)"],
  ])('%s is refused', (text, message) => {
    expect(() => parsePrefixStrict(text)).toThrow(new AddressError(message));
  });
});

describe('parsePrefixLenient', () => {
  test.each([
    ['198.18.0.0/15', '198.18.0.0/15'],
    ['198.18.1.77/24', '198.18.1.0/24'],
    ['198.19.255.255/15', '198.18.0.0/15'],
    ['198.18.1.7', '198.18.1.7/32'],
    ['255.255.255.255/0', '0.0.0.0/0'],
    ['FD00:0018:0::1/48', 'fd00:18::/48'],
    ['fd00::1', 'fd00::1/128'],
    ['fd00:0:0:0:ffff::/65', 'fd00::8000:0:0:0/65'],
    ['ffff::/0', '::/0'],
  ])('%s reads as %s', (text, out) => {
    expect(lenient(text)).toBe(out);
  });

  test.each([
    '198.18.0.0/33',
    'fd00::/129',
    '198.18.0.0/',
    '198.18.0.0/016',
    '198.18.0/15',
    'fd00:::1',
    'not/8',
    '',
  ])('%s is refused', (text) => {
    expect(() => parsePrefixLenient(text)).toThrow(AddressError);
  });

  test('the batch form writes the masked network at an offset and packs family and length', () => {
    const out = new Uint8Array(20).fill(0xee);
    expect(parsePrefixInto('fd00::ff/120', out, 4)).toBe((6 << 8) | 120);
    expect(out.subarray(0, 4)).toEqual(new Uint8Array(4).fill(0xee));
    expect(formatPrefix({ family: 'IPv6', bytes: out.subarray(4), length: 120 })).toBe(
      'fd00::/120',
    );
    expect(parsePrefixInto('198.18.3.9/16', out, 4)).toBe((4 << 8) | 16);
    expect(Array.from(out.subarray(4))).toEqual([198, 18, ...new Array<number>(14).fill(0)]);
  });
});

describe('prefixContains', () => {
  test.each([
    ['198.18.1.0/24', '198.18.1.255', true],
    ['198.18.1.0/24', '198.18.2.0', false],
    ['fd00:1::100/120', 'fd00:1::1ff', true],
    ['fd00:1::100/120', 'fd00:1::200', false],
    // another family, or text that does not parse: never contained
    ['198.18.1.0/24', 'fd00:1::1', false],
    ['198.18.1.0/24', '198.18.1.256', false],
    ['not-a-prefix', '198.18.1.1', false],
  ])('%s holds %s: %s', (prefix, address, holds) => {
    expect(prefixContains(prefix, address)).toBe(holds);
  });
});
