// The rendered chart against a real kube-apiserver (the test bed's, on loopback): every variant
// is accepted by `kubectl apply --dry-run=server` (validation, defaulting, admission: the
// priority classes must exist, ...); then `helm install` for real (objects only: the test bed
// has no nodes), so that the API's own authorizer says who may do what, an upgrade keeps the
// NATS credentials, and an uninstall leaves nothing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKube, toolPath } from '@dyad/testbed';
import type { KubeCluster } from '@dyad/testbed';
import {
  CHART_DIR,
  NAMESPACE,
  TEST_NATS_ADDRESSES,
  VARIANTS,
  helmPath,
  parseManifests,
  renderYaml,
  run,
} from './chart.ts';
import type { Manifest, RenderOptions, Variant, Workload } from './chart.ts';

let kube: KubeCluster;
const stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  kube = await startKube();
  stops.push(() => kube.stop());
});

afterAll(async () => {
  for (const stop of stops) await stop();
});

function kubectl(args: readonly string[], input?: string) {
  return run(toolPath('kubectl'), ['--kubeconfig', kube.kubeconfigPath, ...args], input);
}

const nameOf = (m: Manifest): string => {
  const group = m.apiVersion.includes('/') ? `.${m.apiVersion.split('/')[0]}` : '';
  return `${m.kind.toLowerCase()}${group}/${m.metadata.name}`;
};

async function dryRun(variant: Variant, opts: RenderOptions = {}): Promise<void> {
  const yamlText = await renderYaml(variant, opts);
  const r = await kubectl(
    ['apply', '--dry-run=server', '--namespace', NAMESPACE, '-o', 'name', '-f', '-'],
    yamlText,
  );
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  // every object was sent and accepted
  const accepted = r.stdout.trim().split('\n').sort();
  expect(accepted).toEqual(parseManifests(yamlText).map(nameOf).sort());
}

describe('kubectl apply --dry-run=server', () => {
  it.each(VARIANTS)('accepts the %s variant', async (variant) => {
    await dryRun(variant);
  });

  it('accepts the optional parts: no policy, no Events, an external NATS, the API server address', async () => {
    await dryRun('dual', {
      noNatsAddresses: true,
      set: {
        'policy.enabled': false,
        'kubeBridge.createEvents': false,
        'kubeBridge.apiServer': { host: '198.18.0.2', port: 6443 },
        'nats.external.url': 'nats://198.18.0.50:4222',
        'nats.external.caSecret': 'my-nats-ca',
        'agent.legacyMemlock': true,
      },
    });
  });

  it('refuses what the API refuses (so this test can fail)', async () => {
    const ms = parseManifests(await renderYaml('dual'));
    const agent = ms.find((m) => m.kind === 'DaemonSet') as Workload;
    // maxUnavailable 0 with maxSurge 0 could never replace a pod
    (agent.spec as { updateStrategy: unknown }).updateStrategy = {
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 0, maxSurge: 0 },
    };
    const r = await kubectl(
      ['apply', '--dry-run=server', '--namespace', NAMESPACE, '-f', '-'],
      ms.map((m) => JSON.stringify(m)).join('\n'),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('The DaemonSet "dyad-agent" is invalid');
  });
});

