// Renders the chart with the pinned helm (tools/bin/helm) and parses the manifests, for the
// chart's tests.
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from '@dyad/testbed';

export const CHART_DIR = join(repoRoot(), 'deploy');
export const NAMESPACE = 'kube-system';
export const VARIANTS = ['ipv4', 'ipv6', 'dual'] as const;
export type Variant = (typeof VARIANTS)[number];

/** Node addresses of the NATS servers in the test renders, of the variant's primary family. */
export const TEST_NATS_ADDRESSES: Readonly<Record<Variant, readonly string[]>> = {
  ipv4: ['198.18.0.11', '198.18.0.12', '198.18.0.13'],
  ipv6: ['fd00:d1ad:0:1::11', 'fd00:d1ad:0:1::12', 'fd00:d1ad:0:1::13'],
  dual: ['198.18.0.11', '198.18.0.12', '198.18.0.13'],
};

/** A Kubernetes object as rendered: only the fields every object has are typed. */
export interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly [field: string]: unknown;
}

export function helmPath(): string {
  const path = join(repoRoot(), 'tools', 'bin', 'helm');
  try {
    accessSync(path, constants.X_OK);
  } catch (cause) {
    throw new Error(`${path} is missing: run \`npm run tools\` (or bash tools/build.sh helm)`, {
      cause,
    });
  }
  return path;
}

export function run(
  command: string,
  args: readonly string[],
  input?: string,
  env?: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      command,
      args,
      { maxBuffer: 64 * 1024 * 1024, ...(env === undefined ? {} : { env }) },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(input ?? '');
  });
}

export interface RenderOptions {
  /** `--set-json key=value` pairs, after the variant's values file. */
  readonly set?: Readonly<Record<string, unknown>>;
  /** Leave out the test NATS addresses (to see what the chart says without them). */
  readonly noNatsAddresses?: boolean;
}

/** `helm template` of one variant; resolves with helm's exit code and output. */
export async function helmTemplate(
  variant: Variant,
  opts: RenderOptions = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const set: Record<string, unknown> = {
    ...(opts.noNatsAddresses ? {} : { 'nats.nodeAddresses': TEST_NATS_ADDRESSES[variant] }),
    ...opts.set,
  };
  const args = [
    'template',
    'dyad',
    CHART_DIR,
    '--namespace',
    NAMESPACE,
    '-f',
    join(CHART_DIR, 'values', `${variant}.yaml`),
    ...Object.entries(set).flatMap(([k, v]) => ['--set-json', `${k}=${JSON.stringify(v)}`]),
  ];
  return run(helmPath(), args);
}

/** Renders a variant and returns its YAML; throws with helm's message when it fails. */
export async function renderYaml(variant: Variant, opts: RenderOptions = {}): Promise<string> {
  const r = await helmTemplate(variant, opts);
  if (r.code !== 0) throw new Error(`helm template (${variant}) failed: ${r.stderr}`);
  return r.stdout;
}

export function parseManifests(yamlText: string): Manifest[] {
  const out: Manifest[] = [];
  for (const doc of parseAllDocuments(yamlText)) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML: ${doc.errors[0]?.message}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    const m = value as Manifest;
    if (typeof m.kind !== 'string' || typeof m.apiVersion !== 'string') {
      throw new Error(`rendered a document that is no Kubernetes object: ${JSON.stringify(value)}`);
    }
    out.push(m);
  }
  return out;
}

export async function render(variant: Variant, opts: RenderOptions = {}): Promise<Manifest[]> {
  return parseManifests(await renderYaml(variant, opts));
}

export function find(manifests: readonly Manifest[], kind: string, name: string): Manifest {
  const m = manifests.find((x) => x.kind === kind && x.metadata.name === name);
  if (m === undefined) throw new Error(`no ${kind} ${name} rendered`);
  return m;
}

// The parts of a workload the tests read, typed only as far as they are read.
export interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: {
    readonly fieldRef?: { readonly fieldPath: string };
    readonly secretKeyRef?: { readonly name: string; readonly key: string };
  };
}
export interface Probe {
  readonly httpGet?: { readonly path: string; readonly port: string | number };
}
export interface SecurityContext {
  readonly privileged?: boolean;
  readonly runAsUser?: number;
  readonly runAsNonRoot?: boolean;
  readonly allowPrivilegeEscalation?: boolean;
  readonly readOnlyRootFilesystem?: boolean;
  readonly capabilities?: { readonly add?: readonly string[]; readonly drop?: readonly string[] };
}
export interface Container {
  readonly name: string;
  readonly image: string;
  readonly command?: readonly string[];
  readonly workingDir?: string;
  readonly env?: readonly EnvVar[];
  readonly ports?: readonly { readonly name?: string; readonly containerPort: number }[];
  readonly livenessProbe?: Probe;
  readonly readinessProbe?: Probe;
  readonly resources?: {
    readonly requests?: Readonly<Record<string, string>>;
    readonly limits?: Readonly<Record<string, string>>;
  };
  readonly securityContext?: SecurityContext;
  readonly volumeMounts?: readonly {
    readonly name: string;
    readonly mountPath: string;
    readonly mountPropagation?: string;
  }[];
}
export interface Volume {
  readonly name: string;
  readonly hostPath?: { readonly path: string; readonly type?: string };
  readonly configMap?: { readonly name: string };
  readonly secret?: { readonly secretName: string };
  readonly projected?: {
    readonly sources: readonly {
      readonly serviceAccountToken?: { readonly audience?: string };
      readonly secret?: { readonly name: string };
    }[];
  };
}
export interface PodSpec {
  readonly serviceAccountName?: string;
  readonly automountServiceAccountToken?: boolean;
  readonly hostNetwork?: boolean;
  readonly hostPID?: boolean;
  readonly dnsPolicy?: string;
  readonly priorityClassName?: string;
  readonly tolerations?: readonly Readonly<Record<string, unknown>>[];
  readonly initContainers?: readonly Container[];
  readonly containers: readonly Container[];
  readonly volumes?: readonly Volume[];
}
export interface Workload extends Manifest {
  readonly spec: {
    readonly replicas?: number;
    readonly strategy?: Readonly<Record<string, unknown>>;
    readonly updateStrategy?: Readonly<Record<string, unknown>>;
    readonly template: { readonly spec: PodSpec };
    readonly [field: string]: unknown;
  };
}

export const WORKLOAD_KINDS = new Set(['Deployment', 'DaemonSet', 'StatefulSet']);

export function workloads(manifests: readonly Manifest[]): Workload[] {
  return manifests.filter((m) => WORKLOAD_KINDS.has(m.kind)) as Workload[];
}

export function workload(manifests: readonly Manifest[], kind: string, name: string): Workload {
  return find(manifests, kind, name) as Workload;
}

export function envOf(c: Container, name: string): EnvVar | undefined {
  return c.env?.find((e) => e.name === name);
}
