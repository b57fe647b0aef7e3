// Moves this process into a named network namespace with setns(2), through libc. setns changes
// the calling thread only; Node creates every socket on its main thread (the one calling this),
// and the stand-in never resolves names (which would run on libuv's pool threads), so all its
// sockets live in the new namespace.
import koffi from 'koffi';
import { closeSync, openSync } from 'node:fs';

const CLONE_NEWNET = 0x40000000;
const libc = koffi.load('libc.so.6');
const setns = libc.func('int setns(int fd, int nstype)') as (fd: number, nstype: number) => number;

export function enterNetns(name: string): void {
  const fd = openSync(`/run/netns/${name}`, 'r');
  try {
    if (setns(fd, CLONE_NEWNET) !== 0)
      throw new Error(`setns(${name}) failed: errno ${koffi.errno()}`);
  } finally {
    closeSync(fd);
  }
}
