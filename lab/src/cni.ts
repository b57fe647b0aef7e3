import { Family } from '@dyad/netaddr';
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { LabError } from './errors.ts';

/** A CNI network configuration list (`.conflist`), as a runtime reads it from disk. */
export const Conflist = z.object({
  cniVersion: z.string(),
  name: z.string(),
  disableCheck: z.boolean().optional(),
  plugins: z.array(z.looseObject({ type: z.string() })).min(1),
});
export type ConflistValue = z.output<typeof Conflist>;

/** What a runtime knows about the sandbox it asks the plugins to wire. */
export interface RuntimeConf {
  readonly containerId: string;
  /** Path of the sandbox's netns, e.g. /run/netns/<name>. */
  readonly netns: string;
  readonly ifName: string;
  /** `CNI_ARGS` pairs (containerd sends K8S_POD_NAMESPACE, K8S_POD_NAME, ...). */
  readonly args: ReadonlyArray<readonly [string, string]>;
}

export interface CniExec {
  /** Directories searched for plugin binaries (`CNI_PATH`). */
  readonly path: readonly string[];
  /** Runs the plugin in the node's netns, as the runtime on that node would. */
  readonly netns: string;
  readonly timeoutMs?: number;
}

export const CniResult = z.looseObject({
  cniVersion: z.string(),
  interfaces: z.array(z.looseObject({ name: z.string() })).optional(),
  ips: z
    .array(
      z.looseObject({
        address: z.string(),
        gateway: z.string().optional(),
        interface: z.number().optional(),
      }),
    )
    .default([]),
});
export type CniResultValue = z.output<typeof CniResult>;

/** A plugin answered with an error (CNI error object) or did not answer properly. */
export class CniPluginError extends LabError {
  override name = 'CniPluginError';
  readonly code: number;
  constructor(message: string, code: number, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * ADD through every plugin of the list in order, each getting the previous one's result as
 * `prevResult`, as libcni does. Returns the last result.
 */
export async function cniAdd(
  list: ConflistValue,
  rt: RuntimeConf,
  exec: CniExec,
): Promise<CniResultValue> {
  let prev: unknown;
  for (const plugin of list.plugins) {
    const out = await invoke('ADD', list, plugin, rt, exec, prev);
    const parsed = CniResult.safeParse(out);
    if (!parsed.success)
      throw new CniPluginError(`${plugin.type} ADD: result is not a CNI result`, 999);
    prev = parsed.data;
  }
  return prev as CniResultValue;
}

/** DEL through the plugins in reverse order with the cached ADD result as `prevResult`. */
export async function cniDel(
  list: ConflistValue,
  rt: RuntimeConf,
  exec: CniExec,
  cached: CniResultValue | undefined,
): Promise<void> {
  for (const plugin of [...list.plugins].reverse()) {
    await invoke('DEL', list, plugin, rt, exec, cached);
  }
}

function findPlugin(type: string, path: readonly string[]): string {
  for (const dir of path) {
    const candidate = join(dir, type);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next directory
    }
  }
  throw new CniPluginError(`plugin ${type} not found in CNI_PATH ${path.join(':')}`, 999);
}

async function invoke(
  command: 'ADD' | 'DEL',
  list: ConflistValue,
  plugin: Record<string, unknown> & { type: string },
  rt: RuntimeConf,
  exec: CniExec,
  prevResult: unknown,
): Promise<unknown> {
  const binary = findPlugin(plugin.type, exec.path);
  const config = {
    ...plugin,
    cniVersion: list.cniVersion,
    name: list.name,
    ...(prevResult === undefined ? {} : { prevResult }),
  };
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: rt.containerId,
    CNI_NETNS: rt.netns,
    CNI_IFNAME: rt.ifName,
    CNI_ARGS: rt.args.map(([k, v]) => `${k}=${v}`).join(';'),
    CNI_PATH: exec.path.join(':'),
  };
  const { code, stdout, stderr } = await spawnWithInput(
    'nsenter',
    [`--net=/run/netns/${exec.netns}`, binary],
    env,
    JSON.stringify(config),
    exec.timeoutMs ?? 120_000,
  );
  if (code !== 0) {
    let detail = stdout.trim() || stderr.trim();
    let errCode = 999;
    try {
      const e = JSON.parse(stdout) as { code?: number; msg?: string; details?: string };
      errCode = e.code ?? 999;
      detail = `${e.msg ?? ''}${e.details ? `: ${e.details}` : ''}`;
    } catch {
      // not a CNI error object
    }
    throw new CniPluginError(`${plugin.type} ${command} exited ${code}: ${detail}`, errCode);
  }
  if (command === 'DEL') return undefined;
  try {
    return JSON.parse(stdout) as unknown;
  } catch (cause) {
    throw new CniPluginError(`${plugin.type} ADD printed no JSON: ${stdout.slice(0, 200)}`, 999, {
      cause,
    });
  }
}

function spawnWithInput(
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  input: string,
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: stderr + err.message });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** Pod addresses from a result, one per family, primary family first. */
export function podIpsFromResult(result: CniResultValue, families: readonly Family[]): string[] {
  const byFamily = new Map<Family, string>();
  for (const ip of result.ips) {
    const addr = ip.address.split('/')[0] ?? '';
    const f = addr.includes(':') ? Family.IPv6 : Family.IPv4;
    if (!byFamily.has(f)) byFamily.set(f, addr);
  }
  return families.map((f) => byFamily.get(f)).filter((a): a is string => a !== undefined);
}
