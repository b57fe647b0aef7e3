// The chart as rendered by the pinned helm: every variant renders, and what it renders keeps
// Dyad's rules (the config schema, RBAC, the agent's capabilities, probes, the conflist).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ALL_DYAD_CONFIG_KEYS, DYAD_CONFIG_DIR, dyadConfigProblems } from '@dyad/contracts';
import { ALL_CONFIG_KEYS as IPAM_CONFIG_KEYS } from '@dyad/ipam';
import { repoRoot } from '@dyad/testbed';
import {
  CHART_DIR,
  TEST_NATS_ADDRESSES,
  VARIANTS,
  envOf,
  find,
  helmPath,
  helmTemplate,
  parseManifests,
  render,
  run,
  workload,
  workloads,
} from './chart.ts';
import type { Container, Manifest, Variant, Workload } from './chart.ts';
import { rbacProblems } from './rbac.ts';

const rendered = new Map<Variant, Manifest[]>();
/** The agent's V8 flags as the chart's defaults set them (README: the agent's memory). */
const AGENT_FLAGS = (
  parse(readFileSync(join(repoRoot(), 'deploy', 'values.yaml'), 'utf8')) as {
    agent: { nodeFlags: string[] };
  }
).agent.nodeFlags;
beforeAll(async () => {
  for (const v of VARIANTS) rendered.set(v, await render(v));
});
const manifests = (v: Variant): Manifest[] => {
  const m = rendered.get(v);
  if (m === undefined) throw new Error(`${v} not rendered`);
  return m;
};
const configData = (ms: readonly Manifest[]): Record<string, string> =>
  find(ms, 'ConfigMap', 'dyad-config').data as Record<string, string>;

/** Every container of the Dyad services (not NATS), with its workload. */
function dyadContainers(ms: readonly Manifest[]): [Workload, Container][] {
  return workloads(ms)
    .filter((w) => w.metadata.name !== 'dyad-nats')
    .flatMap((w) => w.spec.template.spec.containers.map((c): [Workload, Container] => [w, c]));
}

describe.each(VARIANTS)('%s', (variant) => {
  it('renders every object Dyad needs, the policy service included', () => {
    const names = manifests(variant).map((m) => `${m.kind}/${m.metadata.name}`);
    expect(names.sort()).toEqual(
      [
        'ClusterRole/dyad-kube-bridge',
        'ClusterRoleBinding/dyad-kube-bridge',
        'ConfigMap/dyad-cni-config',
        'ConfigMap/dyad-config',
        'DaemonSet/dyad-agent',
        'Deployment/dyad-bootstrap',
        'Deployment/dyad-ipam',
        'Deployment/dyad-kube-bridge',
        'Deployment/dyad-policy',
        'Deployment/dyad-router',
        'PodDisruptionBudget/dyad-ipam',
        'PodDisruptionBudget/dyad-nats',
        'Secret/dyad-nats',
        'Service/dyad-nats',
        'ServiceAccount/dyad-agent',
        'ServiceAccount/dyad-bootstrap',
        'ServiceAccount/dyad-ipam',
        'ServiceAccount/dyad-kube-bridge',
        'ServiceAccount/dyad-nats',
        'ServiceAccount/dyad-policy',
        'ServiceAccount/dyad-router',
        'StatefulSet/dyad-nats',
      ].sort(),
    );
  });

  it('passes helm lint --strict', async () => {
    const r = await run(helmPath(), [
      'lint',
      CHART_DIR,
      '--strict',
      '-f',
      join(CHART_DIR, 'values', `${variant}.yaml`),
      '--set-json',
      `nats.nodeAddresses=${JSON.stringify(TEST_NATS_ADDRESSES[variant])}`,
    ]);
    expect(r.stdout + r.stderr).toContain('0 chart(s) failed');
    expect(r.code).toBe(0);
  });

  it('dyad-config has exactly the keys of the schema in @dyad/contracts, for its families', () => {
    const data = configData(manifests(variant));
    expect(dyadConfigProblems(data)).toEqual([]);
    expect(data['enable-ipv4']).toBe(String(variant !== 'ipv6'));
    expect(data['enable-ipv6']).toBe(String(variant !== 'ipv4'));
    expect(data['ipam-primary-family']).toBe(variant === 'ipv6' ? 'IPv6' : 'IPv4');
    expect(data['jetstream-replicas']).toBe('3');
  });

  it('the RBAC lets only kube-bridge list or watch, and grants no `*`', () => {
    expect(rbacProblems(manifests(variant))).toEqual([]);
  });

  it('mounts dyad-config into every Dyad container at one path', () => {
    for (const [w, c] of dyadContainers(manifests(variant))) {
      const volume = w.spec.template.spec.volumes?.find((v) => v.configMap?.name === 'dyad-config');
      expect(volume, w.metadata.name).toBeDefined();
      const mount = c.volumeMounts?.find((m) => m.name === volume?.name);
      expect(mount?.mountPath, `${w.metadata.name}/${c.name}`).toBe(DYAD_CONFIG_DIR);
    }
  });

  it('gives every node NATS by address, IPv6 in brackets', () => {
    const urls = TEST_NATS_ADDRESSES[variant].map((a) =>
      a.includes(':') ? `nats://[${a}]:4222` : `nats://${a}:4222`,
    );
    for (const [w, c] of dyadContainers(manifests(variant))) {
      expect(envOf(c, 'NATS_URL')?.value, w.metadata.name).toBe(urls.join(','));
      expect(envOf(c, 'NATS_TOKEN')?.valueFrom?.secretKeyRef).toEqual({
        name: 'dyad-nats',
        key: 'token',
      });
    }
  });

  it('turns on forwarding for the enabled families only', () => {
    const agent = workload(manifests(variant), 'DaemonSet', 'dyad-agent');
    const prepare = agent.spec.template.spec.initContainers?.find((c) => c.name === 'prepare-node');
    const script = prepare?.command?.join(' ') ?? '';
    expect(script.includes('ipv4/ip_forward')).toBe(variant !== 'ipv6');
    expect(script.includes('ipv6/conf/all/forwarding')).toBe(variant !== 'ipv4');
  });
});

