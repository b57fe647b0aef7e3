import { describe, expect, it } from 'vitest';
import { handleCni } from '../src/cni/handler.ts';
import type { CniBackend } from '../src/cni/handler.ts';
import type { AddRequest, CheckRequest, DelRequest, GcRequest } from '../src/cni/request.ts';
import { parseCniArgs } from '../src/cni/request.ts';
import { buildResult } from '../src/cni/result.ts';
import { CniCode, SUPPORTED_VERSIONS } from '../src/cni/spec.ts';
import type { Endpoint } from '../src/endpoint.ts';
import { endpointMacs, hostIfName, nextEndpointId } from '../src/endpoint.ts';
import { CniError } from '../src/errors.ts';

const endpoint: Endpoint = {
  containerId: 'c1',
  ifName: 'eth0',
  network: 'dyad',
  netns: '/run/netns/p1',
  pod: { namespace: 'ns', name: 'p1' },
  endpointId: 1,
  ipv4: { address: '198.18.1.5', cidr: '198.18.1.0/24', gateway: '198.18.1.1' },
  ipv6: { address: 'fd00:d1ad::5', cidr: 'fd00:d1ad::/120', gateway: 'fd00:d1ad::1' },
  mac: '0a:00:00:00:00:01',
  hostIfName: 'dyabc',
  hostIfindex: 7,
  hostMac: '0e:00:00:00:00:01',
  mtu: 1500,
  identity: 3,
  flags: 0,
  createdAt: '2025-01-01T00:00:00.000Z',
};

class FakeBackend implements CniBackend {
  calls: Array<{ cmd: string; req: unknown }> = [];
  ready = true;
  failWith: Error | undefined;
  add(req: AddRequest): Promise<Endpoint> {
    this.calls.push({ cmd: 'ADD', req });
    return this.failWith ? Promise.reject(this.failWith) : Promise.resolve(endpoint);
  }
  del(req: DelRequest): Promise<void> {
    this.calls.push({ cmd: 'DEL', req });
    return this.failWith ? Promise.reject(this.failWith) : Promise.resolve();
  }
  check(req: CheckRequest): Promise<void> {
    this.calls.push({ cmd: 'CHECK', req });
    return this.failWith ? Promise.reject(this.failWith) : Promise.resolve();
  }
  gc(req: GcRequest): Promise<void> {
    this.calls.push({ cmd: 'GC', req });
    return Promise.resolve();
  }
  status() {
    return { ready: this.ready, details: this.ready ? 'ok' : 'restoring endpoints' };
  }
}

const conf = { cniVersion: '1.1.0', name: 'dyad', type: 'dyad-cni' };
const env = {
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'c1',
  CNI_NETNS: '/run/netns/p1',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p1;K8S_POD_UID=u1',
  CNI_PATH: '/opt/cni/bin',
};

function call(e: Record<string, string>, stdin: unknown, b = new FakeBackend()) {
  const raw = JSON.stringify({
    v: 1,
    env: e,
    stdin: typeof stdin === 'string' ? stdin : JSON.stringify(stdin),
  });
  return handleCni(raw, b);
}

