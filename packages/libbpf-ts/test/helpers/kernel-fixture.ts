import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { z } from 'zod';

const execFileAsync = promisify(execFile);

const HELPERS = fileURLToPath(new URL('./', import.meta.url));
export const AGENT_SCRIPT = `${HELPERS}node-agent.ts`;
export const PING_SCRIPT = `${HELPERS}ping.ts`;
export const ECHO_SCRIPT = `${HELPERS}echo.ts`;
export const RAW_SCRIPT = `${HELPERS}raw.ts`;
export const WHO_SCRIPT = `${HELPERS}who.ts`;

const LinkJson = z.array(
  z.object({ ifindex: z.number(), ifname: z.string(), address: z.string().optional() }),
);

export interface Pod {
  readonly name: string;
  readonly netns: string;
  readonly node: Node;
  readonly v4: string;
  readonly v6: string;
  /** host-side veth in the node netns */
  readonly hostIf: string;
  readonly hostIfindex: number;
  readonly hostMac: string;
  readonly mac: string;
}

export interface Node {
  readonly name: string;
  readonly netns: string;
  readonly pinDir: string;
}

export interface Uplink {
  readonly a: { node: Node; ifname: string; ifindex: number; v4: string; v6: string };
  readonly b: { node: Node; ifname: string; ifindex: number; v4: string; v6: string };
}