describe('dyad-config and the services that read it', () => {
  it('knows every key ipam reads (a key renamed in ipam alone fails here)', () => {
    for (const key of IPAM_CONFIG_KEYS) expect(ALL_DYAD_CONFIG_KEYS).toContain(key);
  });

  it('a key the schema does not know, or a missing one, fails the check', () => {
    const data = configData(manifests('dual'));
    const renamed = Object.fromEntries(
      Object.entries(data).map(([k, v]) => [k === 'enable-ipv6' ? 'enable-ip6' : k, v]),
    );
    expect(dyadConfigProblems(renamed)).toContain('unknown key(s): enable-ip6');
  });

  it('takes several pools and an IPv6-first dual stack', async () => {
    const ms = await render('dual', {
      set: {
        'ipam.primaryFamily': 'IPv6',
        'ipam.clusterPoolIPv4PodCIDRList': ['198.18.0.0/16', '198.19.0.0/16'],
      },
    });
    const data = configData(ms);
    expect(dyadConfigProblems(data)).toEqual([]);
    expect(data['cluster-pool-ipv4-cidr']).toBe('198.18.0.0/16 198.19.0.0/16');
    expect(data['ipam-primary-family']).toBe('IPv6');
  });

  it('an IPv6 primary family in an IPv4-only cluster renders a ConfigMap the schema refuses', async () => {
    const ms = await render('ipv4', { set: { 'ipam.primaryFamily': 'IPv6' } });
    expect(dyadConfigProblems(configData(ms))).toEqual([
      'ipam-primary-family: IPv6 is not enabled',
    ]);
  });

  it('refuses to render with both families off', async () => {
    const r = await helmTemplate('ipv4', { set: { 'ipv4.enabled': false } });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('enable at least one family');
  });
});

