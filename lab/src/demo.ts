// The lab demo: `node lab/src/demo.ts [--keep]`. Brings a 3-node dual-stack lab up, puts pods in
// two namespaces on different nodes, shows them reaching each other across nodes over IPv4 and
// IPv6 (ICMP echo, TCP, UDP), lists each node's endpoints with `dyad endpoint list`, reaches a
// dual-stack Service through both of its cluster IPs, applies a NetworkPolicy and shows it
// enforced in both families, with the drops in `dyad observe`, and prints a summary. Without
// --keep the lab is removed at the end.
import { FAMILIES } from '@dyad/netaddr';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot, toolPath } from '@dyad/testbed';
import { labDown, labStatusReport, labUp } from './commands.ts';
import { labPaths } from './paths.ts';
import { Prober } from './probe.ts';
import type { ProbeSpecValue } from './probe.ts';
import { listPodRecords } from './records.ts';

const keep = process.argv.includes('--keep');
const paths = labPaths();
const out = (s = ''): boolean => process.stdout.write(s + '\n');
const io = { stdout: process.stdout, stderr: process.stderr };

const PODS = [
  { namespace: 'frontend', name: 'web', node: 'node-1', port: 8080, portName: 'http' },
  { namespace: 'backend', name: 'api', node: 'node-2', port: 9090, portName: 'grpc' },
  { namespace: 'backend', name: 'db', node: 'node-3', port: 5432, portName: 'sql' },
];

