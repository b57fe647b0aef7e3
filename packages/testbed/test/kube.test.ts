import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { formatPrefix, parseIp, parsePrefixLenient } from '@dyad/netaddr';
import { StartupError, startKube, toolPath } from '../src/index.ts';
import type { KubeCluster } from '../src/index.ts';

function kubectl(kubeconfig: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      toolPath('kubectl'),
      ['--kubeconfig', kubeconfig, ...args],
      (error, stdout, stderr) => {
        if (error) reject(new Error(`kubectl ${args.join(' ')}: ${stderr || error.message}`));
        else resolve(stdout);
      },
    );
    child.stdin?.end(input ?? '');
  });
}

function inCidr(ip: string, cidr: string): boolean {
  const range = parsePrefixLenient(cidr);
  if (parseIp(ip).family !== range.family) return false;
  return formatPrefix(parsePrefixLenient(`${ip}/${range.length}`)) === formatPrefix(range);
}

/** Command lines of live processes mentioning `text` (etcd left behind by a failed start would). */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(text)) found.push(cmdline);
    } catch {
      // Exited while scanning.
    }
  }
  return found;
}

const DUAL_STACK_SERVICE = `
apiVersion: v1
kind: Service
metadata:
  name: dual
  namespace: default
spec:
  ipFamilyPolicy: RequireDualStack
  selector:
    app: dual
  ports:
  - port: 80
`;

describe('startKube', () => {
  let kube: KubeCluster;

  beforeAll(async () => {
    kube = await startKube();
    return () => kube.stop();
  });

  it('serves on 127.0.0.1 and kubectl works with the admin kubeconfig', async () => {
    expect(kube.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const namespaces = await kubectl(kube.kubeconfigPath, ['get', 'ns', '-o', 'name']);
    expect(namespaces).toContain('namespace/default');
    expect(namespaces).toContain('namespace/kube-system');
  });

  it('gives a RequireDualStack Service one IPv4 and one IPv6 ClusterIP from the configured ranges', async () => {
    await kubectl(kube.kubeconfigPath, ['apply', '-f', '-'], DUAL_STACK_SERVICE);
    const raw = await kubectl(kube.kubeconfigPath, [
      'get',
      'svc',
      'dual',
      '-n',
      'default',
      '-o',
      'jsonpath={.spec.clusterIPs}',
    ]);
    const ips: unknown = JSON.parse(raw);
    expect(Array.isArray(ips)).toBe(true);
    const list = (ips as unknown[]).map(String);
    expect(list).toHaveLength(2);
    const v4 = list.filter((ip) => !ip.includes(':'));
    const v6 = list.filter((ip) => ip.includes(':'));
    expect(v4).toHaveLength(1);
    expect(v6).toHaveLength(1);
    expect(inCidr(v4[0] ?? '', '198.18.128.0/20')).toBe(true);
    expect(inCidr(v6[0] ?? '', 'fd00:d1ad:5e::/112')).toBe(true);
  });

  it('runs the controller-manager: a new namespace gets its default ServiceAccount', async () => {
    await kubectl(kube.kubeconfigPath, ['create', 'namespace', 'testbed-sa']);
    // Bounded wait for an asynchronous controller, not a speed assertion.
    await vi.waitFor(
      async () =>
        expect(
          await kubectl(kube.kubeconfigPath, [
            'get',
            'serviceaccounts',
            '-n',
            'testbed-sa',
            '-o',
            'name',
          ]),
        ).toContain('serviceaccount/default'),
      { timeout: 60_000, interval: 500 },
    );
  });

  it('restartApiserver() comes back on the same URL with the stored objects', async () => {
    const server = kube.server;
    await kube.restartApiserver();
    expect(kube.server).toBe(server);
    const name = await kubectl(kube.kubeconfigPath, [
      'get',
      'svc',
      'dual',
      '-n',
      'default',
      '-o',
      'name',
    ]);
    expect(name.trim()).toBe('service/dual');
  });
});

describe('startKube failure', () => {
  it('names kube-apiserver and shows its log lines when a bad flag stops it, and cleans up', async () => {
    const error = await startKube({
      extraArgs: { 'kube-apiserver': ['--no-such-flag'] },
      keep: false,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StartupError);
    const failure = error as StartupError;
    expect(failure.binary).toBe('kube-apiserver');
    expect(failure.message).toMatch(
      /^kube-apiserver failed to start: exited with code \d+ before it was ready/,
    );
    expect(failure.message).toContain('unknown flag: --no-such-flag');
    expect(existsSync(failure.logPath)).toBe(false);
    expect(processesMentioning(dirname(failure.logPath))).toEqual([]);
  });
});
