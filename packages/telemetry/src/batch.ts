import { ROOT_CONTEXT, context, trace } from '@opentelemetry/api';
import type { Attributes, Context, Link, Span } from '@opentelemetry/api';
import { failSpan } from './span.ts';

/** OpenTelemetry's default span link limit: more inputs than this are counted, not linked. */
const MAX_LINKS = 128;

/**
 * The traces that fed one batch of debounced or coalesced work. Each input change is remembered
 * with the span active when it arrived; the batch's span is a child of the first input (so a
 * single change, the common case, stays one trace from end to end) and links to every other
 * input, so no input's trace loses sight of the work it caused. (The parent is not linked as
 * well: Jaeger folds a link to the parent into the parent reference and loses the latter.)
 */
export class TraceBatch {
  #first: Context | undefined;
  #links: Link[] = [];
  #seen = new Set<string>();
  #inputs = 0;

  /** Remembers the active span (or ctx's) as an input of the next batch. */
  add(ctx: Context = context.active()): void {
    const sc = trace.getSpanContext(ctx);
    if (sc === undefined || !trace.isSpanContextValid(sc)) return;
    this.#inputs++;
    const id = `${sc.traceId}/${sc.spanId}`;
    if (this.#first === undefined) {
      this.#first = ctx;
      this.#seen.add(id);
      return;
    }
    if (this.#seen.has(id) || this.#links.length >= MAX_LINKS) return;
    this.#seen.add(id);
    this.#links.push({ context: sc });
  }

  /** Input changes remembered since the last take. */
  get size(): number {
    return this.#inputs;
  }

  /**
   * The batch so far, cleared: the parent context and the links for the batch span. A `caller`
   * with a valid span (work that waits for this batch, e.g. a CNI call for its map write) is the
   * parent instead, and the first input becomes a link like the others.
   */
  take(caller?: Context): { parent: Context; links: Link[]; inputs: number } {
    const sc = caller === undefined ? undefined : trace.getSpanContext(caller);
    const useCaller = caller !== undefined && sc !== undefined && trace.isSpanContextValid(sc);
    const first = this.#first === undefined ? undefined : trace.getSpanContext(this.#first);
    const links =
      useCaller && first !== undefined && first.spanId !== sc.spanId
        ? [{ context: first }, ...this.#links.filter((l) => l.context.spanId !== sc.spanId)]
        : this.#links;
    const out = {
      parent: useCaller ? caller : (this.#first ?? ROOT_CONTEXT),
      links,
      inputs: this.#inputs,
    };
    this.#first = undefined;
    this.#links = [];
    this.#seen = new Set();
    this.#inputs = 0;
    return out;
  }

  /**
   * Runs fn in a span for everything added so far (the inputs are taken first, so changes that
   * arrive while fn runs belong to the next batch). A throw marks the span failed; it always ends.
   * `caller`: see take().
   */
  async run<T>(
    name: string,
    attributes: Attributes,
    fn: (span: Span) => Promise<T> | T,
    caller?: Context,
  ): Promise<T> {
    const { span, ctx } = this.#start(name, attributes, caller);
    try {
      return await context.with(ctx, () => fn(span));
    } catch (err) {
      failSpan(span, err);
      throw err;
    } finally {
      span.end();
    }
  }

  /** run for synchronous work (whatever it queues, e.g. publishes, is made inside the span). */
  runSync<T>(name: string, attributes: Attributes, fn: (span: Span) => T): T {
    const { span, ctx } = this.#start(name, attributes);
    try {
      return context.with(ctx, () => fn(span));
    } catch (err) {
      failSpan(span, err);
      throw err;
    } finally {
      span.end();
    }
  }

  #start(name: string, attributes: Attributes, caller?: Context): { span: Span; ctx: Context } {
    const { parent, links, inputs } = this.take(caller);
    const span = trace
      .getTracer('@dyad/telemetry')
      .startSpan(
        name,
        { links, attributes: { ...attributes, 'dyad.batch.inputs': inputs } },
        parent,
      );
    return { span, ctx: trace.setSpan(parent, span) };
  }
}
