import { Family } from '@dyad/netaddr';
import { describe, expect, test } from 'vitest';
import {
  CodecError,
  conntrackCodec,
  endpointInfoCodec,
  endpointInfoLayout,
  endpointInfoToStruct,
  endpointKeyCodec,
  endpointKeyLayout,
  endpointKeyToStruct,
  ipcacheInfoCodec,
  ipcacheInfoLayout,
  ipcacheInfoToStruct,
  ipcacheKeyCodec,
  ipcacheKeyLayout,
  ipcacheKeyToStruct,
  datapathLayouts,
  decodeDatapathEvent,
  eventCodec,
  defineLayout,
  encode,
  endpointsCodec,
  eventLayout,
  metricsCodec,
  POLICY_CLASS_BASE,
  policyCidrCodec,
  structCodec,
  validateLayout,
} from '../src/index.ts';

describe('struct codec', () => {
  const layout = defineLayout('t', 16, [
    { name: 'a', offset: 0, kind: 'u8' },
    { name: 'pad', offset: 1, kind: 'pad', length: 1 },
    { name: 'port', offset: 2, kind: 'be16' },
    { name: 'n', offset: 4, kind: 'u32' },
    { name: 'big', offset: 8, kind: 'u64' },
  ] as const);
  const codec = structCodec(layout);

  test('writes each field at its declared offset, in its byte order, with zeroed padding', () => {
    const buf = Buffer.alloc(16, 0xee);
    codec.encodeInto({ a: 1, port: 0x1f90, n: 0x01020304, big: 0x0a0b0c0d0e0f1011n }, buf, 0);
    expect(buf.toString('hex')).toBe('01001f90' + '04030201' + '11100f0e0d0c0b0a');
    expect(codec.decode(buf, 0)).toEqual({
      a: 1,
      port: 8080,
      n: 0x01020304,
      big: 0x0a0b0c0d0e0f1011n,
    });
  });

  test('rejects out-of-range and wrongly typed values', () => {
    expect(() => encode(codec, { a: 256, port: 0, n: 0, big: 0n })).toThrow(CodecError);
    expect(() => encode(codec, { a: 0, port: -1, n: 0, big: 0n })).toThrow(CodecError);
    expect(() => encode(codec, { a: 0, port: 0, n: 1.5, big: 0n })).toThrow(CodecError);
  });

  test('a layout with an undeclared gap or a short tail is refused', () => {
    expect(() =>
      validateLayout({
        cName: 'g',
        size: 8,
        fields: [
          { name: 'a', offset: 0, kind: 'u8' },
          { name: 'b', offset: 4, kind: 'u32' },
        ],
      }),
    ).toThrow(/gap/);
    expect(() =>
      validateLayout({ cName: 's', size: 8, fields: [{ name: 'a', offset: 0, kind: 'u32' }] }),
    ).toThrow(/cover/);
  });

  test('every datapath layout is fully declared', () => {
    for (const l of datapathLayouts) expect(() => validateLayout(l)).not.toThrow();
  });
});

