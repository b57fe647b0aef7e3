import { backoffDelay } from '@dyad/bus';
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { makeInformer } from '@kubernetes/client-node';
import type { WatchedKind } from './kinds.ts';

export type ObjectOp = 'upsert' | 'delete';

export interface KindWatcherHooks {
  readonly onObject: (op: ObjectOp, obj: KubernetesObject) => void;
  /** After every complete list, once the informer's cache holds it. */
  readonly onListed: (objects: readonly KubernetesObject[]) => void;
  readonly onError: (err: unknown, retryInMs: number) => void;
  /**
   * The watch's resourceVersion expired (410 Gone) and the informer lists again by itself. The
   * informer forgets its resourceVersion only on a 410, so a second list by one informer is one.
   */
  readonly onExpired?: () => void;
}

/**
 * Keeps one informer per kind alive. client-node's informer relists by itself after a 410, but
 * stops on any other error (API server down, connection refused): then a fresh informer with an
 * empty cache is made after a backoff, and its first list is followed by a reconcile, so deletes
 * missed while the watch was down still reach the stream.
 */
export class KindWatcher {
  readonly #kc: KubeConfig;
  readonly #kind: WatchedKind;
  readonly #hooks: KindWatcherHooks;
  #informer: ReturnType<typeof makeInformer<KubernetesObject>> | undefined;
  #generation = 0;
  /** Failures since the last list that worked: the next relist waits longer each time. */
  #failures = 0;
  #backoffMs = 0;
  #retry: NodeJS.Timeout | undefined;
  #stopped = true;
  #listed = false;

  constructor(kc: KubeConfig, kind: WatchedKind, hooks: KindWatcherHooks) {
    this.#kc = kc;
    this.#kind = kind;
    this.#hooks = hooks;
  }

  get kind(): WatchedKind {
    return this.#kind;
  }

  /** True once a list completed; false again while a replacement informer has not listed yet. */
  get synced(): boolean {
    return this.#listed;
  }

  /** The objects the current informer holds. */
  cached(): readonly KubernetesObject[] {
    return this.#informer?.list() ?? [];
  }

  start(): void {
    this.#stopped = false;
    this.#spawn();
  }

  /** Drops the current watch and cache and lists again from scratch. */
  relist(): void {
    if (this.#stopped) return;
    this.#spawn();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    this.#generation++;
    const inf = this.#informer;
    this.#informer = undefined;
    await inf?.stop();
  }

  #spawn(): void {
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    this.#retry = undefined;
    const old = this.#informer;
    if (old !== undefined) void old.stop();
    const gen = ++this.#generation;
    const current = () => gen === this.#generation && !this.#stopped;
    this.#listed = false;
    let lists = 0;
    const list = async () => {
      if (lists++ > 0 && current()) this.#hooks.onExpired?.();
      const result = await this.#kind.list();
      // The informer fills its cache synchronously right after this resolves; report the list
      // once that has happened.
      setImmediate(() => {
        if (!current()) return;
        this.#listed = true;
        this.#failures = 0;
        this.#backoffMs = 0;
        this.#hooks.onListed(result.items);
      });
      return result;
    };
    const inf = makeInformer<KubernetesObject>(this.#kc, this.#kind.path, list);
    this.#informer = inf;
    const emit = (op: ObjectOp) => (obj: KubernetesObject) => {
      if (current()) this.#hooks.onObject(op, obj);
    };
    inf.on('add', emit('upsert'));
    inf.on('update', emit('upsert'));
    inf.on('delete', emit('delete'));
    inf.on('error', (err: unknown) => {
      if (!current()) return;
      this.#backoffMs = backoffDelay(++this.#failures, { initialMs: 500, maxMs: 30_000 });
      this.#hooks.onError(err, this.#backoffMs);
      this.#retry = setTimeout(() => this.#spawn(), this.#backoffMs);
    });
    inf.start().catch((err: unknown) => {
      if (current()) this.#hooks.onError(err, this.#backoffMs);
    });
  }
}