describe('RBAC', () => {
  it('with Events off, kube-bridge lists and watches the six kinds it mirrors, and does nothing else', async () => {
    const ms = await render('dual', { set: { 'kubeBridge.createEvents': false } });
    const role = find(ms, 'ClusterRole', 'dyad-kube-bridge');
    expect(role.rules).toEqual([
      {
        apiGroups: [''],
        resources: ['nodes', 'namespaces', 'pods', 'services'],
        verbs: ['list', 'watch'],
      },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      {
        apiGroups: ['networking.k8s.io'],
        resources: ['networkpolicies'],
        verbs: ['list', 'watch'],
      },
    ]);
  });

  it('by default kube-bridge may also create and patch Events (policy problems), still with no `*`', () => {
    const ms = manifests('dual');
    const c = workload(ms, 'Deployment', 'dyad-kube-bridge').spec.template.spec.containers[0];
    expect(envOf(c as Container, 'DYAD_KUBE_BRIDGE_EVENTS')?.value).toBe('true');
    expect(rbacProblems(ms)).toEqual([]);
    const role = find(ms, 'ClusterRole', 'dyad-kube-bridge');
    expect((role.rules as unknown[]).at(-1)).toEqual({
      apiGroups: ['events.k8s.io'],
      resources: ['events'],
      verbs: ['create', 'patch'],
    });
  });

  it('only kube-bridge has a Kubernetes token: every other pod and ServiceAccount opts out', () => {
    const ms = manifests('dual');
    for (const sa of ms.filter((m) => m.kind === 'ServiceAccount')) {
      expect(sa.automountServiceAccountToken, sa.metadata.name).toBe(
        sa.metadata.name === 'dyad-kube-bridge',
      );
    }
    for (const w of workloads(ms)) {
      const pod = w.spec.template.spec;
      expect(pod.serviceAccountName).toBe(w.metadata.name);
      if (w.metadata.name !== 'dyad-kube-bridge') {
        expect(pod.automountServiceAccountToken, w.metadata.name).toBe(false);
      }
    }
  });

  it('the check fails on a `*`, on another role that can list or watch, and on a foreign role', () => {
    const ms = manifests('dual');
    const role = find(ms, 'ClusterRole', 'dyad-kube-bridge');
    const star = { ...role, rules: [{ apiGroups: ['*'], resources: ['pods'], verbs: ['get'] }] };
    const ipamRole: Manifest = {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'dyad-ipam', namespace: 'kube-system' },
      rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['watch'] }],
    };
    const ipamBinding: Manifest = {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'dyad-ipam', namespace: 'kube-system' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'dyad-ipam' },
      subjects: [{ kind: 'ServiceAccount', name: 'dyad-ipam', namespace: 'kube-system' }],
    };
    const viewBinding: Manifest = {
      ...ipamBinding,
      kind: 'ClusterRoleBinding',
      metadata: { name: 'dyad-view' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
    };
    const others = ms.filter((m) => m !== role);
    expect(rbacProblems([...others, star])).toEqual([
      "ClusterRole dyad-kube-bridge rule 0: '*' in apiGroups",
    ]);
    expect(rbacProblems([...ms, ipamRole, ipamBinding])).toEqual([
      'Role dyad-ipam can list or watch, and is bound to ServiceAccount dyad-ipam',
    ]);
    expect(rbacProblems([...ms, ipamRole])).toEqual([
      "Role dyad-ipam can list or watch, and is not kube-bridge's",
    ]);
    expect(rbacProblems([...ms, viewBinding])).toEqual([
      'ClusterRoleBinding dyad-view binds ClusterRole view, not in the chart',
    ]);
  });
});