describe('datapath codecs', () => {
  test('endpoint key: IPv4 in the first 4 bytes, family tag at 16, rest zero', () => {
    const k = encode(endpointsCodec.key, { address: '198.18.1.11' });
    expect(k.toString('hex')).toBe('c612010b' + '00'.repeat(12) + '04000000');
    const k6 = encode(endpointsCodec.key, { address: 'fd00:18:1::11' });
    expect(k6.toString('hex')).toBe('fd000018000100000000000000000011' + '06000000');
    expect(endpointsCodec.key.decode(k6, 0)).toEqual({ address: 'fd00:18:1::11' });
  });

  test('endpoint info round-trips', () => {
    const v = {
      ifindex: 7,
      endpointId: 3,
      identity: 1001,
      flags: 3,
      mac: '02:aa:bb:cc:dd:ee',
      nodeMac: '02:11:22:33:44:55',
    };
    expect(endpointsCodec.value.decode(encode(endpointsCodec.value, v), 0)).toEqual(v);
  });

  test('conntrack key keeps ports in network order and the direction tag', () => {
    const k = {
      src: '198.18.1.11',
      dst: '198.18.1.12',
      sport: 40000,
      dport: 8080,
      proto: 6,
      direction: 'ingress' as const,
    };
    const b = encode(conntrackCodec.key, k);
    expect(b.subarray(32, 40).toString('hex')).toBe('9c401f90' + '06040200');
    expect(conntrackCodec.key.decode(b, 0)).toEqual(k);
  });

  test('policy CIDR key: prefixlen counts the 64 bits before the address, the address is masked', () => {
    const k = { endpointId: 7, direction: 'egress' as const, prefix: '198.18.4.0/22' };
    const b = encode(policyCidrCodec.key, { ...k, prefix: '198.18.5.9/22' });
    expect(b.toString('hex')).toBe(
      '56000000' + '07000000' + '01040000' + 'c6120400' + '00'.repeat(12),
    );
    expect(policyCidrCodec.key.decode(b, 0)).toEqual(k);
    const k6 = { endpointId: 7, direction: 'ingress' as const, prefix: 'fd00:18::/32' };
    const b6 = encode(policyCidrCodec.key, k6);
    expect(b6.readUInt32LE(0)).toBe(64 + 32);
    expect(b6.subarray(8, 10).toString('hex')).toBe('0206');
    expect(policyCidrCodec.key.decode(b6, 0)).toEqual(k6);
  });

  test('policy CIDR value: a class id, never below the class base', () => {
    const v = { classId: POLICY_CLASS_BASE + 3 };
    expect(policyCidrCodec.value.decode(encode(policyCidrCodec.value, v), 0)).toEqual(v);
    expect(() => encode(policyCidrCodec.value, { classId: 0xffffff })).toThrow(CodecError);
  });

  test('metrics key is reason, direction, family', () => {
    expect(encode(metricsCodec.key, { reason: 10, direction: 2, family: 6 }).toString('hex')).toBe(
      '0a020600',
    );
  });

  test('a drop event decodes addresses, ports and names', () => {
    const b = Buffer.alloc(eventLayout.size);
    b.writeBigUInt64LE(5n, 0);
    b.writeUInt32LE(9, 8);
    b.writeUInt32LE(2001, 12);
    b.writeUInt32LE(1002, 16);
    b.writeUInt16BE(0, 20);
    b.writeUInt16BE(128, 22);
    b.set([1, 10, 6, 58, 2], 24);
    b.set(Buffer.from('fd000018000100000000000000000011', 'hex'), 32);
    b.set(Buffer.from('fd000018000100000000000000000012', 'hex'), 48);
    expect(decodeDatapathEvent(b)).toMatchObject({
      type: 'drop',
      reasonName: 'DROP_POLICY',
      family: Family.IPv6,
      src: 'fd00:18:1::11',
      dst: 'fd00:18:1::12',
      dport: 128,
      proto: 58,
      direction: 'ingress',
      ifindex: 9,
      srcIdentity: 2001,
      dstIdentity: 1002,
      tcpFlags: 0,
      isReply: false,
    });
  });

  test('the fast event decoder agrees with the struct codec on random records', () => {
    for (let i = 0; i < 200; i++) {
      const b = Buffer.from(
        Array.from({ length: eventLayout.size }, () => Math.floor(Math.random() * 256)),
      );
      b[26] = i % 2 === 0 ? 4 : 6;
      expect(decodeDatapathEvent(b)).toEqual(eventCodec.decode(b, 0));
    }
  });

  test('a TCP event carries the flags byte and the reply bit', () => {
    const b = Buffer.alloc(eventLayout.size);
    b.set([2, 3, 4, 6, 1, 0x12, 1], 24);
    expect(decodeDatapathEvent(b)).toMatchObject({
      type: 'trace',
      proto: 6,
      tcpFlags: 0x12,
      isReply: true,
    });
  });
});

describe('hand-written datapath encoders agree with their layouts', () => {
  let seed = 99;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const v4 = () => `198.${18 + rnd(2)}.${rnd(256)}.${rnd(256)}`;
  const v6 = () =>
    `fd00:${rnd(0x10000).toString(16)}::${rnd(0x10000).toString(16)}:${rnd(0x10000).toString(16)}`;
  const mac = () =>
    Array.from({ length: 6 }, () => rnd(256).toString(16).padStart(2, '0')).join(':');

  test('endpoints and ipcache: fast encoder bytes equal the generic layout codec bytes', () => {
    for (let i = 0; i < 500; i++) {
      const address = i % 2 ? v4() : v6();
      const ek = { address };
      expect(encode(endpointKeyCodec, ek)).toEqual(
        encode(structCodec(endpointKeyLayout), endpointKeyToStruct(ek)),
      );
      const ei = {
        ifindex: rnd(1e6),
        endpointId: rnd(65536),
        identity: rnd(2 ** 31),
        flags: rnd(4),
        mac: mac(),
        nodeMac: mac(),
      };
      expect(encode(endpointInfoCodec, ei)).toEqual(
        encode(structCodec(endpointInfoLayout), endpointInfoToStruct(ei)),
      );
      const ik = { prefix: `${address}/${rnd(i % 2 ? 33 : 129)}` };
      expect(encode(ipcacheKeyCodec, ik)).toEqual(
        encode(structCodec(ipcacheKeyLayout), ipcacheKeyToStruct(ik)),
      );
      const ii = {
        identity: rnd(2 ** 31),
        nodeId: rnd(100),
        flags: rnd(2),
        ...(rnd(2) ? { nodeAddress: i % 3 ? v4() : v6() } : {}),
      };
      expect(encode(ipcacheInfoCodec, ii)).toEqual(
        encode(structCodec(ipcacheInfoLayout), ipcacheInfoToStruct(ii)),
      );
      expect(ipcacheInfoCodec.decode(encode(ipcacheInfoCodec, ii), 0)).toEqual(ii);
      expect(endpointInfoCodec.decode(encode(endpointInfoCodec, ei), 0)).toEqual(ei);
    }
  });

  test('fast encoders overwrite stale bytes in reused buffers', () => {
    const buf = Buffer.alloc(endpointKeyLayout.size, 0xff);
    endpointKeyCodec.encodeInto({ address: '198.18.0.1' }, buf, 0);
    expect(buf).toEqual(encode(endpointKeyCodec, { address: '198.18.0.1' }));
    const ib = Buffer.alloc(ipcacheInfoLayout.size, 0xff);
    ipcacheInfoCodec.encodeInto({ identity: 1, nodeId: 2, flags: 0 }, ib, 0);
    expect(ib).toEqual(encode(ipcacheInfoCodec, { identity: 1, nodeId: 2, flags: 0 }));
  });
});
