/** Runs a flush later; called on every queued write, so it can debounce. Calls with the same
 *  function before it ran are merged. */
export type Schedule = (fn: () => void) => void;

/** Flush on the next turn of the event loop: what one synchronous burst queued goes together. */
export function nextTick(): Schedule {
  const pending = new Set<() => void>();
  return (fn) => {
    if (pending.has(fn)) return;
    pending.add(fn);
    setImmediate(() => {
      pending.delete(fn);
      fn();
    });
  };
}

/**
 * Flush once writes have been quiet for `quietMs`, but never later than `maxMs` after the first
 * one: a stream of updates arriving in network-sized chunks is written in a few batches, and a
 * lone update waits only `quietMs`.
 */
export function debounce(quietMs: number, maxMs: number): Schedule {
  const state = new Map<() => void, { first: number; timer: NodeJS.Timeout }>();
  return (fn) => {
    const now = Date.now();
    const s = state.get(fn);
    const first = s?.first ?? now;
    if (s) clearTimeout(s.timer);
    const delay = Math.max(0, Math.min(quietMs, maxMs - (now - first)));
    const timer = setTimeout(() => {
      state.delete(fn);
      fn();
    }, delay);
    state.set(fn, { first, timer });
  };
}
