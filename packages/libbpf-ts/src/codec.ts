import { CodecError } from './errors.ts';
import { fieldSize } from './layout.ts';
import type { FieldSpec, StructLayout, StructValue } from './layout.ts';

/** Turns one value into exactly `size` bytes and back. */
export interface Codec<T> {
  readonly size: number;
  /** Present when the bytes are a C struct; the drift test checks it against BTF. */
  readonly layout?: StructLayout;
  encodeInto(value: T, buf: Buffer, offset: number): void;
  decode(buf: Buffer, offset: number): T;
}

export interface MapCodec<K, V> {
  readonly key: Codec<K>;
  readonly value: Codec<V>;
}

export function mapCodec<K, V>(key: Codec<K>, value: Codec<V>): MapCodec<K, V> {
  return { key, value };
}

export function encode<T>(codec: Codec<T>, value: T): Buffer {
  const buf = Buffer.alloc(codec.size);
  codec.encodeInto(value, buf, 0);
  return buf;
}

type Writer = (obj: Record<string, unknown>, buf: Buffer, base: number) => void;
type Reader = (obj: Record<string, unknown>, buf: Buffer, base: number) => void;

function intIn(v: unknown, f: FieldSpec, max: number): number {
  // (v >>> 0) === v: an integer in 0..2^32-1, without Number.isInteger's call
  if (typeof v !== 'number' || v >>> 0 !== v || v > max) {
    throw new CodecError(`field ${f.name}: ${String(v)} is not an integer in 0..${max}`);
  }
  return v;
}

function fieldWriter(f: FieldSpec): Writer | undefined {
  const off = f.offset;
  const n = f.name;
  switch (f.kind) {
    case 'pad': {
      const len = fieldSize(f);
      return (_o, b, base) => {
        for (let i = 0; i < len; i++) b[base + off + i] = 0;
      };
    }
    case 'u8':
      return (o, b, base) => b.writeUInt8(intIn(o[n], f, 0xff), base + off);
    case 'u16':
      return (o, b, base) => b.writeUInt16LE(intIn(o[n], f, 0xffff), base + off);
    case 'be16':
      return (o, b, base) => b.writeUInt16BE(intIn(o[n], f, 0xffff), base + off);
    case 'u32':
      return (o, b, base) => b.writeUInt32LE(intIn(o[n], f, 0xffffffff), base + off);
    case 'be32':
      return (o, b, base) => b.writeUInt32BE(intIn(o[n], f, 0xffffffff), base + off);
    case 'u64':
      return (o, b, base) => {
        const v = o[n];
        if (typeof v !== 'bigint') throw new CodecError(`field ${n}: expected a bigint`);
        b.writeBigUInt64LE(v, base + off);
      };
    case 'bytes': {
      const len = fieldSize(f);
      return (o, b, base) => {
        const v = o[n];
        if (!(v instanceof Uint8Array) || v.length !== len) {
          throw new CodecError(`field ${n}: expected ${len} bytes`);
        }
        // fields are a few bytes: a loop beats TypedArray.set's per-call overhead
        for (let i = 0; i < len; i++) b[base + off + i] = v[i] as number;
      };
    }
  }
}

function fieldReader(f: FieldSpec): Reader | undefined {
  const off = f.offset;
  const n = f.name;
  switch (f.kind) {
    case 'pad':
      return undefined;
    case 'u8':
      return (o, b, base) => (o[n] = b.readUInt8(base + off));
    case 'u16':
      return (o, b, base) => (o[n] = b.readUInt16LE(base + off));
    case 'be16':
      return (o, b, base) => (o[n] = b.readUInt16BE(base + off));
    case 'u32':
      return (o, b, base) => (o[n] = b.readUInt32LE(base + off));
    case 'be32':
      return (o, b, base) => (o[n] = b.readUInt32BE(base + off));
    case 'u64':
      return (o, b, base) => (o[n] = b.readBigUInt64LE(base + off));
    case 'bytes': {
      const len = fieldSize(f);
      return (o, b, base) =>
        (o[n] = Uint8Array.prototype.slice.call(b, base + off, base + off + len));
    }
  }
}

/**
 * A codec generated from a layout: each field is read and written at its declared offset in the
 * declared width (little-endian host order, or big-endian for be16/be32), padding is zero.
 * BPF on x86_64 and arm64 is little-endian, which is what the kernel and this host share.
 */
export function structCodec<const F extends readonly FieldSpec[]>(
  layout: StructLayout<F>,
): Codec<StructValue<F>> {
  const writers = layout.fields.map(fieldWriter).filter((w): w is Writer => w !== undefined);
  const readers = layout.fields.map(fieldReader).filter((r): r is Reader => r !== undefined);
  const size = layout.size;
  return {
    size,
    layout,
    encodeInto(value, buf, offset) {
      if (offset + size > buf.length) throw new CodecError(`${layout.cName}: buffer too small`);
      // every byte belongs to a field or a pad (validateLayout), so no pre-zeroing is needed
      const obj = value as Record<string, unknown>;
      for (const w of writers) w(obj, buf, offset);
    },
    decode(buf, offset) {
      if (offset + size > buf.length) throw new CodecError(`${layout.cName}: buffer too small`);
      const obj: Record<string, unknown> = {};
      for (const r of readers) r(obj, buf, offset);
      return obj as StructValue<F>;
    },
  };
}

/** Wraps a codec with a domain type; the layout (and so the drift check) carries over. */
export function mappedCodec<A, B>(
  inner: Codec<A>,
  toInner: (b: B) => A,
  fromInner: (a: A) => B,
): Codec<B> {
  const base = {
    size: inner.size,
    encodeInto(value: B, buf: Buffer, offset: number) {
      inner.encodeInto(toInner(value), buf, offset);
    },
    decode(buf: Buffer, offset: number) {
      return fromInner(inner.decode(buf, offset));
    },
  };
  return inner.layout ? { ...base, layout: inner.layout } : base;
}

export function bytesCodec(size: number): Codec<Buffer> {
  return {
    size,
    encodeInto(value, buf, offset) {
      if (value.length !== size)
        throw new CodecError(`expected ${size} bytes, got ${value.length}`);
      value.copy(buf, offset);
    },
    decode(buf, offset) {
      return Buffer.from(buf.subarray(offset, offset + size));
    },
  };
}

export function rawMapCodec(keySize: number, valueSize: number): MapCodec<Buffer, Buffer> {
  return mapCodec(bytesCodec(keySize), bytesCodec(valueSize));
}

export const u32Codec: Codec<number> = {
  size: 4,
  encodeInto(value, buf, offset) {
    buf.writeUInt32LE(value, offset);
  },
  decode(buf, offset) {
    return buf.readUInt32LE(offset);
  },
};
