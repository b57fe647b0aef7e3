// `npm run demo`: a real kube-apiserver and nats-server on loopback, kube-bridge as its own
// process, objects made with kubectl, and what arrives on NATS printed as it arrives.
// `npm run demo -- --keep` leaves everything running until Ctrl-C so you can try kubectl yourself.
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ALL_CONTRACTS, ALL_STREAMS, K8S_STREAM } from '@dyad/contracts';
import type { EndpointSliceObject, PodObject, ServiceObject } from '@dyad/contracts';
import { connectBus } from '@dyad/bus';
import { createLogger, createMetrics } from '@dyad/telemetry';
import { repoRoot, startKube, startNats, toolPath } from '@dyad/testbed';

const keep = process.argv.includes('--keep');
const say = (s: string) => process.stdout.write(s + '\n');

say(
  '▶ starting nats-server (JetStream) and etcd + kube-apiserver + kube-controller-manager (dual-stack)…',
);
const [nats, kube] = await Promise.all([startNats(), startKube()]);
say(`  NATS        ${nats.url}`);
say(`  apiserver   ${kube.server}`);
say(`  KUBECONFIG  ${kube.kubeconfigPath}`);

const bridge = spawn(process.execPath, [join(repoRoot(), 'services/kube-bridge/src/main.ts')], {
  env: {
    ...process.env,
    KUBECONFIG: kube.kubeconfigPath,
    NATS_URL: nats.url,
    DYAD_HEALTH_PORT: '0',
    LOG_LEVEL: 'warn',
  },
  stdio: ['ignore', 'inherit', 'inherit'],
});
say(`▶ kube-bridge started (pid ${bridge.pid})`);

let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    bridge.kill('SIGTERM');
    await Promise.allSettled([bus.close(), nats.stop(), kube.stop()]);
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
bridge.on('exit', (code) => {
  if (!stopping) {
    say(`kube-bridge exited with ${code}`);
    void shutdown(1);
  }
});

const bus = await connectBus({
  servers: nats.url,
  name: 'demo-reader',
  logger: createLogger({ service: 'demo', level: 'silent' }),
  registry: createMetrics(),
});
await bus.ensureStreams(ALL_STREAMS);

// Print every event from the start of the stream as it arrives.
const seen = new Map<string, number>();
const interesting = (subject: string) =>
  !subject.includes('.kube-') && !subject.includes('.default.kubernetes');
await bus.consume(ALL_CONTRACTS, { stream: K8S_STREAM, deliverPolicy: 'all' }, (d) => {
  const v = d.value as { op: string; object: { metadata: { name: string; namespace?: string } } };
  const kind = d.meta.type.split('.')[3] ?? '?';
  seen.set(kind, (seen.get(kind) ?? 0) + 1);
  if (!interesting(d.subject)) return;
  const name = [v.object.metadata.namespace, v.object.metadata.name].filter(Boolean).join('/');
  let detail = '';
  if (kind === 'pod') {
    const pod = v.object as unknown as PodObject;
    detail = `node=${pod.spec.nodeName ?? '-'} podIPs=${pod.status.podIPs.join(',') || '-'}`;
  } else if (kind === 'endpointslice') {
    const e = v.object as unknown as EndpointSliceObject;
    detail = `${e.addressType} service=${e.serviceName ?? '-'} endpoints=${e.endpoints.flatMap((x) => x.addresses).join(',') || '-'}`;
  } else if (kind === 'service') {
    const s = (v.object as unknown as ServiceObject).spec;
    detail = `${s.ipFamilyPolicy ?? ''} ipFamilies=${s.ipFamilies.join(',')} clusterIPs=${s.clusterIPs.join(',')}`;
  }
  say(`  ◀ ${d.meta.type.padEnd(32)} ${v.op.padEnd(7)} ${name.padEnd(28)} ${detail}`);
});

function kubectl(args: string[], input?: string): void {
  say(`▶ kubectl ${args.join(' ')}`);
  const r = spawnSync(toolPath('kubectl'), ['--kubeconfig', kube.kubeconfigPath, ...args], {
    input,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
}
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

await pause(1500);
kubectl(['create', 'namespace', 'demo']);
const manifest = join(kube.dir, 'demo.yaml');
writeFileSync(
  manifest,
  `apiVersion: v1
kind: Node
metadata: { name: demo-node-1, labels: { kubernetes.io/hostname: demo-node-1 } }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: demo }
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: allow-web, namespace: demo }
spec:
  podSelector: { matchLabels: { app: web } }
  policyTypes: [Ingress]
  ingress: [{ ports: [{ port: 8080 }], from: [{ ipBlock: { cidr: "fd00:beef::/64" } }] }]
`,
);
kubectl(['apply', '-f', manifest]);
await pause(1000);
// The default ServiceAccount appears a moment after the namespace; retry the pod until it does.
for (let i = 0; ; i++) {
  const r = spawnSync(
    toolPath('kubectl'),
    [
      '--kubeconfig',
      kube.kubeconfigPath,
      '-n',
      'demo',
      'run',
      'web-0',
      '--image=none',
      '--labels=app=web',
      '--port=8080',
      '--overrides={"spec":{"nodeName":"demo-node-1"}}',
    ],
    { encoding: 'utf8' },
  );
  if (r.status === 0) break;
  if (i > 50) throw new Error(r.stderr);
  await pause(200);
}
say('▶ kubectl -n demo run web-0 --image=none --labels=app=web --port=8080 (bound to demo-node-1)');
await pause(1000);
kubectl([
  '-n',
  'demo',
  'patch',
  'pod',
  'web-0',
  '--subresource=status',
  '--type=merge',
  '-p',
  JSON.stringify({
    status: {
      phase: 'Running',
      podIP: '198.18.4.5',
      podIPs: [{ ip: '198.18.4.5' }, { ip: 'fd00:d1ad:4::5' }],
    },
  }),
]);
await pause(1500);
kubectl(['-n', 'demo', 'delete', 'pod', 'web-0', '--grace-period=0', '--force']);
await pause(2000);

say('\n▶ events per kind in DYAD_K8S so far:');
for (const [kind, n] of [...seen].sort()) say(`  ${kind.padEnd(14)} ${n}`);
if (keep) {
  say(
    `\nEverything keeps running. Try: tools/bin/kubectl --kubeconfig ${kube.kubeconfigPath} get pods -A`,
  );
  say('Ctrl-C stops it all.');
} else {
  await shutdown(0);
}
