// Kubelet mode: Dyad installed into the lab's cluster the way users install it, `helm install`
// of deploy/ with the images `npm run images` built (imported into every node's containerd, so
// pullPolicy Never). Only what a lab cluster lacks is added here: the chart's values for the
// lab's pools, addresses and apiserver path, and three local volumes for NATS's claims (the lab
// has no storage provisioner).
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { LabPaths } from './paths.ts';
import type { Family } from '@dyad/netaddr';
import type { LabPlan } from './plan.ts';
import { NODE_APISERVER } from './kubelet-mode.ts';

const exec = promisify(execFile);

export const RELEASE = 'dyad';
export const NAMESPACE = 'kube-system';
/** The StorageClass of the lab's NATS volumes (no provisioner: the lab creates them). */
export const NATS_STORAGE_CLASS = 'dyad-lab-local';
/** The chart's non-root user (values.yaml `serviceUser`), owner of the NATS volumes. */
const SERVICE_USER = 65534;

const bare = (cidr: string): string => cidr.split('/')[0] ?? cidr;

/** How many of the lab's nodes carry a NATS server: the chart's 3, or every node if fewer. */
export function natsNodeCount(plan: LabPlan): number {
  return Math.min(3, plan.nodes.length);
}

/** The chart's values for this lab, beside deploy/values/<family>.yaml. Pure. */
export function labChartValues(plan: LabPlan): Record<string, unknown> {
  const primary: Family = plan.families[0] ?? 'IPv4';
  const pool = (f: Family): Record<string, unknown> => {
    const p = plan.podPools[f];
    if (p === undefined) return {};
    return f === 'IPv4'
      ? { clusterPoolIPv4PodCIDRList: [p.cidr], clusterPoolIPv4MaskSize: p.maskSize }
      : { clusterPoolIPv6PodCIDRList: [p.cidr], clusterPoolIPv6MaskSize: p.maskSize };
  };
  const natsNodes = plan.nodes.slice(0, natsNodeCount(plan));
  const uplinks = [...new Set(plan.nodes.map((n) => n.uplink))];
  const [apiHost, apiPort] = [
    NODE_APISERVER.slice(0, NODE_APISERVER.lastIndexOf(':')),
    NODE_APISERVER.slice(NODE_APISERVER.lastIndexOf(':') + 1),
  ];
  return {
    ipv4: { enabled: plan.options.ipv4 },
    ipv6: { enabled: plan.options.ipv6 },
    ipam: { primaryFamily: primary, ...pool('IPv4'), ...pool('IPv6') },
    image: { pullPolicy: 'Never' },
    logLevel: process.env.DYAD_LAB_LOG_LEVEL ?? 'info',
    agent: {
      uplinks: uplinks.join(','),
      // host-side veths named with the run's prefix, as the lab's cleanup and tests find them
      extraEnv: [{ name: 'DYAD_VETH_PREFIX', value: plan.prefix }],
    },
    // no kube-proxy in the lab: kube-bridge goes to the apiserver relay in its node's netns
    kubeBridge: { apiServer: { host: apiHost, port: apiPort } },
    nats: {
      replicas: natsNodes.length,
      nodeAddresses: natsNodes.map((n) => {
        const a = n.addresses[primary];
        if (a === undefined) throw new Error(`${n.name} has no ${primary} address`);
        return bare(a);
      }),
      storage: { size: '1Gi', storageClassName: NATS_STORAGE_CLASS },
      jetstream: { maxMemoryStore: '64MB', maxFileStore: '512MB' },
      image: { pullPolicy: 'Never' },
    },
  };
}

/** A StorageClass without provisioner and one local PersistentVolume per NATS node. Pure. */
export function natsVolumes(
  plan: LabPlan,
  dirOf: (node: string) => string,
): Record<string, unknown>[] {
  const sc = {
    apiVersion: 'storage.k8s.io/v1',
    kind: 'StorageClass',
    metadata: { name: NATS_STORAGE_CLASS },
    provisioner: 'kubernetes.io/no-provisioner',
    // the scheduler picks the node first, then the volume on it
    volumeBindingMode: 'WaitForFirstConsumer',
  };
  const pvs = plan.nodes.slice(0, natsNodeCount(plan)).map((n) => ({
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: `${plan.prefix}-nats-${n.name}` },
    spec: {
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteOnce'],
      persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: NATS_STORAGE_CLASS,
      local: { path: dirOf(n.name) },
      nodeAffinity: {
        required: {
          nodeSelectorTerms: [
            {
              matchExpressions: [
                { key: 'kubernetes.io/hostname', operator: 'In', values: [n.name] },
              ],
            },
          ],
        },
      },
    },
  }));
  return [sc, ...pvs];
}