describe('helm install into the test bed, and the RBAC as its authorizer sees it', () => {
  let helmHome: string;
  const teardown: (() => unknown)[] = [];
  const helm = (args: readonly string[]) =>
    run(helmPath(), [...args, '--kubeconfig', kube.kubeconfigPath, '--namespace', NAMESPACE], '', {
      ...process.env,
      HELM_CACHE_HOME: join(helmHome, 'cache'),
      HELM_CONFIG_HOME: join(helmHome, 'config'),
      HELM_DATA_HOME: join(helmHome, 'data'),
    });
  const values = [
    '-f',
    join(CHART_DIR, 'values', 'dual.yaml'),
    '--set-json',
    `nats.nodeAddresses=${JSON.stringify(TEST_NATS_ADDRESSES.dual)}`,
  ];
  const secretData = async (name: string): Promise<Record<string, string>> => {
    const r = await kubectl(['get', 'secret', name, '-n', NAMESPACE, '-o', 'json']);
    const data = (JSON.parse(r.stdout) as { data?: Record<string, string> }).data ?? {};
    return Object.fromEntries(
      Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
    );
  };
  let installed: { code: number; stdout: string; stderr: string };

  beforeAll(async () => {
    helmHome = mkdtempSync(join(tmpdir(), 'dyad-helm-home-'));
    teardown.push(() => {
      rmSync(helmHome, { recursive: true, force: true });
    });
    installed = await helm(['install', 'dyad', CHART_DIR, ...values]);
  });

  afterAll(() => {
    for (const undo of teardown.reverse()) undo();
  });

  it('installs, and its notes say how to wait for it', () => {
    expect(installed.stderr).toBe('');
    expect(installed.code).toBe(0);
    expect(installed.stdout).toContain('STATUS: deployed');
    expect(installed.stdout).toContain('rollout status daemonset/dyad-agent');
    expect(installed.stdout).toContain('agent.uplinks is empty');
  });

  const can = async (sa: string, verb: string, resource: string): Promise<boolean> => {
    const r = await kubectl([
      'auth',
      'can-i',
      verb,
      resource,
      '--all-namespaces',
      `--as=system:serviceaccount:${NAMESPACE}:${sa}`,
    ]);
    return r.stdout.trim() === 'yes';
  };

  it('kube-bridge may list and watch the six kinds cluster-wide and create Events, and nothing more', async () => {
    for (const resource of [
      'nodes',
      'namespaces',
      'pods',
      'services',
      'endpointslices.discovery.k8s.io',
      'networkpolicies.networking.k8s.io',
    ]) {
      expect(await can('dyad-kube-bridge', 'list', resource), resource).toBe(true);
      expect(await can('dyad-kube-bridge', 'watch', resource), resource).toBe(true);
      expect(await can('dyad-kube-bridge', 'get', resource), resource).toBe(false);
      expect(await can('dyad-kube-bridge', 'update', resource), resource).toBe(false);
    }
    expect(await can('dyad-kube-bridge', 'list', 'secrets')).toBe(false);
    // the policy problems it reports (kubeBridge.createEvents, on by default)
    expect(await can('dyad-kube-bridge', 'create', 'events.events.k8s.io')).toBe(true);
    expect(await can('dyad-kube-bridge', 'delete', 'events.events.k8s.io')).toBe(false);
  });

  it('no other Dyad ServiceAccount may list or watch anything', async () => {
    for (const sa of [
      'dyad-agent',
      'dyad-bootstrap',
      'dyad-ipam',
      'dyad-router',
      'dyad-nats',
      'dyad-policy',
      'dyad-nats-auth',
    ]) {
      for (const resource of ['pods', 'nodes', 'secrets', 'configmaps']) {
        expect(await can(sa, 'list', resource), `${sa} list ${resource}`).toBe(false);
        expect(await can(sa, 'watch', resource), `${sa} watch ${resource}`).toBe(false);
      }
    }
  });

  it('the auth callout may review tokens and read and update its key Secret, nothing more', async () => {
    const as = ['--as', `system:serviceaccount:${NAMESPACE}:dyad-nats-auth`, '-n', NAMESPACE];
    const yes = async (...args: string[]): Promise<boolean> =>
      (await kubectl(['auth', 'can-i', ...args, ...as])).stdout.trim() === 'yes';
    expect(await yes('create', 'tokenreviews.authentication.k8s.io')).toBe(true);
    expect(await yes('get', 'secret/dyad-nats-auth')).toBe(true);
    expect(await yes('update', 'secret/dyad-nats-auth')).toBe(true);
    expect(await yes('get', 'secret/dyad-nats')).toBe(false);
    expect(await yes('delete', 'secret/dyad-nats-auth')).toBe(false);
    expect(await yes('create', 'secrets')).toBe(false);
    expect(await yes('create', 'serviceaccounts/token')).toBe(false);
  });

  it("a ServiceAccount token projected for NATS is no Kubernetes API credential (the agent's)", async () => {
    const token = await kubectl([
      'create',
      'token',
      'dyad-agent',
      '-n',
      NAMESPACE,
      '--audience',
      'dyad-nats',
    ]);
    expect(token.code).toBe(0);
    const asToken = (t: string) =>
      run(toolPath('kubectl'), [
        '--kubeconfig',
        '/dev/null',
        '--server',
        kube.server,
        '--certificate-authority',
        kube.tls.caPath,
        '--token',
        t,
        'get',
        '--raw',
        '/api',
      ]);
    const refused = await asToken(token.stdout.trim());
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Unauthorized/);
    // the same account's token for the API server's own audience would be one (this check can fail)
    const apiToken = await kubectl(['create', 'token', 'dyad-agent', '-n', NAMESPACE]);
    expect((await asToken(apiToken.stdout.trim())).code).toBe(0);
  });

  it("an upgrade keeps the route password, the TLS material and the auth callout's keys", async () => {
    const before = await secretData('dyad-nats');
    expect(before['route-password']).toMatch(/^[A-Za-z0-9]{48}$/);
    expect(before['ca.crt']).toContain('BEGIN CERTIFICATE');
    // what dyad-nats-auth writes at its first start into the Secret the chart created empty
    expect(await secretData('dyad-nats-auth')).toEqual({});
    const filled = await kubectl([
      'patch',
      'secret',
      'dyad-nats-auth',
      '-n',
      NAMESPACE,
      '--type',
      'merge',
      '-p',
      JSON.stringify({ stringData: { 'issuer.nk': 'SA-test', 'auth.conf': 'authorization {}' } }),
    ]);
    expect(filled.code).toBe(0);
    const up = await helm(['upgrade', 'dyad', CHART_DIR, ...values, '--set', 'logLevel=debug']);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    const after = await secretData('dyad-nats');
    for (const key of ['route-password', 'ca.crt', 'tls.crt', 'tls.key', 'nats.conf']) {
      expect(after[key], key).toBe(before[key]);
    }
    expect(await secretData('dyad-nats-auth')).toEqual({
      'issuer.nk': 'SA-test',
      'auth.conf': 'authorization {}',
    });
  });

  it('uninstall removes every object it made', async () => {
    // without the pre-delete hook: its Job needs a node to run on and the test bed has none (the
    // lab's kubelet mode runs it: lab/test/kubelet.lab.test.ts)
    const r = await helm(['uninstall', 'dyad', '--no-hooks']);
    expect(r.code).toBe(0);
    const left = await kubectl([
      'get',
      'daemonsets,deployments,statefulsets,configmaps,secrets,serviceaccounts,services,poddisruptionbudgets',
      '-n',
      NAMESPACE,
      '-l',
      'app.kubernetes.io/part-of=dyad',
      '-o',
      'name',
    ]);
    expect(left.stdout).toBe('');
    const cluster = await kubectl(['get', 'clusterroles,clusterrolebindings', '-o', 'name']);
    expect(cluster.stdout).not.toContain('dyad-');
  });
});
