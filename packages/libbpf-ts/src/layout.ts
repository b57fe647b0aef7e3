import { CodecError } from './errors.ts';

/**
 * A C struct's layout as declared on the TypeScript side. The drift test compares it with the
 * compiled object's BTF, and the struct codec reads and writes bytes only through it, so the two
 * sides cannot disagree silently.
 */
export type FieldKind = 'u8' | 'u16' | 'u32' | 'u64' | 'be16' | 'be32' | 'bytes' | 'pad';

export interface FieldSpec {
  readonly name: string;
  readonly offset: number;
  readonly kind: FieldKind;
  /** Byte length for 'bytes' and 'pad'; fixed by the kind otherwise. */
  readonly length?: number;
}

export interface StructLayout<F extends readonly FieldSpec[] = readonly FieldSpec[]> {
  readonly cName: string;
  readonly size: number;
  readonly fields: F;
}

type FieldValue<F extends FieldSpec> = F['kind'] extends 'u64'
  ? bigint
  : F['kind'] extends 'bytes'
    ? Uint8Array
    : number;

/** The plain-object form of a struct: one property per non-padding field. */
export type StructValue<F extends readonly FieldSpec[]> = {
  [S in F[number] as S['kind'] extends 'pad' ? never : S['name']]: FieldValue<S>;
};

const FIXED: Partial<Record<FieldKind, number>> = {
  u8: 1,
  u16: 2,
  u32: 4,
  u64: 8,
  be16: 2,
  be32: 4,
};

export function fieldSize(f: FieldSpec): number {
  const fixed = FIXED[f.kind];
  if (fixed !== undefined) return fixed;
  if (f.length === undefined) throw new CodecError(`field ${f.name}: ${f.kind} needs a length`);
  return f.length;
}

/** Rejects overlaps, gaps and overruns, so every byte of the struct is declared exactly once. */
export function validateLayout(layout: StructLayout): void {
  let at = 0;
  for (const f of layout.fields) {
    if (f.offset !== at) {
      throw new CodecError(
        `${layout.cName}.${f.name}: offset ${f.offset}, expected ${at} (undeclared gap or overlap)`,
      );
    }
    at += fieldSize(f);
  }
  if (at !== layout.size)
    throw new CodecError(`${layout.cName}: fields cover ${at} bytes, size is ${layout.size}`);
}

export function defineLayout<const F extends readonly FieldSpec[]>(
  cName: string,
  size: number,
  fields: F,
): StructLayout<F> {
  const layout = { cName, size, fields };
  validateLayout(layout);
  return layout;
}

/** Offset of a field, asserting the kind (and length) a hand-written encoder relies on, so a
 *  layout change breaks at load time instead of writing the wrong width. */
export function fieldAt(
  layout: StructLayout,
  name: string,
  kind: FieldKind,
  length?: number,
): number {
  const f = layout.fields.find((x) => x.name === name);
  if (!f || f.kind !== kind || (length !== undefined && fieldSize(f) !== length)) {
    throw new CodecError(
      `${layout.cName}.${name}: encoder expects ${kind}${length === undefined ? '' : `[${length}]`}`,
    );
  }
  return f.offset;
}
