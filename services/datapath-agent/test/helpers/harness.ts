// The harness of the agent's kernel tests (not the lab: no Kubernetes, no router):
// per-run-prefixed network namespaces, bpffs pins and sockets; a real nats-server, real ipam
// processes and real agent processes (each inside its node's netns via nsenter --net, which keeps
// the mount namespace and so bpffs); pods added and removed by the real cnitool running dyad-cni.
import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Bus } from '@dyad/bus';
import { connectBus } from '@dyad/bus';
import {
  AddressesAllocated,
  AddressesReleased,
  IPAM_ALLOCATIONS_STREAM,
  IPAM_NODES_STREAM,
  IpamNodeEvent,
  K8sStream,
  NodeEvent,
  ipamAllocSubject,
  ipamNodeSubject,
  k8sObjectSubject,
} from '@dyad/contracts';
import type { NodeBlockValue } from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';
import {
  childPassThroughEnv,
  freePort,
  makeTempDir,
  probe200,
  removeTempDir,
  spawnLogged,
  startNats,
  toolPath,
  waitUntilReady,
} from '@dyad/testbed';
import type { ManagedProcess, NatsServer } from '@dyad/testbed';
import { CNI_BIN_DIR, DATAPATH_OBJECT, REPO_ROOT } from './build.ts';

const execFileAsync = promisify(execFile);
const HERE = fileURLToPath(new URL('./', import.meta.url));
export const AGENT_MAIN = join(REPO_ROOT, 'services', 'datapath-agent', 'src', 'main.ts');
export const IPAM_MAIN = join(REPO_ROOT, 'services', 'ipam', 'src', 'main.ts');
export const PING = join(HERE, 'ping.ts');
export const RELAY = join(HERE, 'relay.ts');
export const CNI_CACHE = '/var/lib/cni';

export function run(cmd: string, args: readonly string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Dual-stack IPAM pools of the lab (test ranges only). */
export const IPAM_ENV: Readonly<Record<string, string>> = {
  DYAD_ENABLE_IPV4: 'true',
  DYAD_ENABLE_IPV6: 'true',
  DYAD_CLUSTER_POOL_IPV4_CIDR: '198.18.0.0/15',
  DYAD_CLUSTER_POOL_IPV6_CIDR: 'fd00:d1ad::/104',
};

export interface AgentHandle {
  readonly node: string;
  readonly netns: string;
  readonly dir: string;
  readonly cniSocket: string;
  readonly apiSocket: string;
  readonly pinDir: string;
  readonly stateFile: string;
  readonly network: string;
  /** NETCONFPATH holding this node's .conflist. */
  readonly confDir: string;
  proc: ManagedProcess;
}

export interface CniRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** GET a path of an agent's read-only API. */
export function apiGet(
  socketPath: string,
  path: string,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown });
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('API timeout')));
    req.end();
  });
}

export class AgentHarness {
  readonly prefix = `dy${randomBytes(2).toString('hex')}`;
  readonly dir: string;
  readonly pinRoot: string;
  #nats: NatsServer | undefined;
  #bus: Bus | undefined;
  readonly #netns: string[] = [];
  readonly #procs = new Set<ManagedProcess>();
  readonly #children = new Set<ChildProcess>();
  readonly #networks = new Set<string>();
  readonly #onExit = () => this.cleanupSync();
  /** ipam's settings: the dual-stack pools above unless a test needs others (small blocks). */
  readonly ipamEnv: Readonly<Record<string, string>>;

