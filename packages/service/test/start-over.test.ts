// startOverOnReconnect: a new instance after every reconnect, the old one stopped first, retried
// until one starts, and stop() stopping whichever runs.
import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '@dyad/telemetry';
import { startOverOnReconnect } from '../src/start-over.ts';

function fakeBus() {
  const listeners = new Set<() => void>();
  return {
    onReconnect(l: () => void) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    reconnect: () => listeners.forEach((l) => l()),
    listeners,
  };
}

describe('startOverOnReconnect', () => {
  it('starts a new instance after a reconnect, the old one stopped first, retrying failed starts', async () => {
    const log: string[] = [];
    let made = 0;
    let failures = 2;
    const make = () => {
      const id = ++made;
      return {
        id,
        start: () => {
          // the second instance fails twice, as while the streams are not there yet
          if (id > 1 && failures-- > 0) {
            log.push(`start ${id} failed`);
            return Promise.reject(new Error('stream not found'));
          }
          log.push(`start ${id}`);
          return Promise.resolve();
        },
        stop: () => {
          log.push(`stop ${id}`);
          return Promise.resolve();
        },
      };
    };
    const bus = fakeBus();
    const s = await startOverOnReconnect(
      bus,
      make,
      createLogger({ service: 't', level: 'silent' }),
    );
    expect(s.current().id).toBe(1);
    bus.reconnect();
    await vi.waitFor(() => expect(s.current().id).toBe(4), { timeout: 10_000 });
    expect(log).toEqual([
      'start 1',
      'stop 1',
      'start 2 failed',
      'stop 2',
      'start 3 failed',
      'stop 3',
      'start 4',
    ]);
    await s.stop();
    expect(log.at(-1)).toBe('stop 4');
    expect(bus.listeners.size).toBe(0);
  });
});
