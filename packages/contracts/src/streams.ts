import { K8S_STREAM } from './k8s.ts';
import { DEAD_LETTER_ROOT, K8S_SUBJECT_ROOT } from './subjects.ts';

/**
 * JetStream streams and KV buckets as plain declarations. The bus creates or updates them
 * idempotently at start-up; their names and subjects are part of Dyad's public interface.
 */
export interface StreamSpec {
  readonly name: string;
  readonly description: string;
  readonly subjects: readonly string[];
  readonly storage: 'file' | 'memory';
  /** 1 keeps the last value per subject: a compacted log of current state. */
  readonly maxMsgsPerSubject?: number;
  readonly maxAgeMs?: number;
  readonly maxBytes?: number;
  /** Lets publishers set a per-message TTL header (`Nats-TTL`), used for tombstones. */
  readonly allowMsgTtl?: boolean;
  /** Window in which a repeated `Nats-Msg-Id` is dropped as a duplicate. */
  readonly duplicateWindowMs?: number;
}

export interface KvBucketSpec {
  readonly bucket: string;
  readonly description: string;
  readonly history: number;
  readonly storage: 'file' | 'memory';
  readonly ttlMs?: number;
  /**
   * Lets writers give a purge marker a TTL (`Nats-TTL`), so a key removed for good leaves
   * nothing behind once the marker expires (a delete marker stays for ever).
   */
  readonly allowMsgTtl?: boolean;
}

export const K8sStream: StreamSpec = {
  name: K8S_STREAM,
  description:
    'Kubernetes objects as seen by kube-bridge: last value per object, deletes as tombstones.',
  subjects: [`${K8S_SUBJECT_ROOT}.>`],
  storage: 'file',
  maxMsgsPerSubject: 1,
  allowMsgTtl: true,
  duplicateWindowMs: 120_000,
};

export const DeadLetterStream: StreamSpec = {
  name: 'DYAD_DLQ',
  description:
    'Messages a service refused, with the reason, kept a week for inspection and replay.',
  subjects: [`${DEAD_LETTER_ROOT}.>`],
  storage: 'file',
  maxAgeMs: 7 * 24 * 3600 * 1000,
  maxBytes: 256 * 1024 * 1024,
};

/**
 * Headers on a dead-letter message. Its body is the refused message's bytes, unchanged, and the
 * refused message's own headers are kept beside these.
 */
export const DeadLetterHeader = {
  reason: 'dyad-dlq-reason',
  detail: 'dyad-dlq-detail',
  subject: 'dyad-dlq-subject',
  service: 'dyad-dlq-service',
  time: 'dyad-dlq-time',
} as const;
export type DeadLetterHeader = (typeof DeadLetterHeader)[keyof typeof DeadLetterHeader];
