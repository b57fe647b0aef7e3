import type { KvBucketSpec, StreamSpec } from '@dyad/contracts';
import { JetStreamApiCodes, JetStreamApiError, StorageType } from '@nats-io/jetstream';
import type {
  JetStreamClient,
  JetStreamManager,
  StreamConfig,
  StreamInfo,
  StreamUpdateConfig,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { nanos } from '@nats-io/transport-node';
import type { BusLogger } from './context.ts';
import { ConfigConflictError } from './errors.ts';

export interface EnsureResult {
  /** Stream name (for a KV bucket, its backing stream `KV_<bucket>`). */
  readonly name: string;
  readonly action: 'created' | 'updated' | 'unchanged';
  /** Fields that differed and were updated. */
  readonly changed: readonly string[];
}

/** nats-server's default duplicate window, used when a spec names none. */
const SERVER_DEFAULT_DUPLICATE_WINDOW_MS = 120_000;

type Comparable = Pick<
  StreamUpdateConfig,
  | 'description'
  | 'subjects'
  | 'max_msgs_per_subject'
  | 'max_age'
  | 'max_bytes'
  | 'duplicate_window'
  | 'allow_msg_ttl'
  | 'num_replicas'
>;

export function streamConfig(
  spec: StreamSpec,
  replicas = 1,
): Comparable & Pick<StreamConfig, 'name' | 'storage'> {
  return {
    name: spec.name,
    description: spec.description,
    subjects: [...spec.subjects],
    storage: spec.storage === 'memory' ? StorageType.Memory : StorageType.File,
    max_msgs_per_subject: spec.maxMsgsPerSubject ?? -1,
    max_age: nanos(spec.maxAgeMs ?? 0),
    max_bytes: spec.maxBytes ?? -1,
    duplicate_window: nanos(spec.duplicateWindowMs ?? SERVER_DEFAULT_DUPLICATE_WINDOW_MS),
    allow_msg_ttl: spec.allowMsgTtl ?? false,
    num_replicas: replicas,
  };
}

/** Field names whose current value differs from the wanted one. */
export function diffConfig(
  have: Partial<StreamConfig>,
  want: Partial<Comparable>,
): (keyof Comparable)[] {
  const out: (keyof Comparable)[] = [];
  for (const key of Object.keys(want) as (keyof Comparable)[]) {
    const w = want[key];
    let h: unknown = have[key];
    if (key === 'allow_msg_ttl') h = h ?? false;
    if (key === 'description') h = h ?? '';
    if (key === 'num_replicas') h = h ?? 1;
    const same =
      Array.isArray(w) && Array.isArray(h)
        ? [...w].sort().join('\n') === [...(h as unknown[])].sort().join('\n')
        : w === h;
    if (!same) out.push(key);
  }
  return out;
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)
      return undefined;
    throw err;
  }
}

/** Updates what differs; storage cannot change in place, and the server refuses some other changes. */
async function reconcile(
  jsm: JetStreamManager,
  have: StreamInfo,
  want: Partial<Comparable>,
  storage: StorageType,
  what: string,
  logger: BusLogger,
): Promise<EnsureResult> {
  const name = have.config.name;
  if (have.config.storage !== storage) {
    throw new ConfigConflictError(
      `${what} exists with ${have.config.storage} storage, wanted ${storage}; storage cannot change in place`,
    );
  }
  const changed = diffConfig(have.config, want);
  if (changed.length === 0) return { name, action: 'unchanged', changed };
  const patch: Partial<StreamUpdateConfig> = {};
  for (const key of changed) Object.assign(patch, { [key]: want[key] });
  try {
    await jsm.streams.update(name, patch);
  } catch (err) {
    throw new ConfigConflictError(
      `${what} cannot be updated (${changed.join(', ')}): ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  logger.info({ stream: name, changed }, 'stream config updated');
  return { name, action: 'updated', changed };
}

export async function ensureStreams(
  jsm: JetStreamManager,
  specs: readonly StreamSpec[],
  logger: BusLogger,
  replicas = 1,
): Promise<EnsureResult[]> {
  const results: EnsureResult[] = [];
  for (const spec of specs) {
    const want = streamConfig(spec, replicas);
    const have = await streamInfo(jsm, spec.name);
    if (have === undefined) {
      await jsm.streams.add(want);
      logger.info({ stream: spec.name }, 'stream created');
      results.push({ name: spec.name, action: 'created', changed: [] });
      continue;
    }
    const { name, storage, ...comparable } = want;
    results.push(await reconcile(jsm, have, comparable, storage, `stream ${name}`, logger));
  }
  return results;
}

export function kvStreamName(bucket: string): string {
  return `KV_${bucket}`;
}

export async function ensureKv(
  js: JetStreamClient,
  jsm: JetStreamManager,
  specs: readonly KvBucketSpec[],
  logger: BusLogger,
  replicas = 1,
): Promise<EnsureResult[]> {
  const results: EnsureResult[] = [];
  const kvm = new Kvm(js);
  for (const spec of specs) {
    const name = kvStreamName(spec.bucket);
    const storage = spec.storage === 'memory' ? StorageType.Memory : StorageType.File;
    const want: Partial<Comparable> = {
      description: spec.description,
      max_msgs_per_subject: spec.history,
      max_age: nanos(spec.ttlMs ?? 0),
      allow_msg_ttl: spec.allowMsgTtl ?? false,
      num_replicas: replicas,
    };
    const have = await streamInfo(jsm, name);
    if (have === undefined) {
      await kvm.create(spec.bucket, {
        description: spec.description,
        history: spec.history,
        storage,
        replicas,
        ...(spec.ttlMs === undefined ? {} : { ttl: spec.ttlMs }),
      });
      // The KV client sets per-message TTLs only together with a marker TTL for max-age
      // expiry, which a bucket without max-age does not need: set the stream's flag itself.
      const made = await streamInfo(jsm, name);
      if (made !== undefined)
        await reconcile(jsm, made, want, storage, `kv bucket ${spec.bucket}`, logger);
      logger.info({ bucket: spec.bucket }, 'kv bucket created');
      results.push({ name, action: 'created', changed: [] });
      continue;
    }
    results.push(await reconcile(jsm, have, want, storage, `kv bucket ${spec.bucket}`, logger));
  }
  return results;
}

/** Removes a stream's messages on the subjects matching `filter`; 0 when there is no stream. */
export async function purgeSubjects(
  jsm: JetStreamManager,
  stream: string,
  filter: string,
): Promise<number> {
  try {
    return (await jsm.streams.purge(stream, { filter })).purged;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return 0;
    throw err;
  }
}
