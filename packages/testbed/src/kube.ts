import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCa, createServiceAccountKeys, issueCert } from './certs.ts';
import type { KeyPair } from './certs.ts';
import { Family, parsePrefixLenient } from '@dyad/netaddr';
import { firstAddress, splitCidrs } from './cidr.ts';
import { probe200 } from './http.ts';
import type { TlsMaterial } from './http.ts';
import { freePorts, retryOnPortClash } from './ports.ts';
import { readLogTail, spawnLogged, waitUntilReady } from './process.ts';
import type { ExitInfo, ManagedProcess } from './process.ts';
import { keepFromEnv, makeTempDir, removeTempDir } from './reaper.ts';
import { toolPath } from './tools.ts';

/** Dual-stack service ranges from the test blocks (198.18.0.0/15, fd00::/8). */
export const DEFAULT_SERVICE_CLUSTER_IP_RANGE = '198.18.128.0/20,fd00:d1ad:5e::/112';

export type KubeComponent =
  'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler';

export interface KubeOptions {
  /** Directory holding the pinned binaries; default `<repo>/tools/bin`. */
  binDir?: string;
  /** Comma-separated, primary family first. */
  serviceClusterIpRange?: string;
  /** Also run kube-scheduler (default false: Dyad tests mostly create pods bound by hand or none). */
  scheduler?: boolean;
  /** Appended to a component's command line (later flags win, so this also overrides defaults). */
  extraArgs?: Partial<Record<KubeComponent, readonly string[]>>;
  /** Per component. */
  readyTimeoutMs?: number;
  /** Keep the temp dir (certs, etcd data, logs) after stop; default: env DYAD_KEEP_TESTBED=1. */
  keep?: boolean;
}

export interface KubeCluster {
  /** Admin kubeconfig (O=system:masters client cert). */
  readonly kubeconfigPath: string;
  /** https://127.0.0.1:<port> */
  readonly server: string;
  readonly dir: string;
  readonly etcdUrl: string;
  readonly serviceClusterIpRange: string;
  /** PEM file paths for clients that don't read kubeconfig. */
  readonly tls: { caPath: string; certPath: string; keyPath: string };
  readonly logPaths: Readonly<Partial<Record<KubeComponent, string>>>;
  /** Last `lines` lines of a component's log. */
  logTail(component: KubeComponent, lines?: number): string;
  /** Stops every component (reverse start order) and removes the temp dir. */
  stop(): Promise<void>;
  /**
   * Stops kube-apiserver and starts it again on the same port: watches break, clients must relist.
   * The apiserver drains in-flight requests on SIGTERM, which can take many seconds while
   * controllers are connected, so it is SIGKILLed after `graceMs` (default 5000).
   */
  restartApiserver(options?: { graceMs?: number }): Promise<void>;
  /** The kube-apiserver process running now: its pid, and when it exits (to restart it). */
  apiserver(): { readonly pid: number | undefined; readonly exited: Promise<ExitInfo> };
}

interface Paths {
  dir: string;
  ca: KeyPair;
  frontProxyCa: KeyPair;
  frontProxyClient: KeyPair;
  apiserver: KeyPair;
  admin: KeyPair;
  controllerManager: KeyPair;
  scheduler: KeyPair;
  saPrivate: string;
  saPublic: string;
}

const SA_ISSUER = 'https://kubernetes.default.svc.cluster.local';

function kubeconfig(server: string, caPath: string, client: KeyPair, user: string): string {
  // JSON strings are valid YAML scalars, so paths need no further quoting.
  const q = JSON.stringify;
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: dyad-testbed',
    '  cluster:',
    `    server: ${q(server)}`,
    `    certificate-authority: ${q(caPath)}`,
    'users:',
    `- name: ${q(user)}`,
    '  user:',
    `    client-certificate: ${q(client.certPath)}`,
    `    client-key: ${q(client.keyPath)}`,
    'contexts:',
    '- name: dyad-testbed',
    '  context:',
    '    cluster: dyad-testbed',
    `    user: ${q(user)}`,
    'current-context: dyad-testbed',
    '',
  ].join('\n');
}

