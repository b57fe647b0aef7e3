import { getSystemErrorMap } from 'node:util';

// libuv keys its map by negative errno; invert once per call site is cheap enough since
// errors are the slow path.
export function errnoName(errno: number): string {
  const abs = Math.abs(errno);
  const entry = getSystemErrorMap().get(-abs);
  return entry ? entry[0] : `errno ${abs}`;
}
