import { describe, expect, it } from 'vitest';
import { freePorts, retryOnPortClash } from '../src/ports.ts';

describe('ports', () => {
  it('freePorts gives distinct ports', async () => {
    const ports = await freePorts(8);
    expect(new Set(ports).size).toBe(8);
  });

  it('a start that lost its port to someone else is run again, other failures are not', async () => {
    let calls = 0;
    const clashTwice = () => {
      calls++;
      if (calls < 3) {
        return Promise.reject(
          new Error('listen tcp 127.0.0.1:37165: bind: address already in use'),
        );
      }
      return Promise.resolve('up');
    };
    await expect(retryOnPortClash(clashTwice)).resolves.toBe('up');
    expect(calls).toBe(3);

    calls = 0;
    const broken = () => {
      calls++;
      return Promise.reject(new Error('exited with code 1: unknown flag'));
    };
    await expect(retryOnPortClash(broken)).rejects.toThrow('unknown flag');
    expect(calls).toBe(1);

    calls = 0;
    const alwaysClash = () => {
      calls++;
      return Promise.reject(new Error('bind: address already in use'));
    };
    await expect(retryOnPortClash(alwaysClash, 3)).rejects.toThrow('address already in use');
    expect(calls).toBe(3);
  });
});
