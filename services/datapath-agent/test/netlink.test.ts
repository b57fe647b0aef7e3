import { describe, expect, it } from 'vitest';
import {
  IFLA,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  NLMSG_ERROR,
  NLM_F_ACK_TLVS,
  VETH_INFO_PEER,
  addrBody,
  decodeAddress,
  decodeAttrs,
  decodeError,
  decodeLink,
  decodeMessages,
  encodeAttrs,
  formatIpBytes,
  ipBytes,
  newVethBody,
  nlmsg,
  routeBody,
  decodeRoute,
  RTNH_F_ONLINK,
  RTPROT_DYAD,
  u32,
  cstr,
} from '../src/netlink/message.ts';

describe('netlink encoding', () => {
  it('pads attributes to 4 bytes and nests them', () => {
    const b = encodeAttrs([
      { type: 3, value: cstr('eth0') }, // 5 bytes of value: len 9, padded to 12
      { type: 18, value: [{ type: 1, value: cstr('veth') }] },
    ]);
    expect(b.readUInt16LE(0)).toBe(9);
    expect(b.length % 4).toBe(0);
    const top = decodeAttrs(b);
    expect(top.get(3)?.toString()).toBe('eth0\0');
    expect(
      decodeAttrs(top.get(18) ?? Buffer.alloc(0))
        .get(1)
        ?.toString(),
    ).toBe('veth\0');
  });

  it('frames messages and reads several from one datagram', () => {
    const a = nlmsg(16, 5, 7, Buffer.alloc(16));
    const b = nlmsg(2, 0, 8, Buffer.alloc(20));
    const msgs = decodeMessages(Buffer.concat([a, b]));
    expect(msgs.map((m) => [m.type, m.flags, m.seq, m.payload.length])).toEqual([
      [16, 5, 7, 16],
      [2, 0, 8, 20],
    ]);
  });

  it('reads an error with the kernel extended-ack text', () => {
    const orig = nlmsg(16, 0, 1, Buffer.alloc(0));
    const payload = Buffer.concat([
      Buffer.from([0xef, 0xff, 0xff, 0xff]), // -17 EEXIST
      orig,
      encodeAttrs([{ type: 1, value: cstr('File exists') }]),
    ]);
    const e = decodeError({ type: NLMSG_ERROR, flags: NLM_F_ACK_TLVS, seq: 1, payload });
    expect(e).toEqual({ errno: 17, message: 'File exists' });
  });

  it('veth creation carries the peer name, MAC and netns fd inside the link info', () => {
    const body = newVethBody({
      name: 'dyhost',
      mac: '0e:01:02:03:04:05',
      mtu: 1500,
      peer: { name: 'eth0', mac: '0a:01:02:03:04:05', netnsFd: 42 },
    });
    const link = decodeLink(body);
    expect(link).toMatchObject({
      name: 'dyhost',
      mac: '0e:01:02:03:04:05',
      mtu: 1500,
      kind: 'veth',
    });
    const info = decodeAttrs(decodeAttrs(body, 16).get(IFLA.LINKINFO) ?? Buffer.alloc(0));
    expect(info.get(IFLA_INFO_KIND)?.toString()).toBe('veth\0');
    const peer = decodeAttrs(info.get(IFLA_INFO_DATA) ?? Buffer.alloc(0)).get(VETH_INFO_PEER);
    const peerAttrs = decodeAttrs(peer ?? Buffer.alloc(0), 16);
    expect(peerAttrs.get(IFLA.IFNAME)?.toString()).toBe('eth0\0');
    expect(peerAttrs.get(IFLA.NET_NS_FD)?.readUInt32LE(0)).toBe(42);
    // the peer cannot come up at creation (its own peer is not registered yet)
    expect((peer ?? Buffer.alloc(16)).readUInt32LE(8)).toBe(0);
  });

  it('addresses and routes round-trip through their decoders', () => {
    const a = decodeAddress(
      addrBody({ index: 3, address: 'fd00:d1ad::5', prefixLen: 128, nodad: true }),
    );
    expect(a).toMatchObject({ index: 3, address: 'fd00:d1ad::5', prefixLen: 128, family: 10 });
    expect(a.flags & 0x02).toBe(0x02);
    const r = decodeRoute(
      routeBody({ dst: '0.0.0.0', dstLen: 0, oif: 3, gateway: '198.18.1.1', onlink: true }),
    );
    expect(r).toMatchObject({
      family: 2,
      dstLen: 0,
      gateway: '198.18.1.1',
      oif: 3,
      protocol: RTPROT_DYAD,
    });
    expect(r.flags & RTNH_F_ONLINK).toBe(RTNH_F_ONLINK);
    expect(r.dst).toBeUndefined();
  });

  it('formats address bytes canonically', () => {
    expect(formatIpBytes(ipBytes('fd00:d1ad:0:0::5').bytes)).toBe('fd00:d1ad::5');
    expect(formatIpBytes(ipBytes('198.18.0.1').bytes)).toBe('198.18.0.1');
    expect(u32(0xffffffff).readUInt32LE(0)).toBe(0xffffffff);
  });
});
