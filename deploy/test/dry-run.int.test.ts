// The rendered chart against a real kube-apiserver (the test bed's, on loopback): every variant
// is accepted by `kubectl apply --dry-run=server` (validation, defaulting, admission: the
// priority classes must exist, ...), and the RBAC, applied for real, lets the API's own
// authorizer say who may do what.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKube, toolPath } from '@dyad/testbed';
import type { KubeCluster } from '@dyad/testbed';
import { NAMESPACE, VARIANTS, parseManifests, renderYaml, run } from './chart.ts';
import type { Manifest, RenderOptions, Variant, Workload } from './chart.ts';

let kube: KubeCluster;

beforeAll(async () => {
  kube = await startKube();
});

afterAll(async () => {
  await kube?.stop();
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

  it('accepts the optional parts: policy, Events, an external NATS, the API server address', async () => {
    await dryRun('dual', {
      noNatsAddresses: true,
      set: {
        'policy.enabled': true,
        'kubeBridge.createEvents': true,
        'kubeBridge.apiServer': { host: '198.18.0.2', port: 6443 },
        'nats.external.url': 'nats://198.18.0.50:4222',
        'nats.external.tokenSecret': 'my-nats',
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

describe('the RBAC, applied, as the API server authorizes it', () => {
  beforeAll(async () => {
    const rbac = parseManifests(await renderYaml('dual')).filter((m) =>
      ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(
        m.kind,
      ),
    );
    const r = await kubectl(
      ['apply', '--namespace', NAMESPACE, '-f', '-'],
      rbac.map((m) => JSON.stringify(m)).join('\n'),
    );
    expect(r.stderr).toBe('');
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

  it('kube-bridge may list and watch the six kinds cluster-wide, and nothing more', async () => {
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
    expect(await can('dyad-kube-bridge', 'create', 'events.events.k8s.io')).toBe(false);
  });

  it('no other Dyad ServiceAccount may list or watch anything', async () => {
    for (const sa of ['dyad-agent', 'dyad-ipam', 'dyad-router', 'dyad-nats']) {
      for (const resource of ['pods', 'nodes', 'secrets', 'configmaps']) {
        expect(await can(sa, 'list', resource), `${sa} list ${resource}`).toBe(false);
        expect(await can(sa, 'watch', resource), `${sa} watch ${resource}`).toBe(false);
      }
    }
  });
});
