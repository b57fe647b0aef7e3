import type { JsonText } from '@dyad/bus';
import type { FlowEventValue } from '@dyad/contracts';
import type { DatapathEvent } from '@dyad/libbpf-ts';
import { FlowEncoder } from './flow-json.ts';
import { flowOf } from './flow-of.ts';
import type { FlowLookup } from './flow-of.ts';

/** The drained ring buffer: events in order, and how many its bounded queue discarded. */
export interface FlowSource extends AsyncIterable<DatapathEvent> {
  readonly dropped: number;
  close(): Promise<void>;
}

/** Where flows go on NATS; `publish` answers false when it did not send (counted here). */
export interface FlowSink {
  /** False while `publish` would refuse: the flow is then counted without being written. */
  readonly accepting: boolean;
  publish(
    subject: string,
    flow: JsonText<FlowEventValue>,
    ceSubject: string | undefined,
    time: string,
  ): boolean;
}

export interface FlowCounters {
  /** Events taken from the ring buffer's queue and turned into flows. */
  readonly received: number;
  readonly published: number;
  /** Discarded by the reader's bounded queue: the agent fell behind the ring buffer. */
  readonly droppedQueue: number;
  /** Refused by the publisher: NATS is away or has not confirmed enough of what went out. */
  readonly droppedUnsent: number;
}

/** A `dyad monitor` client; false from `push` means it is behind and missed this one. */
export type FlowListener = (flow: FlowEventValue) => boolean;

/**
 * Drains the datapath's ring buffer, enriches every event into a flow and publishes it. It never
 * waits for NATS: what cannot go out now is dropped and counted, so the ring buffer keeps being
 * drained and memory stays bounded by the reader's queue and the publisher's unconfirmed window.
 */
export class FlowExporter {
  readonly #source: FlowSource;
  readonly #lookup: () => FlowLookup;
  readonly #sink: () => FlowSink | undefined;
  readonly #listeners = new Set<FlowListener>();
  #received = 0;
  #published = 0;
  #unsent = 0;
  #missedByMonitors = 0;
  #run: Promise<void> | undefined;
  /** The lookup and what it has written, for the events of this turn of the event loop. */
  #encoder: FlowEncoder | undefined;

  constructor(opts: {
    source: FlowSource;
    lookup: () => FlowLookup;
    sink: () => FlowSink | undefined;
  }) {
    this.#source = opts.source;
    this.#lookup = opts.lookup;
    this.#sink = opts.sink;
  }

  /** Starts draining; `onError` hears a failure of the reader (the loop then ends). */
  start(onError: (err: unknown) => void): void {
    this.#run ??= (async () => {
      for await (const e of this.#source) this.#take(e);
    })().catch(onError);
  }

  #take(e: DatapathEvent): void {
    this.#received++;
    const encoder = this.#encoder ?? this.#newEncoder();
    if (this.#listeners.size > 0) {
      const flow = flowOf(e, encoder.lookup);
      for (const l of this.#listeners) if (!l(flow)) this.#missedByMonitors++;
    }
    const sink = this.#sink();
    if (sink === undefined || !sink.accepting) {
      this.#unsent++;
      return;
    }
    const f = encoder.encode(e);
    if (sink.publish(f.subject, f.json, f.ceSubject, f.time)) this.#published++;
    else this.#unsent++;
  }

  /** One lookup per turn: the reader hands over a turn's records together. */
  #newEncoder(): FlowEncoder {
    const encoder = new FlowEncoder(this.#lookup());
    this.#encoder = encoder;
    setImmediate(() => {
      if (this.#encoder === encoder) this.#encoder = undefined;
    });
    return encoder;
  }

  /** Adds a monitor client; returns its removal. */
  listen(l: FlowListener): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  counters(): FlowCounters & { missedByMonitors: number } {
    return {
      received: this.#received,
      published: this.#published,
      droppedQueue: this.#source.dropped,
      droppedUnsent: this.#unsent,
      missedByMonitors: this.#missedByMonitors,
    };
  }

  async close(): Promise<void> {
    await this.#source.close();
    await this.#run;
  }
}
