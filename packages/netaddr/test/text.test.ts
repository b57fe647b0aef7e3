import { describe, expect, test } from 'vitest';
import {
  AddressError,
  FamilyVersion,
  formatIp,
  ipFromBigInt,
  ipToBigInt,
  parseIp,
  tryParseIp,
} from '../src/index.ts';

describe('addresses', () => {
  test.each([
    ['198.18.0.1', '198.18.0.1'],
    ['fd00::1', 'fd00::1'],
    ['FD00:0:0:0:0:0:0:1', 'fd00::1'],
    ['fd00:1:0:0:1:0:0:1', 'fd00:1::1:0:0:1'],
    ['::', '::'],
    ['::ffff:198.18.0.1', '::ffff:c612:1'],
    ['fd00:1:2:3:4:5:6:7', 'fd00:1:2:3:4:5:6:7'],
  ])('%s formats as %s', (input, out) => {
    const ip = parseIp(input);
    expect(formatIp(ip.family, ip.bytes)).toBe(out);
  });

  test('garbage is refused', () => {
    expect(() => parseIp('198.18.0.256')).toThrow(AddressError);
    expect(() => parseIp('fd00:::1')).toThrow(AddressError);
  });
});

describe('the parser against references', () => {
  // deterministic PRNG so a failure reproduces
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };

  test('random IPv6 spellings format like the WHATWG URL serializer', () => {
    for (let t = 0; t < 3000; t++) {
      const g = Array.from({ length: 8 }, () => (rnd(3) === 0 ? 0 : rnd(0x10000)));
      let text = g.map((x) => (rnd(2) ? x.toString(16) : x.toString(16).toUpperCase())).join(':');
      if (rnd(2)) {
        // compress a random run of groups with '::'
        const a = rnd(8);
        const b = a + 1 + rnd(8 - a);
        const parts = g.map((x) => x.toString(16));
        text = `${parts.slice(0, a).join(':')}::${parts.slice(b).join(':')}`;
        for (let i = a; i < b; i++) g[i] = 0;
      }
      const ip = parseIp(text);
      const canonical = new URL(`http://[${text}]/`).hostname.slice(1, -1);
      expect(formatIp(ip.family, ip.bytes), text).toBe(canonical);
    }
  });

  test('acceptance matches node:net for near-miss strings', async () => {
    const { isIP } = await import('node:net');
    const samples = [
      '1.2.3.4',
      '01.2.3.4',
      '1.2.3',
      '1.2.3.4.5',
      '256.1.1.1',
      '1..2.3',
      '',
      ':',
      ':::',
      '1::2::3',
      '::1',
      '1::',
      '::',
      'fd00::1:2:3:4:5:6',
      'fd00:1:2:3:4:5:6:7:8',
      'fd00::12345',
      'g::1',
      '::ffff:1.2.3.4',
      '::1.2.3.4:5',
      '1:2:3:4:5:6:1.2.3.4',
      '1:2:3:4:5:6:7:1.2.3.4',
      'fd00:1:2:3:4:5:6::',
      '::fd00:1:2:3:4:5:6',
      ':1::2',
      '1::2:',
      '1.2.3.4 ',
      ' 1.2.3.4',
    ];
    for (const s of samples) {
      let ours: number;
      try {
        ours = FamilyVersion[parseIp(s).family];
      } catch {
        ours = 0;
      }
      expect(ours, JSON.stringify(s)).toBe(isIP(s));
    }
  });
});

describe('what is refused, and the integer view', () => {
  test('a zone index is not part of a pod or node address', () => {
    expect(() => parseIp('fe80::1%eth0')).toThrow(AddressError);
    expect(tryParseIp('fe80::1%eth0')).toBeUndefined();
    expect(tryParseIp('198.18.0.1')?.family).toBe('IPv4');
  });

  test.each([
    ['198.18.0.1', 0xc6120001n],
    ['0.0.0.0', 0n],
    ['255.255.255.255', 0xffffffffn],
    ['fd00::1', (0xfd00n << 112n) | 1n],
    ['::', 0n],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', (1n << 128n) - 1n],
  ])('%s is %s as an integer, and back', (text, value) => {
    const ip = parseIp(text);
    expect(ipToBigInt(ip)).toBe(value);
    const back = ipFromBigInt(ip.family, value);
    expect(formatIp(back.family, back.bytes)).toBe(text);
  });
});