function run(cmd: string, args: readonly string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Default gateway every pod uses; each host-side veth holds it (v4 /32, v6 link-local). */
export const POD_GW4 = '198.18.0.1';
export const POD_GW6 = 'fe80::1';

/**
 * Network namespaces, veths and a bpffs pin dir, all named with one random per-run prefix and
 * all removed by cleanup(). Test addresses are 198.18.0.0/15 and fd00::/8 only.
 */
export class KernelFixture {
  readonly prefix: string;
  readonly pinRoot: string;
  readonly #netns: string[] = [];
  readonly #children = new Set<ChildProcess>();
  #ifCount = 0;

  readonly #onExit = () => this.cleanup();

  constructor() {
    this.prefix = `dy${randomBytes(2).toString('hex')}`;
    this.pinRoot = `/sys/fs/bpf/${this.prefix}`;
    // a worker that dies without running afterAll still removes what it made
    process.once('exit', this.#onExit);
  }

  addNode(name: string): Node {
    const netns = `${this.prefix}-${name}`;
    run('ip', ['netns', 'add', netns]);
    this.#netns.push(netns);
    run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    // bpf_fib_lookup refuses to route unless forwarding is on in the node
    this.nsExec(netns, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    this.nsExec(netns, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.forwarding=1']);
    return { name, netns, pinDir: `${this.pinRoot}/${name}` };
  }

  #link(netns: string, ifname: string): { ifindex: number; address: string } {
    const links = LinkJson.parse(
      JSON.parse(run('ip', ['-n', netns, '-j', 'link', 'show', 'dev', ifname])),
    );
    const l = links[0];
    if (!l?.address) throw new Error(`no link ${ifname} in ${netns}`);
    return { ifindex: l.ifindex, address: l.address };
  }

  addPod(node: Node, name: string, v4: string, v6: string): Pod {
    const netns = `${this.prefix}-${name}`;
    run('ip', ['netns', 'add', netns]);
    this.#netns.push(netns);
    const hostIf = `${this.prefix}h${this.#ifCount++}`;
    run('ip', [
      '-n',
      node.netns,
      'link',
      'add',
      hostIf,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      netns,
    ]);
    run('ip', ['-n', node.netns, 'link', 'set', hostIf, 'up']);
    run('ip', ['-n', node.netns, 'addr', 'add', `${POD_GW4}/32`, 'dev', hostIf]);
    run('ip', ['-n', node.netns, 'addr', 'add', `${POD_GW6}/64`, 'dev', hostIf, 'nodad']);
    run('ip', ['-n', node.netns, 'route', 'add', `${v4}/32`, 'dev', hostIf]);
    run('ip', ['-n', node.netns, '-6', 'route', 'add', `${v6}/128`, 'dev', hostIf]);
    run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    run('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
    run('ip', ['-n', netns, 'addr', 'add', `${v4}/32`, 'dev', 'eth0']);
    run('ip', ['-n', netns, 'addr', 'add', `${v6}/128`, 'dev', 'eth0', 'nodad']);
    run('ip', ['-n', netns, 'route', 'add', POD_GW4, 'dev', 'eth0', 'scope', 'link']);
    run('ip', ['-n', netns, 'route', 'add', 'default', 'via', POD_GW4, 'dev', 'eth0']);
    run('ip', ['-n', netns, '-6', 'route', 'add', 'default', 'via', POD_GW6, 'dev', 'eth0']);
    const host = this.#link(node.netns, hostIf);
    const pod = this.#link(netns, 'eth0');
    return {
      name,
      netns,
      node,
      v4,
      v6,
      hostIf,
      hostIfindex: host.ifindex,
      hostMac: host.address,
      mac: pod.address,
    };
  }

  /** A veth between two node netns, addressed in both families. */
  link(
    a: Node,
    av4: string,
    av6: string,
    b: Node,
    bv4: string,
    bv6: string,
    plen4 = 24,
    plen6 = 64,
  ): Uplink {
    const an = `${this.prefix}u${this.#ifCount++}`;
    const bn = `${this.prefix}u${this.#ifCount++}`;
    run('ip', [
      '-n',
      a.netns,
      'link',
      'add',
      an,
      'type',
      'veth',
      'peer',
      'name',
      bn,
      'netns',
      b.netns,
    ]);
    for (const [ns, ifn, v4, v6] of [
      [a.netns, an, av4, av6],
      [b.netns, bn, bv4, bv6],
    ] as const) {
      run('ip', ['-n', ns, 'addr', 'add', `${v4}/${plen4}`, 'dev', ifn]);
      run('ip', ['-n', ns, 'addr', 'add', `${v6}/${plen6}`, 'dev', ifn, 'nodad']);
      run('ip', ['-n', ns, 'link', 'set', ifn, 'up']);
    }
    return {
      a: { node: a, ifname: an, ifindex: this.#link(a.netns, an).ifindex, v4: av4, v6: av6 },
      b: { node: b, ifname: bn, ifindex: this.#link(b.netns, bn).ifindex, v4: bv4, v6: bv6 },
    };
  }

  /** Runs a command inside a netns (network namespace only; mounts, and so bpffs, unchanged). */
  nsExec(netns: string, argv: readonly string[]): string {
    const [cmd, ...rest] = argv;
    if (cmd === undefined) throw new Error('empty command');
    return run('nsenter', [`--net=/run/netns/${netns}`, cmd, ...rest]);
  }

  async nsExecAsync(
    netns: string,
    argv: readonly string[],
    timeoutMs = 20_000,
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const r = await execFileAsync('nsenter', [`--net=/run/netns/${netns}`, ...argv], {
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

  /** Runs a node script in a netns with this process's Node binary. */
  async nodeScript(netns: string, script: string, args: readonly string[], timeoutMs = 30_000) {
    return this.nsExecAsync(netns, [process.execPath, script, ...args], timeoutMs);
  }

  /** Loads/attaches/fills a node's datapath from a process inside the node netns. */
  async runAgent(node: Node, spec: unknown): Promise<unknown> {
    const r = await this.nodeScript(node.netns, AGENT_SCRIPT, [JSON.stringify(spec)]);
    if (r.code !== 0)
      throw new Error(`node agent in ${node.netns} failed (${r.code}): ${r.stderr}${r.stdout}`);
    const last = r.stdout.trim().split('\n').pop() ?? '{}';
    return JSON.parse(last) as unknown;
  }

  /** ICMP echo from a pod; true when every request got its reply. */
  async ping(pod: Pod, dst: string, count = 1, timeoutMs = 1500): Promise<boolean> {
    const r = await this.nodeScript(pod.netns, PING_SCRIPT, [
      dst,
      String(count),
      String(timeoutMs),
    ]);
    return r.code === 0;
  }

  /** Starts a node script in a pod that runs until cleanup; killed with the fixture. */
  spawnIn(pod: Pod, script: string, args: readonly string[]): ChildProcess {
    const child = spawn(
      'nsenter',
      [`--net=/run/netns/${pod.netns}`, process.execPath, script, ...args],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    this.#children.add(child);
    child.on('exit', () => this.#children.delete(child));
    return child;
  }

  async #serve(pod: Pod, script: string, args: readonly string[]): Promise<void> {
    const child = this.spawnIn(pod, script, args);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`${script} exited ${code}`)));
    });
  }

  /** Starts an echo server (TCP and UDP, both families) in a pod; resolves once listening. */
  async echoServer(pod: Pod, ports: readonly number[]): Promise<void> {
    await this.#serve(pod, ECHO_SCRIPT, ['server', ...ports.map(String)]);
  }

  /** A server that answers every TCP connection and UDP datagram with `name` (who.ts). */
  async whoServer(pod: Pod, name: string, ports: readonly number[]): Promise<void> {
    await this.#serve(pod, WHO_SCRIPT, ['server', name, ...ports.map(String)]);
  }

  /**
   * `count` round trips to a who server from a pod or a node's own netns: the names that
   * answered (with `request` "peer": "name client-address"), or the failure.
   */
  async who(
    from: Pick<Pod, 'netns'>,
    proto: 'tcp' | 'udp',
    dst: string,
    port: number,
    count = 1,
    timeoutMs = 1500,
    request = 'who',
  ): Promise<{ names: string[]; refused: boolean; ok: boolean; stderr: string }> {
    const r = await this.nodeScript(from.netns, WHO_SCRIPT, [
      'client',
      proto,
      dst,
      String(port),
      String(timeoutMs),
      String(count),
      request,
    ]);
    return {
      names: r.stdout.split('\n').filter((l) => l !== ''),
      refused: r.code === 3,
      ok: r.code === 0,
      stderr: r.stderr,
    };
  }

  /** One echo round trip from a pod; true when the reply matched. */
  async echo(
    pod: Pod,
    proto: 'tcp' | 'udp' | 'udp-refused',
    dst: string,
    port: number,
    timeoutMs = 1500,
    size?: number,
  ): Promise<boolean> {
    const r = await this.nodeScript(pod.netns, ECHO_SCRIPT, [
      'client',
      proto,
      dst,
      String(port),
      String(timeoutMs),
      ...(size === undefined ? [] : [String(size)]),
    ]);
    return r.code === 0;
  }

  /**
   * Sends raw Ethernet frames out of a device in a netns (AF_PACKET: through its tc egress).
   * `cpu` pins the sender, and so the softirq that runs the receiving veth's programs.
   */
  async sendFrames(
    netns: string,
    ifname: string,
    frames: readonly Buffer[],
    cpu?: number,
  ): Promise<void> {
    const argv = [process.execPath, RAW_SCRIPT, 'send', ifname];
    const child = spawn(
      'nsenter',
      [
        `--net=/run/netns/${netns}`,
        ...(cpu === undefined ? argv : ['taskset', '-c', String(cpu), ...argv]),
      ],
      { stdio: ['pipe', 'ignore', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    child.stdin.end(frames.map((f) => f.toString('hex')).join('\n') + '\n');
    const code = await exited;
    if (code !== 0) throw new Error(`raw send on ${ifname} in ${netns} failed (${code}): ${err}`);
  }

  /**
   * Starts counting frames that arrive on a device and contain `marker`; resolves once the
   * capture listens. `count` resolves after `windowMs`, or once `stopAfter` frames arrived.
   */
  async capture(
    netns: string,
    ifname: string,
    marker: Buffer,
    windowMs: number,
    stopAfter = 1,
  ): Promise<{ count: Promise<number>; stop: () => void }> {
    const child = spawn(
      'nsenter',
      [
        `--net=/run/netns/${netns}`,
        process.execPath,
        RAW_SCRIPT,
        'capture',
        ifname,
        marker.toString('hex'),
        String(windowMs),
        String(stopAfter),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    this.#children.add(child);
    let out = '';
    const count = new Promise<number>((resolve, reject) => {
      child.on('exit', (code) => {
        this.#children.delete(child);
        const n = Number(out.trim().split('\n').pop());
        if (code === 0 && Number.isInteger(n)) resolve(n);
        else reject(new Error(`capture on ${ifname} in ${netns} exited ${code}: ${out}`));
      });
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) resolve();
      });
      count.catch(reject);
    });
    return { count, stop: () => child.stdin.end() };
  }

  cleanup(): void {
    process.removeListener('exit', this.#onExit);
    for (const c of this.#children) c.kill('SIGKILL');
    this.#children.clear();
    for (const ns of this.#netns.reverse()) {
      try {
        run('ip', ['netns', 'del', ns]);
      } catch {
        // already gone
      }
    }
    this.#netns.length = 0;
    rmSync(this.pinRoot, { recursive: true, force: true });
  }
}