async function makeCerts(dir: string, serviceRanges: readonly string[]): Promise<Paths> {
  const pki = join(dir, 'pki');
  mkdirSync(pki);
  const [ca, frontProxyCa] = await Promise.all([
    createCa(pki),
    // Without a request-header CA every delegating component (controller-manager, scheduler)
    // logs an error about it every few seconds.
    createCa(pki, 'dyad-testbed-front-proxy-ca', 'front-proxy-ca'),
  ]);
  const [frontProxyClient, apiserver, admin, controllerManager, scheduler, sa] = await Promise.all([
    issueCert(pki, frontProxyCa, {
      name: 'front-proxy-client',
      commonName: 'front-proxy-client',
      usage: 'client',
    }),
    issueCert(pki, ca, {
      name: 'apiserver',
      commonName: 'kube-apiserver',
      usage: 'server',
      dnsNames: [
        'localhost',
        'kubernetes',
        'kubernetes.default',
        'kubernetes.default.svc',
        'kubernetes.default.svc.cluster.local',
      ],
      ipAddresses: ['127.0.0.1', '::1', ...serviceRanges.map(firstAddress)],
    }),
    issueCert(pki, ca, {
      name: 'admin',
      commonName: 'dyad-admin',
      organization: 'system:masters',
      usage: 'client',
    }),
    issueCert(pki, ca, {
      name: 'controller-manager',
      commonName: 'system:kube-controller-manager',
      usage: 'client',
    }),
    issueCert(pki, ca, { name: 'scheduler', commonName: 'system:kube-scheduler', usage: 'client' }),
    createServiceAccountKeys(pki),
  ]);
  return {
    dir,
    ca,
    frontProxyCa,
    frontProxyClient,
    apiserver,
    admin,
    controllerManager,
    scheduler,
    saPrivate: sa.privateKeyPath,
    saPublic: sa.publicKeyPath,
  };
}

/**
 * Starts etcd, kube-apiserver (dual-stack service ranges, RBAC), kube-controller-manager (node IPAM
 * off: Dyad allocates pod CIDRs) and optionally kube-scheduler, all on free 127.0.0.1 ports in a
 * temp dir. Resolves once each is healthy; on failure stops what started and throws a StartupError
 * naming the component, with its log tail.
 */
export function startKube(options: KubeOptions = {}): Promise<KubeCluster> {
  return retryOnPortClash(() => startKubeOnce(options));
}

