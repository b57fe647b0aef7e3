import type { DatapathEvent, Libbpf, RingBufferReader } from '../../src/index.ts';
import { decodeDatapathEvent } from '../../src/index.ts';

/** Collects datapath events from a pinned ring buffer in the background. */
export class EventLog {
  readonly events: DatapathEvent[] = [];
  readonly #reader: RingBufferReader<DatapathEvent>;
  readonly #pump: Promise<void>;

  constructor(lib: Libbpf, eventsMapFd: number) {
    this.#reader = lib.ringBuffer(eventsMapFd, decodeDatapathEvent, { pollTimeoutMs: 50 });
    const reader = this.#reader;
    this.#pump = (async () => {
      for await (const e of reader) this.events.push(e);
    })();
  }

  /** Resolves with the first event (already seen or arriving within timeoutMs) that matches. */
  async waitFor(
    pred: (e: DatapathEvent) => boolean,
    timeoutMs = 3000,
  ): Promise<DatapathEvent | undefined> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.find(pred);
      if (hit || Date.now() > end) return hit;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async close(): Promise<void> {
    await this.#reader.close();
    await this.#pump;
  }
}
