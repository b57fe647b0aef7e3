import { CodecError } from '../errors.ts';

// Small checked writers for the hand-written datapath encoders (hot in batch updates).

export function u32At(buf: Buffer, at: number, v: number, name: string): void {
  if (typeof v !== 'number' || v >>> 0 !== v)
    throw new CodecError(`${name}: ${String(v)} is not a u32`);
  buf[at] = v & 0xff;
  buf[at + 1] = (v >>> 8) & 0xff;
  buf[at + 2] = (v >>> 16) & 0xff;
  buf[at + 3] = v >>> 24;
}

export function u8At(buf: Buffer, at: number, v: number, name: string): void {
  if (typeof v !== 'number' || (v & 0xff) !== v)
    throw new CodecError(`${name}: ${String(v)} is not a u8`);
  buf[at] = v;
}

export function zeroAt(buf: Buffer, at: number, len: number): void {
  for (let i = 0; i < len; i++) buf[at + i] = 0;
}