  constructor(opts: { ipamEnv?: Readonly<Record<string, string>> } = {}) {
    this.ipamEnv = { ...IPAM_ENV, ...opts.ipamEnv };
    this.dir = makeTempDir(`dyad-agent-${this.prefix}-`, process.env['DYAD_KEEP_TESTBED'] === '1');
    this.pinRoot = `/sys/fs/bpf/${this.prefix}`;
    process.once('exit', this.#onExit);
  }

  get nats(): NatsServer {
    if (this.#nats === undefined) throw new Error('AgentHarness: start() first');
    return this.#nats;
  }

  get bus(): Bus {
    if (this.#bus === undefined) throw new Error('AgentHarness: start() first');
    return this.#bus;
  }

  async start(ipamReplicas = 1): Promise<void> {
    this.#nats = await startNats();
    this.#bus = await connectBus({
      servers: this.nats.url,
      name: 'agent-test',
      logger: createLogger({ service: 'agent-test', level: 'silent' }),
      registry: createMetrics({ processMetrics: false }),
      reconnect: { timeWaitMs: 200, jitterMs: 100 },
    });
    await this.bus.ensureStreams([K8sStream]);
    for (let i = 0; i < ipamReplicas; i++) await this.startIpam(`ipam-${i}`);
  }

  readonly #ipam = new Set<ManagedProcess>();

  /** Stops every ipam replica (to test an absent IPAM). */
  async stopIpam(): Promise<void> {
    for (const p of this.#ipam) await p.stop(5000);
    this.#ipam.clear();
  }

  async startIpam(name: string): Promise<ManagedProcess> {
    const port = await freePort();
    const proc = spawnLogged({
      name,
      command: process.execPath,
      args: [IPAM_MAIN],
      logPath: join(this.dir, `${name}.log`),
      env: {
        PATH: process.env['PATH'],
        HOME: process.env['HOME'],
        NATS_URL: this.nats.url,
        DYAD_HEALTH_HOST: '127.0.0.1',
        DYAD_HEALTH_PORT: String(port),
        LOG_LEVEL: 'info',
        ...childPassThroughEnv(),
        ...this.ipamEnv,
      },
    });
    this.#procs.add(proc);
    this.#ipam.add(proc);
    await waitUntilReady(proc, () => probe200(`http://127.0.0.1:${port}/readyz`), {
      timeoutMs: 60_000,
      what: 'ready',
    });
    return proc;
  }

  /**
   * NATS as seen from inside a node netns: nats://127.0.0.1:<port> there, relayed over a unix
   * socket to the real server on the host's loopback.
   */
  async #natsRelay(netns: string): Promise<string> {
    const path = join(this.dir, `${netns}-nats.sock`);
    await this.#relay(
      spawn(process.execPath, [RELAY, 'unix-to-tcp', path, String(this.nats.port)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
      netns,
    );
    const port = await freePort();
    await this.#relay(
      spawnIn(`/run/netns/${netns}`, [process.execPath, RELAY, 'tcp-to-unix', String(port), path]),
      netns,
    );
    return `nats://127.0.0.1:${port}`;
  }

  async #relay(child: ChildProcess, netns: string): Promise<void> {
    this.spawnChild(child);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`nats relay for ${netns} exited ${code}`)));
    });
  }

  /** NATS URL per node netns. */
  readonly natsUrlIn = new Map<string, string>();

  /**
   * A node namespace (lo up, a NATS relay), announced to IPAM as kube-bridge would (unless
   * `announce` is false: ipam then gives it no block).
   */
  async addNode(name: string, announce = true): Promise<string> {
    const netns = `${this.prefix}-${name}`;
    run('ip', ['netns', 'add', netns]);
    this.#netns.push(netns);
    run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    this.natsUrlIn.set(netns, await this.#natsRelay(netns));
    if (announce) await this.announceNode(name);
    return netns;
  }

  async announceNode(name: string): Promise<void> {
    await this.bus.jsPublish(NodeEvent, k8sObjectSubject('Node', undefined, name), {
      op: 'upsert',
      object: {
        metadata: { uid: `uid-${name}`, name, resourceVersion: '1', labels: {} },
        spec: { podCIDRs: [], unschedulable: false },
        status: { addresses: [], ready: true },
      },
    });
  }

  /** The .conflist Dyad installs, in a NETCONFPATH directory of its own. */
  writeConflist(
    confDir: string,
    network: string,
    cniSocket: string,
    extra: Record<string, unknown> = {},
    cniVersion = '1.1.0',
  ): void {
    mkdirSync(confDir, { recursive: true });
    writeFileSync(
      join(confDir, `10-${network}.conflist`),
      JSON.stringify(
        {
          cniVersion,
          name: network,
          plugins: [{ type: 'dyad-cni', agentSocket: cniSocket, mtu: 1500, ...extra }],
        },
        null,
        2,
      ),
    );
    this.#networks.add(network);
  }

  readonly #agents = new Map<string, AgentHandle>();

  /**
   * Starts (or restarts) an agent inside the node's netns; by default waits until it is ready
   * (restored, with its blocks, connected to NATS), else only until its API answers.
   */
  async startAgent(
    node: string,
    existing?: AgentHandle,
    env: Record<string, string> = {},
    waitReady = true,
  ): Promise<AgentHandle> {
    const netns = `${this.prefix}-${node}`;
    const dir = join(this.dir, node);
    mkdirSync(dir, { recursive: true });
    const h: Omit<AgentHandle, 'proc'> = existing ?? {
      node,
      netns,
      dir,
      cniSocket: join(dir, 'cni.sock'),
      apiSocket: join(dir, 'api.sock'),
      pinDir: `${this.pinRoot}/${node}`,
      stateFile: join(dir, 'state', 'state.json'),
      network: `${this.prefix}-${node}`,
      confDir: join(dir, 'net.d'),
    };
    if (!existing) this.writeConflist(h.confDir, h.network, h.cniSocket);
    const proc = spawnLogged({
      name: `agent-${node}`,
      command: 'nsenter',
      args: [`--net=/run/netns/${netns}`, process.execPath, AGENT_MAIN],
      logPath: join(dir, 'agent.log'),
      env: {
        PATH: process.env['PATH'],
        HOME: process.env['HOME'],
        NATS_URL: this.natsUrlIn.get(netns) ?? this.nats.url,
        DYAD_NODE_NAME: node,
        DYAD_CNI_SOCKET: h.cniSocket,
        DYAD_API_SOCKET: h.apiSocket,
        DYAD_PIN_DIR: h.pinDir,
        DYAD_STATE_DIR: join(dir, 'state'),
        DYAD_BPF_OBJECT: DATAPATH_OBJECT,
        DYAD_HEALTH_PORT: '0',
        LOG_LEVEL: 'debug',
        ...childPassThroughEnv(),
        ...env,
      },
    });
    this.#procs.add(proc);
    const handle: AgentHandle = { ...h, proc };
    this.#agents.set(node, handle);
    await waitUntilReady(
      proc,
      async () => {
        if (!existsSync(h.apiSocket)) return 'no API socket yet';
        const r = await apiGet(h.apiSocket, '/v1/status');
        if (!waitReady) return true;
        const s = r.body as { ready?: boolean; details?: string; nats?: { connected?: boolean } };
        return s.ready === true && s.nats?.connected === true ? true : (s.details ?? 'not ready');
      },
      { timeoutMs: 60_000, what: 'ready' },
    );
    return handle;
  }

  async status(a: AgentHandle): Promise<Record<string, unknown>> {
    return (await apiGet(a.apiSocket, '/v1/status')).body as Record<string, unknown>;
  }

  /** A pod network namespace (empty; the CNI call gives it its interface). */
  addPodNetns(name: string): string {
    const netns = `${this.prefix}-${name}`;
    run('ip', ['netns', 'add', netns]);
    this.#netns.push(netns);
    run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    return `/run/netns/${netns}`;
  }

  /** Runs the real cnitool: `cnitool <cmd> <network> <netns>` with dyad-cni on CNI_PATH. */
  async cnitool(
    a: Pick<AgentHandle, 'confDir' | 'network'>,
    cmd: 'add' | 'check' | 'del' | 'gc' | 'status',
    netnsPath: string,
    pod?: { namespace: string; name: string },
    env: Record<string, string> = {},
  ): Promise<CniRun> {
    try {
      const r = await execFileAsync(toolPath('cnitool'), [cmd, a.network, netnsPath], {
        encoding: 'utf8',
        timeout: 60_000,
        env: {
          PATH: process.env['PATH'],
          CNI_PATH: CNI_BIN_DIR,
          NETCONFPATH: a.confDir,
          ...(pod
            ? {
                CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name};K8S_POD_UID=uid-${pod.name}`,
              }
            : {}),
          ...env,
        },
      });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const err = e as { code?: unknown; stdout?: string; stderr?: string };
      return {
        code: typeof err.code === 'number' ? err.code : 1,
        stdout: err.stdout ?? '',
        stderr: err.stderr ?? '',
      };
    }
  }

  /** Runs dyad-cni directly with a hand-made environment and stdin (bad-input tests). */
  async dyadCni(env: Record<string, string>, stdin: string): Promise<CniRun> {
    return new Promise((resolve) => {
      const child = execFile(
        join(CNI_BIN_DIR, 'dyad-cni'),
        [],
        { env, encoding: 'utf8', timeout: 60_000 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
      child.stdin?.end(stdin);
    });
  }

  /** Runs a command inside a netns (network namespace only). */
  async nsExec(netns: string, argv: readonly string[], timeoutMs = 60_000): Promise<CniRun> {
    try {
      const r = await execFileAsync('nsenter', [`--net=${netns}`, ...argv], {
        encoding: 'utf8',
        timeout: timeoutMs,
      });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const err = e as { code?: unknown; stdout?: string; stderr?: string };
      return {
        code: typeof err.code === 'number' ? err.code : 1,
        stdout: err.stdout ?? '',
        stderr: err.stderr ?? '',
      };
    }
  }

  /**
   * ICMP echo from a pod netns path; resolves with the counts. `progress.received` counts the
   * replies as they come, for a test that waits for traffic rather than for time.
   */
  async ping(
    podNetns: string,
    dst: string,
    count = 1,
    timeoutMs = 1500,
    intervalMs = 0,
    progress: { received: number } = { received: 0 },
  ): Promise<{ sent: number; received: number }> {
    const argv = [
      process.execPath,
      PING,
      dst,
      String(count),
      String(timeoutMs),
      String(intervalMs),
    ];
    const child = spawn('nsenter', [`--net=${podNetns}`, ...argv], {
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: count * (timeoutMs + intervalMs) + 30_000,
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      progress.received = out.split('\n').filter((l) => l.startsWith('reply ')).length;
    });
    await new Promise<void>((resolve) => child.on('close', () => resolve()));
    const last = out.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(last) as { sent: number; received: number };
    } catch {
      return { sent: count, received: 0 };
    }
  }

  /** Host-side links of a node whose names start with the agent's veth prefix. */
  vethsOf(nodeNetns: string, prefix = 'dy'): string[] {
    const links = JSON.parse(run('ip', ['-n', nodeNetns, '-j', 'link', 'show'])) as Array<{
      ifname: string;
      link_type?: string;
    }>;
    return links.map((l) => l.ifname).filter((n) => n.startsWith(prefix) && n.length === 15);
  }

  /**
   * Whether the node's agent holds addresses for a container, as its state file says (it is
   * written before any CNI answer that depends on it).
   */
  ipamHeld(node: string, containerId: string): boolean {
    const a = this.#agents.get(node);
    if (!a) throw new Error(`no agent for node ${node}`);
    const state = JSON.parse(readFileSync(a.stateFile, 'utf8')) as {
      ipam: { holders: Array<{ containerId: string }> };
    };
    return state.ipam.holders.some((h) => h.containerId === containerId);
  }

  /** The node's blocks as ipam last published them (empty when none). */
  async nodeBlocks(node: string): Promise<NodeBlockValue[]> {
    const m = await this.bus.snapshot([IpamNodeEvent], {
      stream: IPAM_NODES_STREAM,
      filterSubjects: [ipamNodeSubject(node)],
    });
    const v = [...m.values()][0]?.value;
    return v?.op === 'upsert' ? v.blocks : [];
  }

  /** The last allocation record the node's agent published for a container, if any. */
  async allocationRecord(
    node: string,
    containerId: string,
  ): Promise<'allocated' | 'released' | undefined> {
    const m = await this.bus.snapshot([AddressesAllocated, AddressesReleased], {
      stream: IPAM_ALLOCATIONS_STREAM,
      filterSubjects: [ipamAllocSubject(node, containerId)],
    });
    const v = [...m.values()][0]?.value;
    if (v === undefined) return undefined;
    return 'allocatedAt' in v ? 'allocated' : 'released';
  }

  spawnChild(child: ChildProcess): void {
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
  }

  async stopAgent(a: AgentHandle): Promise<void> {
    await a.proc.stop(5000);
  }

  cleanupSync(): void {
    process.removeListener('exit', this.#onExit);
    for (const c of this.#children) c.kill('SIGKILL');
    for (const p of this.#procs) p.signal('SIGKILL');
    for (const ns of [...this.#netns].reverse()) {
      try {
        run('ip', ['netns', 'del', ns]);
      } catch {
        // gone already
      }
    }
    this.#netns.length = 0;
    rmSync(this.pinRoot, { recursive: true, force: true });
    // cnitool caches results per network name; ours carry the run prefix
    for (const sub of ['results']) {
      const d = join(CNI_CACHE, sub);
      if (!existsSync(d)) continue;
      for (const f of readdirSync(d))
        if (f.startsWith(this.prefix)) rmSync(join(d, f), { force: true });
    }
  }

  async cleanup(): Promise<void> {
    for (const p of this.#procs) await p.stop(3000).catch(() => undefined);
    await this.#bus?.close().catch(() => undefined);
    await this.#nats?.stop().catch(() => undefined);
    this.cleanupSync();
    removeTempDir(this.dir, process.env['DYAD_KEEP_TESTBED'] === '1');
  }
}

export function spawnIn(netns: string, argv: readonly string[]): ChildProcess {
  const [cmd, ...rest] = argv;
  return spawn('nsenter', [`--net=${netns}`, cmd ?? 'true', ...rest], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}