describe('the agent DaemonSet', () => {
  const agent = (): Workload => workload(manifests('dual'), 'DaemonSet', 'dyad-agent');
  const main = (): Container => {
    const c = agent().spec.template.spec.containers.find((x) => x.name === 'agent');
    if (c === undefined) throw new Error('no agent container');
    return c;
  };

  it('runs on every node, on the host network, node-critical, one node at a time', () => {
    const w = agent();
    const pod = w.spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.hostPID).toBeUndefined();
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(w.spec.updateStrategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 1, maxSurge: 0 },
    });
  });

  it('has exactly NET_ADMIN, BPF and SYS_ADMIN; no container is privileged or may escalate', () => {
    expect(main().securityContext?.capabilities).toEqual({
      drop: ['ALL'],
      add: ['NET_ADMIN', 'BPF', 'PERFMON', 'SYS_ADMIN'],
    });
    for (const w of workloads(manifests('dual'))) {
      const pod = w.spec.template.spec;
      for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
        expect(c.securityContext?.privileged, `${w.metadata.name}/${c.name}`).toBeUndefined();
        expect(c.securityContext?.allowPrivilegeEscalation, `${w.metadata.name}/${c.name}`).toBe(
          false,
        );
        expect(c.securityContext?.capabilities?.drop, `${w.metadata.name}/${c.name}`).toEqual([
          'ALL',
        ]);
      }
    }
  });

  it('adds SYS_RESOURCE only for kernels that charge BPF maps to RLIMIT_MEMLOCK', async () => {
    const ms = await render('dual', { set: { 'agent.legacyMemlock': true } });
    const c = workload(ms, 'DaemonSet', 'dyad-agent').spec.template.spec.containers[0];
    expect(c?.securityContext?.capabilities?.add).toEqual([
      'NET_ADMIN',
      'BPF',
      'PERFMON',
      'SYS_ADMIN',
      'SYS_RESOURCE',
    ]);
  });

  it('mounts the node paths it works in', () => {
    const pod = agent().spec.template.spec;
    const hostPaths = Object.fromEntries(
      (pod.volumes ?? []).flatMap((v) => (v.hostPath ? [[v.hostPath.path, v.name]] : [])),
    );
    expect(Object.keys(hostPaths).sort()).toEqual(
      [
        '/etc/cni/net.d',
        '/opt/cni/bin',
        '/proc/sys/net',
        '/run/dyad',
        '/run/netns',
        '/sys/fs/bpf',
        '/var/lib/dyad',
      ].sort(),
    );
    const mounts = new Map(main().volumeMounts?.map((m) => [m.mountPath, m]));
    expect(mounts.get('/sys/fs/bpf')?.mountPropagation).toBe('HostToContainer');
    expect(mounts.get('/run/netns')?.mountPropagation).toBe('HostToContainer');
    for (const p of ['/run/dyad', '/var/lib/dyad']) expect(mounts.has(p), p).toBe(true);
    // the CNI directories and /proc/sys/net only in the init containers
    for (const p of ['/host/opt/cni/bin', '/host/etc/cni/net.d', '/host/proc/sys/net']) {
      expect(mounts.has(p), p).toBe(false);
    }
  });

  it('the conflist is CNI 1.0.0, names dyad-cni and the socket the agent serves, no ipam section', () => {
    const ms = manifests('dual');
    const cm = find(ms, 'ConfigMap', 'dyad-cni-config').data as Record<string, string>;
    const conflist = JSON.parse(cm['05-dyad.conflist'] ?? '{}') as {
      cniVersion: string;
      name: string;
      plugins: Record<string, unknown>[];
    };
    expect(conflist.cniVersion).toBe('1.0.0');
    expect(conflist.name).toBe('dyad');
    expect(conflist.plugins).toHaveLength(1);
    const plugin = conflist.plugins[0];
    expect(plugin?.type).toBe('dyad-cni');
    expect(plugin?.ipam).toBeUndefined();
    expect(plugin?.agentSocket).toBe(envOf(main(), 'DYAD_CNI_SOCKET')?.value);
    expect(
      main().volumeMounts?.some((m) =>
        (plugin?.agentSocket as string).startsWith(`${m.mountPath}/`),
      ),
    ).toBe(true);
  });

  it('the install script puts dyad-cni and the conflist in place, and can run again', async () => {
    const cm = find(manifests('dual'), 'ConfigMap', 'dyad-cni-config').data as Record<
      string,
      string
    >;
    const dir = mkdtempSync(join(tmpdir(), 'dyad-install-cni-'));
    try {
      const builtCni = join(repoRoot(), 'cni', 'build', 'dyad-cni');
      const srcBin = existsSync(builtCni) ? builtCni : join(dir, 'fake-dyad-cni');
      if (!existsSync(builtCni)) writeFileSync(srcBin, '#!/bin/sh\n');
      writeFileSync(join(dir, 'install-cni.sh'), cm['install-cni.sh'] ?? '');
      writeFileSync(join(dir, 'conflist'), cm['05-dyad.conflist'] ?? '');
      const env = {
        ...process.env,
        DYAD_CNI_SRC_BIN: srcBin,
        DYAD_CNI_SRC_CONF: join(dir, 'conflist'),
        DYAD_CNI_BIN_DIR: join(dir, 'opt/cni/bin'),
        DYAD_CNI_CONF_DIR: join(dir, 'etc/cni/net.d'),
      };
      for (let i = 0; i < 2; i++) {
        await new Promise<void>((resolve, reject) =>
          execFile('/bin/sh', [join(dir, 'install-cni.sh')], { env }, (err) => {
            if (err === null) resolve();
            else reject(new Error(`install-cni.sh failed: ${err.message}`, { cause: err }));
          }),
        );
      }
      const bin = join(dir, 'opt/cni/bin/dyad-cni');
      expect(statSync(bin).mode & 0o777).toBe(0o755);
      expect(readFileSync(bin)).toEqual(readFileSync(srcBin));
      const conf = join(dir, 'etc/cni/net.d/05-dyad.conflist');
      expect(statSync(conf).mode & 0o777).toBe(0o644);
      expect(readFileSync(conf, 'utf8')).toBe(cm['05-dyad.conflist']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the Dyad services', () => {
  it('each runs its entry from one values setting, and every entry exists', async () => {
    // the DaemonSet's heap is bounded: the agent's state does not grow with the cluster
    expect(AGENT_FLAGS).toContainEqual(expect.stringMatching(/^--max-old-space-size=\d+$/));
    for (const [w, c] of dyadContainers(manifests('dual'))) {
      const service =
        w.metadata.name === 'dyad-agent' ? 'datapath-agent' : w.metadata.name.slice(5);
      const flags = service === 'datapath-agent' ? AGENT_FLAGS : [];
      expect(c.command).toEqual(['node', ...flags, `services/${service}/dist/main.js`]);
      // compiled by `npm run build` (scripts/ensure.sh runs it)
      const entry = c.command?.at(-1) ?? '';
      expect(existsSync(join(repoRoot(), entry)), entry).toBe(true);
    }
    const ms = await render('dual', {
      set: { 'image.command': ['node', '--enable-source-maps'], 'image.entry': 'dist/%s/main.js' },
    });
    for (const [w, c] of dyadContainers(ms)) {
      expect(c.command?.slice(0, 2), w.metadata.name).toEqual(['node', '--enable-source-maps']);
      expect(c.command?.at(-1), w.metadata.name).toMatch(/^dist\/[a-z-]+\/main\.js$/);
    }
  });

  it('probe /healthz and /readyz on the health server, bound on the pod address', () => {
    for (const [w, c] of dyadContainers(manifests('dual'))) {
      const what = `${w.metadata.name}/${c.name}`;
      expect(c.livenessProbe?.httpGet, what).toEqual({ path: '/healthz', port: 'health' });
      expect(c.readinessProbe?.httpGet, what).toEqual({ path: '/readyz', port: 'health' });
      const port = c.ports?.find((p) => p.name === 'health')?.containerPort;
      expect(envOf(c, 'DYAD_HEALTH_PORT')?.value, what).toBe(String(port));
      expect(envOf(c, 'DYAD_HEALTH_HOST')?.valueFrom?.fieldRef?.fieldPath, what).toBe(
        'status.podIP',
      );
    }
  });

  it('every container has requests and a memory limit', () => {
    for (const w of workloads(manifests('dual'))) {
      for (const c of w.spec.template.spec.containers) {
        const what = `${w.metadata.name}/${c.name}`;
        expect(c.resources?.requests?.cpu, what).toBeDefined();
        expect(c.resources?.requests?.memory, what).toBeDefined();
        expect(c.resources?.limits?.memory, what).toBeDefined();
      }
    }
  });

  it('run on the host network with no privilege but the agent, as non-root', () => {
    for (const w of workloads(manifests('dual')).filter((x) => x.kind !== 'DaemonSet')) {
      const pod = w.spec.template.spec;
      expect(pod.hostNetwork, w.metadata.name).toBe(true);
      expect(pod.dnsPolicy, w.metadata.name).toBe('Default');
      expect(pod.priorityClassName, w.metadata.name).toBe('system-cluster-critical');
      for (const c of pod.containers) {
        expect(c.securityContext, w.metadata.name).toMatchObject({
          runAsNonRoot: true,
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(c.securityContext?.capabilities?.add, w.metadata.name).toBeUndefined();
      }
    }
  });

  it('the single writers never run twice in a rollout; ipam runs two with a budget', () => {
    const ms = manifests('dual');
    for (const name of ['dyad-router', 'dyad-kube-bridge']) {
      const w = workload(ms, 'Deployment', name);
      expect(w.spec.replicas, name).toBe(1);
      expect(w.spec.strategy, name).toEqual({ type: 'Recreate' });
    }
    const ipam = workload(ms, 'Deployment', 'dyad-ipam');
    expect(ipam.spec.replicas).toBe(2);
    expect(find(ms, 'PodDisruptionBudget', 'dyad-ipam').spec).toMatchObject({ minAvailable: 1 });
    // ipam reads its keys from dyad-config's directory, as every service reads jetstream-replicas
    const ic = ipam.spec.template.spec.containers[0];
    expect(envOf(ic as Container, 'DYAD_CONFIG_DIR')?.value).toBe(DYAD_CONFIG_DIR);
  });

  it('points kube-bridge at the API server itself when asked', async () => {
    const ms = await render('dual', {
      set: { 'kubeBridge.apiServer': { host: '198.18.0.2', port: 6443 } },
    });
    const c = workload(ms, 'Deployment', 'dyad-kube-bridge').spec.template.spec.containers[0];
    expect(envOf(c as Container, 'KUBERNETES_SERVICE_HOST')?.value).toBe('198.18.0.2');
    expect(envOf(c as Container, 'KUBERNETES_SERVICE_PORT')?.value).toBe('6443');
  });

  it('renders the policy service by default', () => {
    const ms = manifests('dual');
    const w = workload(ms, 'Deployment', 'dyad-policy');
    expect(w.spec.template.spec.containers[0]?.command).toEqual([
      'node',
      'services/policy/dist/main.js',
    ]);
    expect(find(ms, 'ServiceAccount', 'dyad-policy').automountServiceAccountToken).toBe(false);
    expect(rbacProblems(ms)).toEqual([]);
  });
});

describe('NATS', () => {
  it('three servers, one per labelled node, on the host network, each with its volume', () => {
    const ms = manifests('dual');
    const sts = workload(ms, 'StatefulSet', 'dyad-nats');
    expect(sts.spec.replicas).toBe(3);
    expect(sts.spec.podManagementPolicy).toBe('Parallel');
    const pod = sts.spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect((pod as unknown as { nodeSelector: unknown }).nodeSelector).toEqual({
      'dyad.io/nats': 'true',
    });
    expect(sts.spec.volumeClaimTemplates).toMatchObject([
      { metadata: { name: 'data' }, spec: { accessModes: ['ReadWriteOnce'] } },
    ]);
    expect(find(ms, 'PodDisruptionBudget', 'dyad-nats').spec).toMatchObject({ maxUnavailable: 1 });
  });

  it('the server config routes to every NATS node, with the route password', () => {
    const secret = find(manifests('ipv6'), 'Secret', 'dyad-nats').stringData as Record<
      string,
      string
    >;
    const conf = secret['nats.conf'] ?? '';
    for (const a of TEST_NATS_ADDRESSES.ipv6) {
      expect(conf).toContain(`"nats://dyad-route:${secret['route-password']}@[${a}]:6222"`);
    }
    expect(conf).toContain(`token: "${secret.token}"`);
    expect(secret.token).toMatch(/^[A-Za-z0-9]{48}$/);
  });

  it('without node addresses the chart refuses to render and says what to set', async () => {
    const r = await helmTemplate('dual', { noNatsAddresses: true });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      'nats.nodeAddresses must list the address of each of the 3 NATS nodes',
    );
    const bracketed = await helmTemplate('ipv6', {
      set: { 'nats.nodeAddresses': ['[fd00::1]', 'fd00::2', 'fd00::3'] },
    });
    expect(bracketed.stderr).toContain('a bare address, without brackets or port');
  });

  it('with an external NATS renders no NATS, and every service uses its URL and token', async () => {
    const ms = await render('dual', {
      noNatsAddresses: true,
      set: {
        'nats.external.url': 'nats://198.18.0.50:4222,nats://198.18.0.51:4222',
        'nats.external.tokenSecret': 'my-nats',
      },
    });
    expect(ms.filter((m) => m.metadata.name === 'dyad-nats')).toEqual([]);
    for (const [w, c] of dyadContainers(ms)) {
      expect(envOf(c, 'NATS_URL')?.value, w.metadata.name).toBe(
        'nats://198.18.0.50:4222,nats://198.18.0.51:4222',
      );
      expect(envOf(c, 'NATS_TOKEN')?.valueFrom?.secretKeyRef?.name).toBe('my-nats');
    }
    expect(configData(ms)['jetstream-replicas']).toBe('1');
    expect(rbacProblems(ms)).toEqual([]);
  });

  it('with auth off, no token anywhere', async () => {
    const ms = await render('dual', { set: { 'nats.auth.enabled': false } });
    const secret = find(ms, 'Secret', 'dyad-nats').stringData as Record<string, string>;
    expect(Object.keys(secret)).toEqual(['nats.conf']);
    expect(secret['nats.conf']).not.toContain('authorization');
    for (const [, c] of dyadContainers(ms)) expect(envOf(c, 'NATS_TOKEN')).toBeUndefined();
  });
});

describe('parsing', () => {
  it('refuses a rendered document that is no Kubernetes object', () => {
    expect(() => parseManifests('a: 1\n')).toThrow(/no Kubernetes object/);
  });
});
