// The chart as rendered by the pinned helm: every variant renders, and what it renders keeps
// Dyad's rules (the config schema, RBAC, the agent's capabilities, probes, the conflist).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  ALL_DYAD_CONFIG_KEYS,
  DYAD_CONFIG_DIR,
  ServiceIdentity,
  dyadConfigProblems,
} from '@dyad/contracts';
import { AGENT_SERVICE_ACCOUNT, SERVICE_ACCOUNTS } from '@dyad/nats-auth';
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
/** Each service's V8 flags as the chart's defaults set them (README: the agent's memory). */
const VALUES = parse(readFileSync(join(repoRoot(), 'deploy', 'values.yaml'), 'utf8')) as Record<
  'agent' | 'ipam' | 'kubeBridge' | 'router' | 'policy' | 'natsAuth' | 'bootstrap',
  { nodeFlags: string[] }
>;
const AGENT_FLAGS = VALUES.agent.nodeFlags;
const SERVICE_FLAGS: Record<string, string[]> = {
  'datapath-agent': AGENT_FLAGS,
  ipam: VALUES.ipam.nodeFlags,
  'kube-bridge': VALUES.kubeBridge.nodeFlags,
  router: VALUES.router.nodeFlags,
  policy: VALUES.policy.nodeFlags,
  'nats-auth': VALUES.natsAuth.nodeFlags,
  bootstrap: VALUES.bootstrap.nodeFlags,
};
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
        'ClusterRole/dyad-nats-auth',
        'ClusterRoleBinding/dyad-nats-auth',
        'Role/dyad-nats-auth',
        'RoleBinding/dyad-nats-auth',
        'Deployment/dyad-nats-auth',
        'Secret/dyad-nats-auth',
        'ServiceAccount/dyad-nats-auth',
        'ConfigMap/dyad-cni-config',
        'ConfigMap/dyad-config',
        'DaemonSet/dyad-agent',
        'Deployment/dyad-bootstrap',
        'Deployment/dyad-ipam',
        'Deployment/dyad-kube-bridge',
        'Deployment/dyad-policy',
        'Deployment/dyad-router',
        'Job/dyad-uninstall',
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
        'ServiceAccount/dyad-uninstall',
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
    // every Dyad process refuses to connect to NATS without credentials
    expect(data.environment).toBe('production');
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

  it('gives every node NATS by address, IPv6 in brackets, over TLS', () => {
    const urls = TEST_NATS_ADDRESSES[variant].map((a) =>
      a.includes(':') ? `nats://[${a}]:4222` : `nats://${a}:4222`,
    );
    for (const [w, c] of dyadContainers(manifests(variant))) {
      expect(envOf(c, 'NATS_URL')?.value, w.metadata.name).toBe(urls.join(','));
      expect(envOf(c, 'NATS_CA')?.value, w.metadata.name).toBe('/etc/dyad/nats-ca/ca.crt');
      expect(w.spec.template.spec.volumes, w.metadata.name).toContainEqual({
        name: 'nats-ca',
        secret: { secretName: 'dyad-nats', items: [{ key: 'ca.crt', path: 'ca.crt' }] },
      });
    }
  });

  it('every process presents its own projected ServiceAccount token as its NATS identity', () => {
    const identities: Record<string, string> = {
      'dyad-agent': 'agent-$(DYAD_NODE_NAME)',
      'dyad-ipam': 'ipam',
      'dyad-router': 'router',
      'dyad-policy': 'policy',
      'dyad-kube-bridge': 'kube-bridge',
      'dyad-bootstrap': 'bootstrap',
    };
    const clients = dyadContainers(manifests(variant)).filter(
      ([w]) => w.metadata.name !== 'dyad-nats-auth',
    );
    expect(clients.map(([w]) => w.metadata.name).sort()).toEqual(Object.keys(identities).sort());
    for (const [w, c] of clients) {
      const what = w.metadata.name;
      expect(envOf(c, 'NATS_IDENTITY')?.value, what).toBe(identities[what]);
      expect(envOf(c, 'NATS_TOKEN')).toBeUndefined();
      const file = envOf(c, 'NATS_TOKEN_FILE')?.value ?? '';
      const mount = c.volumeMounts?.find((m) => file.startsWith(`${m.mountPath}/`));
      const volume = w.spec.template.spec.volumes?.find((v) => v.name === mount?.name);
      expect(volume?.projected?.sources, what).toEqual([
        { serviceAccountToken: { audience: 'dyad-nats', expirationSeconds: 3600, path: 'token' } },
      ]);
      expect(file, what).toBe(`${mount?.mountPath ?? ''}/token`);
      // the callout admits the pod's ServiceAccount as exactly that identity
      const account = w.spec.template.spec.serviceAccountName ?? '';
      if (account === AGENT_SERVICE_ACCOUNT) expect(what).toBe('dyad-agent');
      else expect(SERVICE_ACCOUNTS[account], what).toBe(identities[what]);
    }
    // the agent's node name is defined before the identity that refers to it
    const agent = workload(manifests(variant), 'DaemonSet', 'dyad-agent').spec.template.spec
      .containers[0] as Container;
    const names = (agent.env ?? []).map((e) => e.name);
    expect(names.indexOf('DYAD_NODE_NAME')).toBeLessThan(names.indexOf('NATS_IDENTITY'));
    expect(names.indexOf('DYAD_NODE_NAME')).toBeGreaterThanOrEqual(0);
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

  it('only kube-bridge and dyad-nats-auth have a Kubernetes token: every other pod and ServiceAccount opts out', () => {
    const ms = manifests('dual');
    const withApi = ['dyad-kube-bridge', 'dyad-nats-auth'];
    for (const sa of ms.filter((m) => m.kind === 'ServiceAccount')) {
      expect(sa.automountServiceAccountToken, sa.metadata.name).toBe(
        withApi.includes(sa.metadata.name),
      );
    }
    for (const w of workloads(ms)) {
      const pod = w.spec.template.spec;
      expect(pod.serviceAccountName).toBe(w.metadata.name);
      if (!withApi.includes(w.metadata.name)) {
        expect(pod.automountServiceAccountToken, w.metadata.name).toBe(false);
      }
      // a projected token is for NATS only: never the API server's audience
      for (const v of pod.volumes ?? []) {
        for (const src of v.projected?.sources ?? []) {
          if (src.serviceAccountToken === undefined) continue;
          expect(src.serviceAccountToken.audience, w.metadata.name).toBe('dyad-nats');
        }
      }
    }
  });

  it("helm uninstall's pre-delete hook runs `dyad uninstall` with NATS only, no Kubernetes token", () => {
    const ms = manifests('dual');
    const job = find(ms, 'Job', 'dyad-uninstall') as unknown as Workload & {
      metadata: { annotations: Record<string, string> };
      spec: { backoffLimit: number };
    };
    expect(job.metadata.annotations['helm.sh/hook']).toBe('pre-delete');
    expect(job.spec.backoffLimit).toBe(0);
    const pod = job.spec.template.spec;
    expect(pod.serviceAccountName).toBe('dyad-uninstall');
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.hostNetwork).toBe(true);
    const [c] = pod.containers;
    expect(c?.command).toEqual([
      'node',
      'packages/cli/bin/dyad.js',
      'uninstall',
      '--timeout-s',
      '120',
    ]);
    expect(existsSync(join(repoRoot(), 'packages/cli/bin/dyad.js'))).toBe(true);
    const agentEnv =
      workload(ms, 'DaemonSet', 'dyad-agent').spec.template.spec.containers.find(
        (x) => x.name === 'agent',
      )?.env ?? [];
    expect(envOf(c as Container, 'NATS_URL')).toEqual(agentEnv.find((e) => e.name === 'NATS_URL'));
    // through the auth callout as identity `uninstall`, with its projected NATS-audience token
    expect(envOf(c as Container, 'NATS_IDENTITY')).toMatchObject({ value: 'uninstall' });
    expect(envOf(c as Container, 'NATS_TOKEN_FILE')).toEqual(
      agentEnv.find((e) => e.name === 'NATS_TOKEN_FILE'),
    );
    expect(SERVICE_ACCOUNTS['dyad-uninstall']).toBe(ServiceIdentity.uninstall);
    expect(c?.securityContext).toMatchObject({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
    });
  });

  it('with uninstall.enabled false there is no hook', async () => {
    const ms = await render('dual', { set: { 'uninstall.enabled': false } });
    expect(ms.filter((m) => m.metadata.name === 'dyad-uninstall')).toEqual([]);
  });

  it('dyad-nats-auth may create TokenReviews and read and update its one Secret, nothing else', () => {
    const ms = manifests('dual');
    expect(find(ms, 'ClusterRole', 'dyad-nats-auth').rules).toEqual([
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
    ]);
    expect(find(ms, 'Role', 'dyad-nats-auth').rules).toEqual([
      {
        apiGroups: [''],
        resources: ['secrets'],
        resourceNames: ['dyad-nats-auth'],
        verbs: ['get', 'update'],
      },
    ]);
    // created empty by the chart: its keys are the service's, and an upgrade never names them
    const secret = find(ms, 'Secret', 'dyad-nats-auth');
    expect(secret.data).toBeUndefined();
    expect(secret.stringData).toBeUndefined();
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
    // /proc/sys/net only in prepare-node; the CNI directories, which install-cni writes, for
    // the agent to remove its files from when it is told to uninstall
    expect(mounts.has('/host/proc/sys/net')).toBe(false);
    for (const p of ['/host/opt/cni/bin', '/host/etc/cni/net.d'])
      expect(mounts.has(p), p).toBe(true);
  });

  it('at uninstall the agent removes the conflist install-cni wrote, then dyad-cni and its own directories', () => {
    const c = main();
    const conf = `/host/etc/cni/net.d/05-dyad.conflist`;
    expect(envOf(c, 'DYAD_CNI_CONF_FILE')?.value).toBe(conf);
    expect(envOf(c, 'DYAD_UNINSTALL_PATHS')?.value?.split(',')).toEqual([
      '/host/opt/cni/bin/dyad-cni',
      '/run/dyad',
      '/var/lib/dyad',
    ]);
    // each path lies in a directory the agent mounts
    const mounted = (main().volumeMounts ?? []).map((m) => m.mountPath);
    for (const p of [conf, '/host/opt/cni/bin/dyad-cni', '/run/dyad', '/var/lib/dyad'])
      expect(
        mounted.some((m) => p === m || p.startsWith(`${m}/`)),
        p,
      ).toBe(true);
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
    // every heap is bounded (the agent's state does not grow with the cluster; the services'
    // bound sits under their memory limit)
    for (const flags of Object.values(SERVICE_FLAGS))
      expect(flags).toContainEqual(expect.stringMatching(/^--max-old-space-size=\d+$/));
    for (const [w, c] of dyadContainers(manifests('dual'))) {
      const service =
        w.metadata.name === 'dyad-agent' ? 'datapath-agent' : w.metadata.name.slice(5);
      const flags = SERVICE_FLAGS[service] ?? [];
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

  it('points kube-bridge and the callout at the API server itself when asked', async () => {
    const ms = await render('dual', {
      set: { 'kubeBridge.apiServer': { host: '198.18.0.2', port: 6443 } },
    });
    // both processes that talk to it: kube-bridge and the auth callout
    for (const name of ['dyad-kube-bridge', 'dyad-nats-auth']) {
      const c = workload(ms, 'Deployment', name).spec.template.spec.containers[0];
      expect(envOf(c as Container, 'KUBERNETES_SERVICE_HOST')?.value, name).toBe('198.18.0.2');
      expect(envOf(c as Container, 'KUBERNETES_SERVICE_PORT')?.value, name).toBe('6443');
    }
  });

  it('renders the policy service by default', () => {
    const ms = manifests('dual');
    const w = workload(ms, 'Deployment', 'dyad-policy');
    expect(w.spec.template.spec.containers[0]?.command).toEqual([
      'node',
      ...VALUES.policy.nodeFlags,
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
    expect(secret['route-password']).toMatch(/^[A-Za-z0-9]{48}$/);
    // no shared client secret: clients go through the callout, whose block is included
    expect(Object.keys(secret).sort()).toEqual(
      ['ca.crt', 'nats.conf', 'route-password', 'tls.crt', 'tls.key'].sort(),
    );
    expect(conf).toContain('include "auth.conf"');
    expect(conf).not.toMatch(/\btoken:/);
  });

  it("the servers' certificate is the CA's and names every NATS node's address", async () => {
    const secret = find(manifests('ipv6'), 'Secret', 'dyad-nats').stringData as Record<
      string,
      string
    >;
    const { X509Certificate } = await import('node:crypto');
    const ca = new X509Certificate(secret['ca.crt'] ?? '');
    const cert = new X509Certificate(secret['tls.crt'] ?? '');
    expect(cert.verify(ca.publicKey)).toBe(true);
    for (const a of TEST_NATS_ADDRESSES.ipv6) expect(cert.checkIP(a), a).toBe(a);
    expect(cert.checkIP('fd00:d1ad:0:1::99')).toBeUndefined();
  });

  it('the servers read their configuration, certificate and the callout block from one directory', () => {
    const sts = workload(manifests('dual'), 'StatefulSet', 'dyad-nats');
    const config = sts.spec.template.spec.volumes?.find((v) => v.name === 'config');
    expect(config?.projected?.sources).toEqual([
      {
        secret: {
          name: 'dyad-nats',
          items: [
            { key: 'nats.conf', path: 'nats.conf' },
            { key: 'tls.crt', path: 'tls.crt' },
            { key: 'tls.key', path: 'tls.key' },
          ],
        },
      },
      { secret: { name: 'dyad-nats-auth', items: [{ key: 'auth.conf', path: 'auth.conf' }] } },
    ]);
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

  it('with an external NATS renders no NATS, and every service uses its URL and CA', async () => {
    const ms = await render('dual', {
      noNatsAddresses: true,
      set: {
        'nats.external.url': 'nats://198.18.0.50:4222,nats://198.18.0.51:4222',
        'nats.external.caSecret': 'my-nats-ca',
      },
    });
    expect(ms.filter((m) => m.metadata.name === 'dyad-nats')).toEqual([]);
    for (const [w, c] of dyadContainers(ms)) {
      expect(envOf(c, 'NATS_URL')?.value, w.metadata.name).toBe(
        'nats://198.18.0.50:4222,nats://198.18.0.51:4222',
      );
      expect(w.spec.template.spec.volumes, w.metadata.name).toContainEqual({
        name: 'nats-ca',
        secret: { secretName: 'my-nats-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }] },
      });
    }
    // the callout still runs: the external NATS includes its block
    workload(ms, 'Deployment', 'dyad-nats-auth');
    expect(configData(ms)['jetstream-replicas']).toBe('1');
    expect(rbacProblems(ms)).toEqual([]);
  });
});

describe('parsing', () => {
  it('refuses a rendered document that is no Kubernetes object', () => {
    expect(() => parseManifests('a: 1\n')).toThrow(/no Kubernetes object/);
  });
});
