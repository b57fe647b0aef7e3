import { describe, expect, test } from 'vitest';
import {
  CodecError,
  encode,
  encodeIpcachePrefix,
  ipcacheCodec,
  policyCodec,
  policyKeys,
  portRangePrefixes,
} from '../src/index.ts';

describe('ipcache LPM keys', () => {
  test.each([
    ['198.18.0.0/15', 32 + 15, 'c6120000'],
    ['198.19.255.255/15', 32 + 15, 'c6120000'],
    ['198.18.1.11', 32 + 32, 'c612010b'],
    ['0.0.0.0/0', 32, '00000000'],
    ['198.18.1.200/25', 32 + 25, 'c6120180'],
  ])('IPv4 %s: prefixlen %i, masked address %s', (prefix, plen, hex) => {
    const k = encodeIpcachePrefix(prefix);
    expect(k.prefixlen).toBe(plen);
    expect(k.family).toBe(4);
    expect(Buffer.from(k.addr).toString('hex')).toBe(hex + '00'.repeat(12));
  });

  test.each([
    ['fd00::/8', 32 + 8, 'fd' + '00'.repeat(15)],
    ['fd00:18:1::11/128', 32 + 128, 'fd000018000100000000000000000011'],
    ['fd00:18:1:ffff::/57', 32 + 57, 'fd0000180001ff800000000000000000'],
    ['::/0', 32, '00'.repeat(16)],
  ])('IPv6 %s: prefixlen %i, masked address', (prefix, plen, hex) => {
    const k = encodeIpcachePrefix(prefix);
    expect(k.prefixlen).toBe(plen);
    expect(k.family).toBe(6);
    expect(Buffer.from(k.addr).toString('hex')).toBe(hex);
  });

  test('the key bytes: prefixlen, family tag, padding, address', () => {
    const b = encode(ipcacheCodec.key, { prefix: '198.18.1.0/24' });
    expect(b.toString('hex')).toBe('38000000' + '04000000' + 'c6120100' + '00'.repeat(12));
    expect(ipcacheCodec.key.decode(b, 0)).toEqual({ prefix: '198.18.1.0/24' });
  });

  test('ipcache value keeps the hosting node', () => {
    const v = { identity: 9, nodeId: 2, nodeAddress: 'fd00:19::2', flags: 0 };
    expect(ipcacheCodec.value.decode(encode(ipcacheCodec.value, v), 0)).toEqual(v);
    expect(
      ipcacheCodec.value.decode(
        encode(ipcacheCodec.value, { identity: 2, nodeId: 0, flags: 0 }),
        0,
      ),
    ).toEqual({ identity: 2, nodeId: 0, flags: 0 });
  });
});

describe('policy keys and port ranges', () => {
  function covered(blocks: Array<{ port: number; length: number }>): number[] {
    return blocks.flatMap((b) =>
      Array.from({ length: 1 << (16 - b.length) }, (_, i) => b.port + i),
    );
  }

  test.each([
    [80, 80],
    [9000, 9003],
    [1000, 2000],
    [1, 65534],
    [0, 65535],
    [32768, 61000],
  ])('range %i-%i is covered exactly by aligned blocks', (from, to) => {
    const blocks = portRangePrefixes(from, to);
    for (const b of blocks) expect(b.port % (1 << (16 - b.length))).toBe(0);
    const ports = covered(blocks);
    expect(ports.length).toBe(to - from + 1);
    expect(Math.min(...ports)).toBe(from);
    expect(Math.max(...ports)).toBe(to);
  });

  test('0-65535 is one any-port block and 9000-9003 is one /14 block', () => {
    expect(portRangePrefixes(0, 65535)).toEqual([{ port: 0, length: 0 }]);
    expect(portRangePrefixes(9000, 9003)).toEqual([{ port: 9000, length: 14 }]);
  });

  test('policy key bytes: prefixlen counts endpoint, identity, dir, proto and port bits', () => {
    const [k] = policyKeys({
      endpointId: 2,
      identity: 2001,
      direction: 'ingress',
      proto: 6,
      ports: 8080,
    });
    if (!k) throw new Error('no key');
    const b = encode(policyCodec.key, k);
    expect(b.toString('hex')).toBe('60000000' + '02000000' + 'd1070000' + '02' + '06' + '1f90');
    const [any, ...rest] = [
      ...policyKeys({ endpointId: 2, identity: 0, direction: 'egress' }),
      ...policyKeys({ endpointId: 2, identity: 5, direction: 'egress', proto: 17 }),
    ].map((key) => encode(policyCodec.key, key).readUInt32LE(0));
    expect([any, ...rest]).toEqual([72, 80]);
  });

  test('bad ranges and ports without a protocol are refused', () => {
    expect(() => portRangePrefixes(10, 9)).toThrow(CodecError);
    expect(() => portRangePrefixes(0, 70000)).toThrow(CodecError);
    expect(() =>
      policyKeys({ endpointId: 1, identity: 1, direction: 'ingress', ports: 80 }),
    ).toThrow(CodecError);
  });
});
