import {
  routerIpcacheSubject,
  routerRouteSubject,
  routerServiceSubject,
  routerSyncSubject,
} from '@dyad/contracts';
import type {
  PayloadOf,
  RouterIpcacheEvent,
  RouterRouteEvent,
  RouterServiceEntryValue,
  RouterServiceEvent,
  RouterSyncEvent,
} from '@dyad/contracts';
import { RouterPublishError } from './errors.ts';
import type { ServiceChange } from './lb-table.ts';
import type { IpcacheEntry, NodeUpdate, RouteEntry } from './model.ts';

export type IpcacheMessage = PayloadOf<typeof RouterIpcacheEvent>;
export type RouteMessage = PayloadOf<typeof RouterRouteEvent>;
export type SyncMessage = PayloadOf<typeof RouterSyncEvent>;
export type ServiceMessage = PayloadOf<typeof RouterServiceEvent>;

/** Where the router's output goes and what is there now: JetStream in production, a map in tests. */
export interface RouterStreamPort {
  publishIpcache(subject: string, payload: IpcacheMessage, ttl?: string): Promise<void>;
  publishRoute(subject: string, payload: RouteMessage, ttl?: string): Promise<void>;
  publishSync(subject: string, payload: SyncMessage, ttl?: string): Promise<void>;
  publishService(subject: string, payload: ServiceMessage, ttl?: string): Promise<void>;
  /** The stored state of every node, from the stream's last value per subject. */
  readAll(): Promise<Map<string, StoredNode>>;
}

/** One node's state as the stream holds it. */
export interface StoredNode {
  readonly ipcache: Map<string, IpcacheEntry>;
  readonly routes: Map<string, RouteEntry>;
  /** Services by `namespace/name`. */
  readonly services: Map<string, RouterServiceEntryValue>;
  sync: SyncMessage | undefined;
  /** The highest revision on any of its subjects, tombstones included. */
  maxRevision: number;
}

export function emptyStored(): StoredNode {
  return {
    ipcache: new Map(),
    routes: new Map(),
    services: new Map(),
    sync: undefined,
    maxRevision: 0,
  };
}

/** Builds stored node states from decoded stream messages (last value per subject). */
export function storedFromMessages(
  messages: Iterable<IpcacheMessage | RouteMessage | SyncMessage | ServiceMessage>,
): Map<string, StoredNode> {
  const out = new Map<string, StoredNode>();
  for (const m of messages) {
    let n = out.get(m.node);
    if (n === undefined) out.set(m.node, (n = emptyStored()));
    n.maxRevision = Math.max(n.maxRevision, m.revision);
    if ('entry' in m) n.ipcache.set(m.entry.prefix, m.entry);
    else if ('route' in m) n.routes.set(m.route.cidr, m.route);
    else if ('service' in m) n.services.set(`${m.service.namespace}/${m.service.name}`, m.service);
    else if ('ipcacheEntries' in m) n.sync = m;
  }
  return out;
}

export interface PublishOptions {
  /** Nats-TTL of tombstones, e.g. `24h`: long enough for any agent to have seen them. */
  readonly tombstoneTtl: string;
  /** Publishes in flight at once. */
  readonly concurrency: number;
  readonly now?: () => Date;
}

export interface PublishResult {
  readonly messages: number;
}

/**
 * Publishes updates: every entry first, then each node's sync message, so a sync is stored
 * after everything it counts. Failures do not stop the others; they are thrown together at the
 * end, and the caller repairs the stream with a reconcile.
 */
export async function publishUpdates(
  port: RouterStreamPort,
  updates: readonly NodeUpdate[],
  opts: PublishOptions,
): Promise<PublishResult> {
  const tasks: Array<() => Promise<void>> = [];
  for (const u of updates) {
    const { node, revision } = u;
    for (const prefix of u.ipcacheDeletes) {
      tasks.push(() =>
        port.publishIpcache(
          routerIpcacheSubject(node, prefix),
          { op: 'delete', node, revision, prefix },
          opts.tombstoneTtl,
        ),
      );
    }
    for (const entry of u.ipcacheUpserts) {
      tasks.push(() =>
        port.publishIpcache(routerIpcacheSubject(node, entry.prefix), {
          op: 'upsert',
          node,
          revision,
          entry,
        }),
      );
    }
    for (const cidr of u.routeDeletes) {
      tasks.push(() =>
        port.publishRoute(
          routerRouteSubject(node, cidr),
          { op: 'delete', node, revision, cidr },
          opts.tombstoneTtl,
        ),
      );
    }
    for (const route of u.routeUpserts) {
      tasks.push(() =>
        port.publishRoute(routerRouteSubject(node, route.cidr), {
          op: 'upsert',
          node,
          revision,
          route,
        }),
      );
    }
  }
  const failures: unknown[] = [];
  await runLimited(tasks, opts.concurrency, failures);
  if (failures.length > 0) throw publishFailure(failures, tasks.length);
  const at = (opts.now?.() ?? new Date()).toISOString();
  const syncs = updates.map(
    (u) => () =>
      port.publishSync(
        routerSyncSubject(u.node),
        {
          op: u.gone ? 'delete' : 'upsert',
          node: u.node,
          revision: u.revision,
          ipcacheEntries: u.ipcacheEntries,
          routes: u.routes,
          at,
        },
        u.gone ? opts.tombstoneTtl : undefined,
      ),
  );
  await runLimited(syncs, opts.concurrency, failures);
  if (failures.length > 0) throw publishFailure(failures, syncs.length);
  return { messages: tasks.length + syncs.length };
}

/** Publishes Service upserts and removals (tombstones) of one revision; failures thrown together. */
export async function publishServiceChanges(
  port: RouterStreamPort,
  changes: readonly ServiceChange[],
  revision: number,
  opts: PublishOptions,
): Promise<PublishResult> {
  const tasks: Array<() => Promise<void>> = [];
  for (const c of changes) {
    const node = c.node;
    for (const key of c.deletes) {
      const slash = key.indexOf('/');
      const namespace = key.slice(0, slash);
      const name = key.slice(slash + 1);
      tasks.push(() =>
        port.publishService(
          routerServiceSubject(node, namespace, name),
          { op: 'delete', node, revision, namespace, name },
          opts.tombstoneTtl,
        ),
      );
    }
    for (const service of c.upserts) {
      tasks.push(() =>
        port.publishService(routerServiceSubject(node, service.namespace, service.name), {
          op: 'upsert',
          node,
          revision,
          service,
        }),
      );
    }
  }
  const failures: unknown[] = [];
  await runLimited(tasks, opts.concurrency, failures);
  if (failures.length > 0) throw publishFailure(failures, tasks.length);
  return { messages: tasks.length };
}

function publishFailure(failures: unknown[], total: number): RouterPublishError {
  const first = failures[0];
  return new RouterPublishError(
    `${failures.length} of ${total} publishes failed; first: ${first instanceof Error ? first.message : String(first)}`,
    { cause: first },
  );
}

async function runLimited(
  tasks: ReadonlyArray<() => Promise<void>>,
  limit: number,
  failures: unknown[],
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const task = tasks[next++];
      if (task === undefined) return;
      try {
        await task();
      } catch (err) {
        failures.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, tasks.length)) }, worker));
}