async function startKubeOnce(options: KubeOptions): Promise<KubeCluster> {
  const bin = (name: KubeComponent): string => toolPath(name, options.binDir);
  const binaries = {
    etcd: bin('etcd'),
    apiserver: bin('kube-apiserver'),
    controllerManager: bin('kube-controller-manager'),
    scheduler: options.scheduler ? bin('kube-scheduler') : '',
  };
  const serviceClusterIpRange = options.serviceClusterIpRange ?? DEFAULT_SERVICE_CLUSTER_IP_RANGE;
  const serviceRanges = splitCidrs(serviceClusterIpRange);
  const primary = serviceRanges[0];
  if (primary === undefined) throw new Error('serviceClusterIpRange is empty');
  const advertiseAddress = parsePrefixLenient(primary).family === Family.IPv4 ? '127.0.0.1' : '::1';
  const keep = options.keep ?? keepFromEnv();
  const timeoutMs = options.readyTimeoutMs ?? 120_000;
  const extra = (c: KubeComponent): readonly string[] => options.extraArgs?.[c] ?? [];

  const dir = makeTempDir('dyad-kube-', keep);
  const running: ManagedProcess[] = [];
  const logPaths: Partial<Record<KubeComponent, string>> = {};

  const teardown = async (): Promise<void> => {
    for (const proc of running.splice(0).reverse()) await proc.stop();
  };

  const launch = async (
    name: KubeComponent,
    command: string,
    args: readonly string[],
    probe: () => Promise<boolean | string>,
  ): Promise<ManagedProcess> => {
    const logPath = join(dir, `${name}.log`);
    logPaths[name] = logPath;
    const proc = spawnLogged({ name, command, args: [...args, ...extra(name)], logPath });
    running.push(proc);
    await waitUntilReady(proc, probe, { timeoutMs, what: 'healthy' });
    return proc;
  };

  try {
    const [etcdClientPort, etcdPeerPort, apiserverPort, controllerManagerPort, schedulerPort] =
      await freePorts(5);
    if (
      etcdClientPort === undefined ||
      etcdPeerPort === undefined ||
      apiserverPort === undefined ||
      controllerManagerPort === undefined ||
      schedulerPort === undefined
    ) {
      throw new Error('no free ports');
    }
    const paths = await makeCerts(dir, serviceRanges);
    const server = `https://127.0.0.1:${apiserverPort}`;
    const adminKubeconfig = join(dir, 'admin.kubeconfig');
    writeFileSync(
      adminKubeconfig,
      kubeconfig(server, paths.ca.certPath, paths.admin, 'dyad-admin'),
    );
    const controllerManagerKubeconfig = join(dir, 'controller-manager.kubeconfig');
    writeFileSync(
      controllerManagerKubeconfig,
      kubeconfig(
        server,
        paths.ca.certPath,
        paths.controllerManager,
        'system:kube-controller-manager',
      ),
    );
    const schedulerKubeconfig = join(dir, 'scheduler.kubeconfig');
    writeFileSync(
      schedulerKubeconfig,
      kubeconfig(server, paths.ca.certPath, paths.scheduler, 'system:kube-scheduler'),
    );
    const adminTls: TlsMaterial = {
      ca: readFileSync(paths.ca.certPath, 'utf8'),
      cert: readFileSync(paths.admin.certPath, 'utf8'),
      key: readFileSync(paths.admin.keyPath, 'utf8'),
    };

    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    // Plain HTTP is enough on loopback; fsync off because the data is thrown away.
    await launch(
      'etcd',
      binaries.etcd,
      [
        '--name=testbed',
        `--data-dir=${join(dir, 'etcd-data')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=testbed=${peerUrl}`,
        '--initial-cluster-state=new',
        '--unsafe-no-fsync=true',
      ],
      () => probe200(`${etcdUrl}/health`),
    );

    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      `--advertise-address=${advertiseAddress}`,
      `--secure-port=${apiserverPort}`,
      `--service-cluster-ip-range=${serviceClusterIpRange}`,
      `--client-ca-file=${paths.ca.certPath}`,
      `--tls-cert-file=${paths.apiserver.certPath}`,
      `--tls-private-key-file=${paths.apiserver.keyPath}`,
      `--service-account-issuer=${SA_ISSUER}`,
      `--api-audiences=${SA_ISSUER}`,
      `--service-account-key-file=${paths.saPublic}`,
      `--service-account-signing-key-file=${paths.saPrivate}`,
      '--authorization-mode=Node,RBAC',
      '--allow-privileged=true',
      // A loopback advertise address may not be written into the `kubernetes` Endpoints, so the
      // reconciler would only log errors.
      '--endpoint-reconciler-type=none',
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--requestheader-client-ca-file=${paths.frontProxyCa.certPath}`,
      '--requestheader-allowed-names=front-proxy-client',
      '--requestheader-username-headers=X-Remote-User',
      '--requestheader-group-headers=X-Remote-Group',
      '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      `--proxy-client-cert-file=${paths.frontProxyClient.certPath}`,
      `--proxy-client-key-file=${paths.frontProxyClient.keyPath}`,
    ];
    const apiserverReady = (): Promise<true | string> => probe200(`${server}/readyz`, adminTls);
    let apiserver = await launch(
      'kube-apiserver',
      binaries.apiserver,
      apiserverArgs,
      apiserverReady,
    );

    await launch(
      'kube-controller-manager',
      binaries.controllerManager,
      [
        `--kubeconfig=${controllerManagerKubeconfig}`,
        `--authentication-kubeconfig=${controllerManagerKubeconfig}`,
        `--authorization-kubeconfig=${controllerManagerKubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${controllerManagerPort}`,
        `--cert-dir=${join(dir, 'controller-manager-certs')}`,
        // Dyad allocates pod CIDRs itself.
        '--controllers=*,-node-ipam-controller',
        '--allocate-node-cidrs=false',
        `--service-account-private-key-file=${paths.saPrivate}`,
        `--root-ca-file=${paths.ca.certPath}`,
        '--use-service-account-credentials=true',
        `--cluster-signing-cert-file=${paths.ca.certPath}`,
        `--cluster-signing-key-file=${paths.ca.keyPath}`,
        '--cluster-name=dyad-testbed',
        '--leader-elect=false',
      ],
      () => probe200(`https://127.0.0.1:${controllerManagerPort}/healthz`, { insecure: true }),
    );

    if (options.scheduler) {
      await launch(
        'kube-scheduler',
        binaries.scheduler,
        [
          `--kubeconfig=${schedulerKubeconfig}`,
          `--authentication-kubeconfig=${schedulerKubeconfig}`,
          `--authorization-kubeconfig=${schedulerKubeconfig}`,
          '--bind-address=127.0.0.1',
          `--secure-port=${schedulerPort}`,
          `--cert-dir=${join(dir, 'scheduler-certs')}`,
          '--leader-elect=false',
        ],
        () => probe200(`https://127.0.0.1:${schedulerPort}/healthz`, { insecure: true }),
      );
    }

    return {
      kubeconfigPath: adminKubeconfig,
      server,
      dir,
      etcdUrl,
      serviceClusterIpRange,
      tls: {
        caPath: paths.ca.certPath,
        certPath: paths.admin.certPath,
        keyPath: paths.admin.keyPath,
      },
      logPaths,
      logTail: (component, lines = 30) => {
        const path = logPaths[component];
        if (path === undefined) return `(${component} was not started)`;
        return readLogTail(path, lines);
      },
      stop: async () => {
        await teardown();
        removeTempDir(dir, keep);
      },
      apiserver: () => ({ pid: apiserver.pid, exited: apiserver.exited }),
      restartApiserver: async (restart = {}) => {
        const index = running.indexOf(apiserver);
        await apiserver.stop(restart.graceMs ?? 5_000);
        const logPath = join(dir, 'kube-apiserver.log');
        const proc = spawnLogged({
          name: 'kube-apiserver',
          command: binaries.apiserver,
          args: [...apiserverArgs, ...extra('kube-apiserver')],
          logPath,
        });
        if (index >= 0) running[index] = proc;
        else running.push(proc);
        apiserver = proc;
        await waitUntilReady(proc, apiserverReady, { timeoutMs, what: 'healthy' });
      },
    };
  } catch (error) {
    await teardown();
    removeTempDir(dir, keep);
    throw error;
  }
}