function kubectl(args: readonly string[], input?: string): string {
  out(`$ kubectl ${args.join(' ')}`);
  const r = spawnSync(toolPath('kubectl'), ['--kubeconfig', paths.kubeconfig, ...args], {
    input,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/**
 * Runs the dyad CLI against the lab (the agents' sockets, and NATS as the read-only `observer`
 * identity a third-party tool would use); its output, stdout and stderr.
 */
function dyad(args: readonly string[]): string {
  const state = labStatusReport(paths).state;
  const nats = {
    ...(state?.natsUrl === undefined ? {} : { NATS_URL: state.natsUrl }),
    ...(state?.natsCa === undefined ? {} : { NATS_CA: state.natsCa }),
    ...(state?.natsCreds === undefined
      ? {}
      : { NATS_CREDS: join(state.natsCreds, 'observer.creds') }),
  };
  const r = spawnSync(
    process.execPath,
    [join(repoRoot(), 'packages', 'cli', 'bin', 'dyad.js'), ...args],
    { encoding: 'utf8', env: { ...process.env, ...nats, DYAD_LAB_DIR: paths.dir } },
  );
  return (r.stdout + r.stderr).trimEnd();
}

out('▶ npm run lab -- up');
if ((await labUp([], io, paths)) !== 0) process.exit(1);

try {
  for (const ns of ['frontend', 'backend']) kubectl(['create', 'namespace', ns]);
  // The namespaces' default ServiceAccounts appear a moment later; pods need them.
  for (const ns of ['frontend', 'backend']) {
    while (
      spawnSync(toolPath('kubectl'), [
        '--kubeconfig',
        paths.kubeconfig,
        '-n',
        ns,
        'get',
        'sa',
        'default',
      ]).status !== 0
    ) {
      await sleep(100);
    }
  }
  kubectl(
    ['apply', '-f', '-'],
    PODS.map(
      (p) => `apiVersion: v1
kind: Pod
metadata: { name: ${p.name}, namespace: ${p.namespace}, labels: { app: ${p.name} } }
spec:
  nodeName: ${p.node}
  containers: [{ name: ${p.name}, image: none, ports: [{ name: ${p.portName}, containerPort: ${p.port} }] }]
`,
    ).join('---\n'),
  );
  out(kubectl(['wait', '--for=condition=Ready', 'pod', '--all', '-A', '--timeout=120s']).trimEnd());
  out(kubectl(['get', 'pods', '-A', '-o', 'wide']).trimEnd());
  while (listPodRecords(paths.pods).length < PODS.length) await sleep(100);

  out();
  out('▶ cross-node reachability, from each pod to the pods on the other nodes');
  const prober = new Prober({ podsDir: paths.pods });
  const results: Array<{ spec: ProbeSpecValue; ok: boolean }> = [];
  /** Probes until the answer is `want` (state reaches the nodes a moment after the apiserver). */
  const expectProbe = async (
    spec: ProbeSpecValue,
    want: 'connected' | 'blocked',
    label: string,
  ) => {
    let r = await prober.probe(spec, 1000);
    for (let i = 0; i < 20 && r.result !== want; i++) {
      await sleep(250);
      r = await prober.probe(spec, 1000);
    }
    const ok = r.result === want;
    results.push({ spec, ok });
    out(`  ${ok ? '✓' : '✗'} ${label}  ${r.result}${r.ms === undefined ? '' : ` (${r.ms} ms)`}`);
  };
  for (const from of PODS) {
    for (const to of PODS) {
      if (from === to) continue;
      for (const family of FAMILIES) {
        for (const protocol of ['ICMP', 'TCP', 'UDP'] as const) {
          const spec: ProbeSpecValue = {
            from: `${from.namespace}/${from.name}`,
            to: `${to.namespace}/${to.name}`,
            port: protocol === 'ICMP' ? 0 : to.port,
            protocol,
            family,
          };
          // A pod is reachable a moment after it is Running; give it a few tries.
          let r = await prober.probe(spec, 1000);
          for (let i = 0; i < 10 && r.result !== 'connected'; i++) {
            await sleep(200);
            r = await prober.probe(spec, 1000);
          }
          const ok = r.result === 'connected';
          results.push({ spec, ok });
          const what = protocol === 'ICMP' ? 'ping' : `${protocol} ${to.port}`;
          out(
            `  ${ok ? '✓' : '✗'} ${spec.from.padEnd(13)} (${from.node}) → ${spec.to.padEnd(13)} (${to.node})  ${family}  ${what.padEnd(9)} ${r.address ?? ''}  ${ok ? `${r.ms ?? 0} ms` : (r.reason ?? r.result)}`,
          );
        }
      }
    }
  }
  prober.close();

  out();
  out("▶ each node agent's endpoints (dyad endpoint list --node <node>)");
  for (const node of ['node-1', 'node-2', 'node-3']) {
    out(`$ npx dyad endpoint list --node ${node}`);
    out(dyad(['endpoint', 'list', '--node', node]));
  }

  out();
  out('▶ a dual-stack Service: backend/api behind one cluster IP per family');
  kubectl(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'api', namespace: 'backend' },
      spec: {
        ipFamilyPolicy: 'RequireDualStack',
        selector: { app: 'api' },
        ports: [{ name: 'grpc', port: 80, targetPort: 'grpc', protocol: 'TCP' }],
      },
    }),
  );
  const clusterIPs = kubectl([
    '-n',
    'backend',
    'get',
    'service',
    'api',
    '-o',
    'jsonpath={.spec.clusterIPs[*]}',
  ])
    .trim()
    .split(' ');
  for (const ip of clusterIPs) {
    await expectProbe(
      { from: 'frontend/web', to: ip, port: 80, protocol: 'TCP' },
      'connected',
      `frontend/web (node-1) → service backend/api ${ip.padEnd(22)} TCP 80 → api:9090`,
    );
  }
  out('$ npx dyad service list --node node-1');
  out(dyad(['service', 'list', '--node', 'node-1']));

  out();
  out('▶ a NetworkPolicy: backend/db admits only backend/api, on its sql port');
  kubectl(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'db-from-api', namespace: 'backend' },
      spec: {
        podSelector: { matchLabels: { app: 'db' } },
        policyTypes: ['Ingress'],
        ingress: [
          { from: [{ podSelector: { matchLabels: { app: 'api' } } }], ports: [{ port: 'sql' }] },
        ],
      },
    }),
  );
  for (const family of FAMILIES) {
    await expectProbe(
      { from: 'frontend/web', to: 'backend/db', port: 'sql', protocol: 'TCP', family },
      'blocked',
      `frontend/web (node-1) → backend/db (node-3)  ${family}  TCP 5432 `,
    );
    await expectProbe(
      { from: 'backend/api', to: 'backend/db', port: 'sql', protocol: 'TCP', family },
      'connected',
      `backend/api  (node-2) → backend/db (node-3)  ${family}  TCP 5432 `,
    );
  }
  out('$ npx dyad observe --verdict dropped --namespace backend --last 4');
  out(dyad(['observe', '--verdict', 'dropped', '--namespace', 'backend', '--last', '4']));

  const passed = results.filter((r) => r.ok).length;
  out();
  out(
    passed === results.length
      ? `✔ ${passed}/${results.length} checks passed: pods in 2 namespaces on 3 nodes reach each other across nodes over IPv4 and IPv6 (ping, TCP, UDP), a dual-stack Service answers on both cluster IPs, and a NetworkPolicy is enforced in both families.`
      : `✘ ${results.length - passed} of ${results.length} checks failed (see ✗ above; logs in ${paths.logs}).`,
  );
  if (keep) {
    out(
      `The lab keeps running. Try: KUBECONFIG=${paths.kubeconfig} tools/bin/kubectl get pods -A -o wide`,
    );
    out(
      '                           npx dyad lab probe frontend/web backend/db --port sql --protocol TCP --family IPv6',
    );
    out('Stop it with: npm run lab -- down');
  }
  process.exitCode = passed === results.length ? 0 : 1;
} finally {
  if (!keep) await labDown([], io, paths);
}