export interface HelmLab {
  readonly paths: LabPaths;
  readonly plan: LabPlan;
}

function tool(paths: LabPaths, name: string): string {
  return join(paths.root, 'tools', 'bin', name);
}

export function natsVolumeDir(paths: LabPaths, node: string): string {
  return join(paths.dir, 'kubelet', node, 'nats');
}

/** The helm command line (also what the README shows). */
export function helmInstallArgs(paths: LabPaths, plan: LabPlan, valuesFile: string): string[] {
  const family =
    plan.options.ipv4 && plan.options.ipv6 ? 'dual' : plan.options.ipv4 ? 'ipv4' : 'ipv6';
  return [
    'install',
    RELEASE,
    join(paths.root, 'deploy'),
    '--namespace',
    NAMESPACE,
    '--kubeconfig',
    paths.kubeconfig,
    '-f',
    join(paths.root, 'deploy', 'values', `${family}.yaml`),
    '-f',
    valuesFile,
  ];
}

/** How the lab's own clients (readiness, tests, the CLI) reach the chart's NATS. */
export interface LabNatsAccess {
  /** A token of ServiceAccount dyad-operator for the NATS audience: the `operator` identity. */
  readonly tokenFile: string;
  /** The CA of the servers' certificate, from Secret dyad-nats. */
  readonly caFile: string;
}

/** The ServiceAccount the auth callout admits as `operator` (read-only: the CLI, readiness). */
export const OPERATOR_SERVICE_ACCOUNT = 'dyad-operator';

/**
 * The lab's own NATS credential, as an operator would make one: ServiceAccount dyad-operator and
 * a token for the NATS audience (a day: the lab's lifetime), and the CA the chart generated.
 */
export async function labNatsAccess(paths: LabPaths): Promise<LabNatsAccess> {
  const kubectl = (args: readonly string[]) =>
    exec(tool(paths, 'kubectl'), ['--kubeconfig', paths.kubeconfig, '-n', NAMESPACE, ...args]);
  await kubectl(['create', 'serviceaccount', OPERATOR_SERVICE_ACCOUNT]).catch((err: unknown) => {
    if (!String(err).includes('AlreadyExists')) throw err;
  });
  const token = await kubectl([
    'create',
    'token',
    OPERATOR_SERVICE_ACCOUNT,
    '--audience',
    'dyad-nats',
    '--duration',
    '24h',
  ]);
  const ca = await kubectl(['get', 'secret', 'dyad-nats', '-o', 'jsonpath={.data.ca\\.crt}']);
  const creds = join(paths.dir, 'creds');
  const tls = join(paths.dir, 'tls');
  mkdirSync(creds, { recursive: true, mode: 0o700 });
  mkdirSync(tls, { recursive: true });
  const tokenFile = join(creds, 'operator.token');
  writeFileSync(tokenFile, `${token.stdout.trim()}\n`, { mode: 0o600 });
  chmodSync(tokenFile, 0o600);
  const caFile = join(tls, 'ca.crt');
  writeFileSync(caFile, Buffer.from(ca.stdout.trim(), 'base64'));
  return { tokenFile, caFile };
}

/** Creates the NATS volumes and runs `helm install`; returns when helm has created the objects. */
export async function helmInstall(lab: HelmLab): Promise<void> {
  const { paths, plan } = lab;
  const dir = join(paths.dir, 'helm');
  mkdirSync(dir, { recursive: true });
  for (const n of plan.nodes.slice(0, natsNodeCount(plan))) {
    const d = natsVolumeDir(paths, n.name);
    mkdirSync(d, { recursive: true });
    chownSync(d, SERVICE_USER, SERVICE_USER);
  }
  const volumes = join(dir, 'nats-volumes.json');
  writeFileSync(
    volumes,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: natsVolumes(plan, (node) => natsVolumeDir(paths, node)),
    }),
  );
  await exec(tool(paths, 'kubectl'), ['--kubeconfig', paths.kubeconfig, 'apply', '-f', volumes]);
  const values = join(dir, 'values.json');
  writeFileSync(values, JSON.stringify(labChartValues(plan), null, 2) + '\n');
  await exec(tool(paths, 'helm'), helmInstallArgs(paths, plan, values), {
    maxBuffer: 16 * 1024 * 1024,
  });
}
