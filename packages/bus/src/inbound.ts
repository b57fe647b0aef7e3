import { CONTRACTS_BY_TYPE, decodeEvent } from '@dyad/contracts';
import type { Decoded, EventMeta, MessageContract, PayloadOf } from '@dyad/contracts';
import type { MsgHdrs } from '@nats-io/transport-node';
import type { HeaderGetter } from './headers.ts';
import { headerGetter } from './headers.ts';

/** A decoded, validated inbound message. */
export interface Delivery<T> {
  readonly value: T;
  readonly meta: EventMeta;
  /** The NATS subject it arrived on. */
  readonly subject: string;
  /** The contract it matched (one of those the handler accepts). */
  readonly contract: MessageContract;
  readonly header: HeaderGetter;
}

/** A JetStream delivery: the stream position and how often it has been delivered. */
export interface JsDelivery<T> extends Delivery<T> {
  readonly stream: string;
  readonly streamSeq: number;
  /** 1 on first delivery. */
  readonly deliveryCount: number;
  readonly redelivered: boolean;
  /** Messages left for this consumer after this one. */
  readonly pending: number;
}

export type Handler<T, D extends Delivery<T> = Delivery<T>> = (delivery: D) => void | Promise<void>;

export interface RawMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers?: MsgHdrs | undefined;
}

export function decodeRaw<C extends MessageContract>(
  accepted: readonly C[],
  msg: RawMessage,
  known: ReadonlyMap<string, MessageContract> = CONTRACTS_BY_TYPE,
): Decoded<PayloadOf<C>> {
  return decodeEvent(accepted, headerGetter(msg.headers), msg.data, known);
}

export function delivery<T>(
  msg: RawMessage,
  value: T,
  meta: EventMeta,
  contract: MessageContract,
): Delivery<T> {
  return { value, meta, subject: msg.subject, contract, header: headerGetter(msg.headers) };
}

/**
 * Runs up to `limit` handlers at once and keeps reading; with limit 1 (the default everywhere)
 * messages are handled in arrival order.
 */
export function limiter(
  limit: number,
  onError: (err: unknown) => void,
): { run(task: () => Promise<void>): Promise<void>; idle(): Promise<void> } {
  const inflight = new Set<Promise<void>>();
  return {
    async run(task) {
      while (inflight.size >= Math.max(1, limit)) await Promise.race(inflight);
      // One message's failure must not end the loop that reads the next.
      const p = task()
        .catch(onError)
        .finally(() => inflight.delete(p));
      inflight.add(p);
      if (limit <= 1) await p;
    },
    async idle() {
      await Promise.allSettled([...inflight]);
    },
  };
}
