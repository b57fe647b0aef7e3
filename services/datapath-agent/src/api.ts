import { mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { dirname } from 'node:path';
import { AgentApi, AgentMonitor, formatIssues } from '@dyad/contracts';
import type {
  AgentApiBody,
  AgentApiErrorValue,
  AgentApiName,
  AgentStatusValue,
  RouterServiceEntryValue,
} from '@dyad/contracts';
import { directionName, monotonicNs } from '@dyad/libbpf-ts';
import { FAMILIES, Family } from '@dyad/netaddr';
import type { DatapathMapSet } from '@dyad/libbpf-ts';
import { z } from 'zod';
import type { EndpointManager, RestoreReport } from './endpoint-manager.ts';
import type { MapDrift } from './datapath/drift.ts';
import type { NodeDatapath } from './datapath/node.ts';
import { admitPeer, listenPrivate } from './private-socket.ts';
import { endpointState } from './reporter.ts';

/** What `dyad status` reads: the `/v1/status` schema in @dyad/contracts (agent-api.ts). */
export type AgentStatus = AgentStatusValue;

export interface ApiSources {
  readonly node: string;
  readonly agent: EndpointManager;
  readonly datapath: NodeDatapath;
  readonly startedAt: number;
  readonly natsConnected: () => boolean;
  readonly natsServers: readonly string[];
  readonly blocks: () => ReadonlyArray<{ family: Family; cidr: string; gateway: string }>;
  readonly restore: () => RestoreReport | undefined;
  readonly cniSocket: string;
  /** The router's Services for this node, by `namespace/name`. */
  readonly services: () => ReadonlyMap<string, RouterServiceEntryValue>;
  /** The flow exporter, when it runs: its counters for status, its stream for `/v1/monitor`. */
  /** The node's maps against its desired state, now. */
  readonly drift?: () => MapDrift;
  readonly flows?: {
    counters(): NonNullable<AgentStatusValue['flows']>;
    listen(l: (flow: unknown) => boolean): () => void;
  };
}

/** A monitor client further behind than this misses flows instead of growing the agent. */
const MONITOR_MAX_BUFFERED = 1 << 20;

export interface ApiServer {
  readonly path: string;
  close(): Promise<void>;
}

function count(it: Iterable<unknown>): number {
  let n = 0;
  const i = it[Symbol.iterator]();
  while (!i.next().done) n++;
  return n;
}

function mapsOf(m: DatapathMapSet): Array<{ name: string; entries: number; maxEntries: number }> {
  return [
    m.endpoints,
    m.ipcache,
    m.policy,
    m.policyCidr,
    m.conntrack.map,
    m.lbServices,
    m.lbBackends,
  ].map((map) => ({
    name: map.name,
    entries: count(map.keyBuffers()),
    maxEntries: map.info.maxEntries,
  }));
}

export function agentStatus(s: ApiSources): AgentStatus {
  const st = s.agent.status();
  const blocks = s.blocks();
  const eps = s.agent.endpoints();
  const seen = (fam: Family) =>
    eps.some((e) => (fam === Family.IPv4 ? e.ipv4 : e.ipv6) !== undefined);
  const restore = s.restore();
  return {
    node: s.node,
    ready: st.ready,
    details: st.details,
    uptimeS: Math.round((Date.now() - s.startedAt) / 1000),
    nats: { connected: s.natsConnected(), servers: [...s.natsServers] },
    families: FAMILIES.map((family) => {
      const b = blocks.find((x) => x.family === family);
      return b
        ? { family, enabled: true, cidr: b.cidr, gateway: b.gateway }
        : { family, enabled: blocks.length === 0 && seen(family) };
    }),
    endpoints: {
      ready: eps.filter((e) => e.phase === 'ready').length,
      pending: eps.filter((e) => e.phase !== 'ready').length,
    },
    maps: mapsOf(s.datapath.loaded.maps),
    writes: s.datapath.stats(),
    ...(restore ? { restore } : {}),
    ...(s.flows ? { flows: s.flows.counters() } : {}),
    cniSocket: s.cniSocket,
    pinDir: s.datapath.pinDir,
    ...(s.drift ? { drift: s.drift() } : {}),
  };
}

/** This agent's release: the version in its package.json, read once. */
function agentVersion(): string {
  const pkg = z
    .object({ version: z.string().min(1) })
    .parse(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')));
  return pkg.version;
}

/** What each path of the contract answers, typed by the contract's schema for that path. */
type Handlers = { readonly [K in AgentApiName]: (url: URL) => AgentApiBody<K> };

function handlers(s: ApiSources, version: string): Handlers {
  const maps = s.datapath.loaded.maps;
  return {
    version: () => ({ version, api: 'v1', node: s.node, runtime: process.version }),
    status: () => agentStatus(s),
    endpoints: () =>
      s.agent.endpoints().map((ep) => ({
        ...endpointState(ep, s.node),
        phase: ep.phase,
        ...(ep.ipv4 ? { gateway4: ep.ipv4.gateway } : {}),
        ...(ep.ipv6 ? { gateway6: ep.ipv6.gateway } : {}),
      })),
    // straight from the kernel, not the agent's mirror: what the datapath really holds
    bpfEndpoints: () =>
      [...maps.endpoints.entries()].map(([k, v]) => ({ address: k.address, ...v })),
    bpfIpcache: () => [...maps.ipcache.entries()].map(([k, v]) => ({ prefix: k.prefix, ...v })),
    bpfPolicy: () => [...maps.policy.entries()].map(([k, v]) => ({ ...k, ...v })),
    bpfCt: (url) => {
      const limit = Number(url.searchParams.get('limit') ?? '10000');
      const now = monotonicNs();
      const out: AgentApiBody<'bpfCt'> = [];
      for (const [k, v] of maps.conntrack.entries()) {
        if (out.length >= limit) break;
        out.push({
          ...k,
          expiresInS: Number(v.expiresNs - now) / 1e9,
          packets: Number(v.packets),
          bytes: Number(v.bytes),
          srcIdentity: v.srcIdentity,
          flags: v.flags,
        });
      }
      return out;
    },
    bpfMetrics: () =>
      [...maps.metrics.entriesPerCpu()].map(([k, vs]) => ({
        reason: k.reason,
        direction: directionName(k.direction) ?? k.direction,
        family: k.family,
        packets: vs.reduce((a, v) => a + Number(v.packets), 0),
        bytes: vs.reduce((a, v) => a + Number(v.bytes), 0),
      })),
    services: () =>
      [...s.services()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v),
    bpfLb: () =>
      [...maps.lbServices.entries()].map(([k, v]) => {
        const counts = new Map<number, number>();
        for (const id of maps.lbMaglev.lookup(v.id) ?? [])
          if (id !== 0) counts.set(id, (counts.get(id) ?? 0) + 1);
        return {
          ...k,
          ...v,
          slots: [...counts].map(([backendId, slots]) => {
            const b = maps.lbBackends.lookup(backendId);
            return {
              backendId,
              ...(b ? { address: b.address, port: b.port, backendFlags: b.flags } : {}),
              slots,
            };
          }),
        };
      }),
  };
}

/**
 * The answer to one GET: the handler's value checked against the contract before it leaves (a
 * few microseconds per entry), so a wrong shape is the agent's 500, never a client's puzzle.
 */
function answer(name: AgentApiName, table: Handlers, url: URL): { code: number; body: unknown } {
  const checked = AgentApi[name].schema.safeParse(table[name](url));
  if (checked.success) return { code: 200, body: checked.data };
  const error: AgentApiErrorValue = {
    error: `the answer to ${url.pathname} does not satisfy its contract: ${formatIssues(checked.error.issues).join('; ')}`,
  };
  return { code: 500, body: error };
}

/**
 * The agent's read-only API for the `dyad` CLI: JSON over HTTP on a unix socket (root only, no
 * TCP port). GET only.
 */
export interface ApiSocketLimits {
  /** Clients at once (`dyad` commands, monitors). */
  readonly maxConnections?: number;
  /** A client that has not sent its whole request in this long is cut off. */
  readonly requestTimeoutMs?: number;
  /** Peers allowed by uid (default: root and the agent's own uid). */
  readonly allowedUids?: readonly number[];
  readonly onRefused?: (why: string) => void;
}

export async function startApiServer(
  path: string,
  sources: ApiSources,
  limits: ApiSocketLimits = {},
): Promise<ApiServer> {
  const guard = {
    maxConnections: limits.maxConnections ?? 32,
    ...(limits.allowedUids === undefined ? {} : { allowedUids: limits.allowedUids }),
    onRefused: limits.onRefused ?? (() => undefined),
  };
  mkdirSync(dirname(path), { recursive: true });
  try {
    unlinkSync(path);
  } catch {
    // none left over
  }
  const table = handlers(sources, agentVersion());
  const byPath = new Map(
    (Object.keys(AgentApi) as AgentApiName[]).map((name) => [AgentApi[name].path, name]),
  );
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body)}\n`);
    };
    const fail = (code: number, body: AgentApiErrorValue) => send(code, body);
    if (req.method !== 'GET') {
      fail(405, { error: 'read-only API: GET only' });
      return;
    }
    if (url.pathname === AgentMonitor.path && sources.flows) {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      const stop = sources.flows.listen((flow) => {
        if (res.writableLength > MONITOR_MAX_BUFFERED) return false;
        res.write(`${JSON.stringify(flow)}\n`);
        return true;
      });
      res.on('close', stop);
      return;
    }
    const name = byPath.get(url.pathname);
    if (name === undefined) {
      fail(404, {
        error: `no such path ${url.pathname}`,
        paths: [...byPath.keys(), ...(sources.flows ? [AgentMonitor.path] : [])],
      });
      return;
    }
    try {
      const a = answer(name, table, url);
      send(a.code, a.body);
    } catch (e) {
      fail(500, { error: e instanceof Error ? e.message : String(e) });
    }
  });
  server.keepAliveTimeout = 1000;
  // An idle client holds no slot for long: the request (headers and body) must arrive in time;
  // a monitor stream, once answered, may stay quiet.
  server.requestTimeout = limits.requestTimeoutMs ?? 10_000;
  server.headersTimeout = Math.min(server.requestTimeout, 10_000);
  // Before http's own listener: a refused peer's bytes are never parsed.
  server.prependListener('connection', (sock: Socket) => {
    if (!admitPeer(sock, guard)) sock.destroy();
  });
  await listenPrivate(server, path, guard);
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        try {
          unlinkSync(path);
        } catch {
          // gone
        }
      }),
  };
}