function parsed(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe('CNI ADD', () => {
  it('passes the attachment, netns and pod to the backend and prints the result', async () => {
    const b = new FakeBackend();
    const r = await call(env, conf, b);
    expect(r.exitCode).toBe(0);
    expect(b.calls[0]?.req).toMatchObject({
      command: 'ADD',
      containerId: 'c1',
      ifName: 'eth0',
      netns: '/run/netns/p1',
      pod: { namespace: 'ns', name: 'p1', uid: 'u1' },
      version: '1.1.0',
    });
    const res = parsed(r.stdout);
    expect(res).toEqual({
      cniVersion: '1.1.0',
      interfaces: [
        { name: 'dyabc', mac: '0e:00:00:00:00:01', mtu: 1500 },
        { name: 'eth0', mac: '0a:00:00:00:00:01', mtu: 1500, sandbox: '/run/netns/p1' },
      ],
      ips: [
        { address: '198.18.1.5/32', gateway: '198.18.1.1', interface: 1 },
        { address: 'fd00:d1ad::5/128', gateway: 'fd00:d1ad::1', interface: 1 },
      ],
      routes: [
        { dst: '0.0.0.0/0', gw: '198.18.1.1' },
        { dst: '::/0', gw: 'fd00:d1ad::1' },
      ],
      dns: {},
    });
  });

  it('writes the 0.4.0 layout (ip versions, no mtu) when asked in 0.4.0', () => {
    const r = buildResult('0.4.0', endpoint);
    expect(r.ips[0]).toEqual({
      version: '4',
      address: '198.18.1.5/32',
      gateway: '198.18.1.1',
      interface: 1,
    });
    expect(r.interfaces[0]).not.toHaveProperty('mtu');
  });

  it('a single-family endpoint gives one ip and one route', () => {
    const v4only: Endpoint = { ...endpoint };
    delete (v4only as { ipv6?: unknown }).ipv6;
    const r = buildResult('1.1.0', v4only);
    expect(r.ips).toHaveLength(1);
    expect(r.routes).toEqual([{ dst: '0.0.0.0/0', gw: '198.18.1.1' }]);
  });

  it('keeps a prevResult and appends its own entries after it', () => {
    const prev = {
      interfaces: [{ name: 'lo0' }],
      ips: [{ address: '198.19.0.9/32', interface: 0 }],
      routes: [],
    };
    const r = buildResult('1.1.0', endpoint, prev);
    expect(r.interfaces.map((i) => i.name)).toEqual(['lo0', 'dyabc', 'eth0']);
    expect(r.ips.map((i) => i.interface)).toEqual([0, 2, 2]);
  });

  it('refuses ADD while the agent is restoring with code 11 from the backend', async () => {
    const b = new FakeBackend();
    b.failWith = new CniError(CniCode.tryAgainLater, 'dyad agent not ready', 'restoring');
    const r = await call(env, conf, b);
    expect(r.exitCode).not.toBe(0);
    expect(parsed(r.stdout)).toEqual({
      cniVersion: '1.1.0',
      code: 11,
      msg: 'dyad agent not ready',
      details: 'restoring',
    });
  });

  it('an unexpected backend failure is code 999 naming the error', async () => {
    const b = new FakeBackend();
    b.failWith = new TypeError('boom');
    const r = parsed((await call(env, conf, b)).stdout);
    expect(r.code).toBe(CniCode.internal);
    expect(r.details).toContain('TypeError: boom');
  });
});

describe('bad input', () => {
  it.each([
    ['malformed stdin JSON', env, '{"cniVersion": "1.1.0",', CniCode.decodeFailure, 'not JSON'],
    ['stdin that is not an object', env, '[1,2]', CniCode.decodeFailure, 'not a JSON object'],
    [
      'an unknown cniVersion',
      env,
      { ...conf, cniVersion: '9.9.9' },
      CniCode.incompatibleVersion,
      '"9.9.9"',
    ],
    [
      'a missing CNI_NETNS',
      { ...env, CNI_NETNS: '' },
      conf,
      CniCode.invalidEnvironment,
      'CNI_NETNS',
    ],
    [
      'a missing CNI_CONTAINERID',
      { ...env, CNI_CONTAINERID: '' },
      conf,
      CniCode.invalidEnvironment,
      'CNI_CONTAINERID',
    ],
    [
      'a bad container id',
      { ...env, CNI_CONTAINERID: '-x/y' },
      conf,
      CniCode.invalidEnvironment,
      'CNI_CONTAINERID',
    ],
    [
      'an interface name too long',
      { ...env, CNI_IFNAME: 'a-very-long-ifname' },
      conf,
      CniCode.invalidEnvironment,
      'CNI_IFNAME',
    ],
    [
      'an unknown command',
      { ...env, CNI_COMMAND: 'FROB' },
      conf,
      CniCode.invalidEnvironment,
      'FROB',
    ],
    [
      'CNI_ARGS without the pod',
      { ...env, CNI_ARGS: 'IgnoreUnknown=1' },
      conf,
      CniCode.invalidEnvironment,
      'K8S_POD_NAME',
    ],
    [
      'unparsable CNI_ARGS',
      { ...env, CNI_ARGS: 'novalue' },
      conf,
      CniCode.invalidEnvironment,
      'novalue',
    ],
    ['a bad mtu', env, { ...conf, mtu: 'big' }, CniCode.invalidConfig, 'mtu'],
    [
      'an unknown family',
      env,
      { ...conf, ipFamilies: ['IPv5'] },
      CniCode.invalidConfig,
      'ipFamilies',
    ],
    [
      'a family twice',
      env,
      { ...conf, ipFamilies: ['IPv4', 'IPv4'] },
      CniCode.invalidConfig,
      'twice',
    ],
    [
      'an ipam section',
      env,
      { ...conf, ipam: { type: 'host-local' } },
      CniCode.unsupportedField,
      'ipam',
    ],
    [
      'a missing cniVersion',
      env,
      { name: 'dyad', type: 'dyad-cni' },
      CniCode.invalidConfig,
      'cniVersion',
    ],
    ['a bad network name', env, { ...conf, name: 'no spaces' }, CniCode.invalidConfig, 'name'],
  ] as const)(
    '%s is an error with its code and a detail naming it',
    async (_, e, stdin, code, detail) => {
      const b = new FakeBackend();
      const r = await call(e, stdin, b);
      expect(r.exitCode).toBe(1);
      const out = parsed(r.stdout);
      expect(out.code).toBe(code);
      expect(typeof out.msg).toBe('string');
      expect(String(out.details)).toContain(detail);
      expect(b.calls).toEqual([]); // refused before any work
    },
  );

  it('errors echo the request cniVersion when it could be read', async () => {
    const r = parsed(
      (await call({ ...env, CNI_NETNS: '' }, { ...conf, cniVersion: '0.4.0' })).stdout,
    );
    expect(r.cniVersion).toBe('0.4.0');
  });

  it('a request that is not the envelope dyad-cni sends is an I/O failure', async () => {
    const r = await handleCni('not json', new FakeBackend());
    expect(parsed(r.stdout)).toMatchObject({ code: CniCode.ioFailure, cniVersion: '1.1.0' });
  });

  it('GC and STATUS need 1.1.0', async () => {
    const r = parsed((await call({ CNI_COMMAND: 'GC' }, { ...conf, cniVersion: '1.0.0' })).stdout);
    expect(r.code).toBe(CniCode.incompatibleVersion);
  });
});

describe('DEL, CHECK, GC, STATUS, VERSION', () => {
  it('DEL needs no netns and reads the pod when it can', async () => {
    const b = new FakeBackend();
    const r = await call({ ...env, CNI_COMMAND: 'DEL', CNI_NETNS: '' }, conf, b);
    expect(r).toMatchObject({ exitCode: 0, stdout: '' });
    expect(b.calls[0]?.req).toMatchObject({ command: 'DEL', containerId: 'c1', ifName: 'eth0' });
    expect(b.calls[0]?.req).not.toHaveProperty('netns');
  });

  it('DEL goes ahead even with unreadable CNI_ARGS (best effort)', async () => {
    const b = new FakeBackend();
    const r = await call({ ...env, CNI_COMMAND: 'DEL', CNI_ARGS: 'garbage' }, conf, b);
    expect(r.exitCode).toBe(0);
    expect(b.calls).toHaveLength(1);
  });

  it('CHECK hands the prevResult over', async () => {
    const b = new FakeBackend();
    const prevResult = buildResult('1.1.0', endpoint);
    await call({ ...env, CNI_COMMAND: 'CHECK' }, { ...conf, prevResult }, b);
    expect(b.calls[0]?.req).toMatchObject({
      command: 'CHECK',
      prevResult: { ips: [{ address: '198.18.1.5/32' }, { address: 'fd00:d1ad::5/128' }] },
    });
  });

  it('CHECK of an unknown container passes the backend code 3 through', async () => {
    const b = new FakeBackend();
    b.failWith = new CniError(CniCode.unknownContainer, 'unknown container', 'c1/eth0');
    const r = parsed((await call({ ...env, CNI_COMMAND: 'CHECK' }, conf, b)).stdout);
    expect(r.code).toBe(3);
  });

  it('GC reads the valid attachments', async () => {
    const b = new FakeBackend();
    await call(
      { CNI_COMMAND: 'GC', CNI_PATH: '/x' },
      { ...conf, 'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }] },
      b,
    );
    expect(b.calls[0]?.req).toMatchObject({
      command: 'GC',
      valid: [{ containerId: 'c1', ifName: 'eth0' }],
    });
  });

  it('STATUS is 0 when ready, 50 when not', async () => {
    const b = new FakeBackend();
    expect((await call({ CNI_COMMAND: 'STATUS' }, conf, b)).exitCode).toBe(0);
    b.ready = false;
    const r = await call({ CNI_COMMAND: 'STATUS' }, conf, b);
    expect(parsed(r.stdout)).toMatchObject({ code: 50, details: 'restoring endpoints' });
  });

  it('VERSION lists the supported versions and echoes the asked one', async () => {
    const r = parsed((await call({ CNI_COMMAND: 'VERSION' }, { cniVersion: '1.0.0' })).stdout);
    expect(r).toEqual({ cniVersion: '1.0.0', supportedVersions: [...SUPPORTED_VERSIONS] });
  });
});

describe('helpers', () => {
  it('parses CNI_ARGS pairs, values may hold "="', () => {
    expect([...parseCniArgs('A=1;B=x=y;;C=')]).toEqual([
      ['A', '1'],
      ['B', 'x=y'],
      ['C', ''],
    ]);
  });

  it('host veth names are stable, prefixed and at most 15 bytes', () => {
    const a = hostIfName('dy', 'c1', 'eth0');
    expect(a).toBe(hostIfName('dy', 'c1', 'eth0'));
    expect(a).toMatch(/^dy[0-9a-f]{13}$/);
    expect(hostIfName('dy', 'c1', 'eth1')).not.toBe(a);
  });

  it('MACs are stable, locally administered unicast, different per side', () => {
    const m = endpointMacs('c1', 'eth0');
    expect(m).toEqual(endpointMacs('c1', 'eth0'));
    for (const mac of [m.pod, m.host]) {
      const first = parseInt(mac.slice(0, 2), 16);
      expect(first & 0x02).toBe(0x02);
      expect(first & 0x01).toBe(0);
    }
    expect(m.pod).not.toBe(m.host);
  });

  it('endpoint ids fill the lowest gap from 1', () => {
    expect(nextEndpointId([])).toBe(1);
    expect(nextEndpointId([1, 2, 4])).toBe(3);
  });
});
