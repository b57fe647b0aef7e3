// Every consumer decodes what it receives with decodeEvent (the bus's decodeRaw): random and
// mutated messages for every contract must each get a result, never an exception. A refusal
// carries one of the stable reason codes; an acceptance is a value its schema accepts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ALL_CONTRACTS,
  CONTRACTS_BY_TYPE,
  Header,
  RejectReason,
  decodeEvent,
  encodeEvent,
} from '../src/index.ts';
import type { MessageContract } from '../src/index.ts';
import { VALID_SAMPLES } from './samples.ts';

const REASONS = new Set<string>(Object.values(RejectReason));
const enc = new TextEncoder();

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** The value at a random path replaced, removed, or given a neighbour of another type. */
function mutate(value: Json, path: readonly number[], replacement: Json, op: number): Json {
  if (path.length === 0 || value === null || typeof value !== 'object') return replacement;
  const [head = 0, ...rest] = path;
  if (Array.isArray(value)) {
    if (value.length === 0) return op % 2 === 0 ? [replacement] : value;
    const i = head % value.length;
    const copy = [...value];
    if (rest.length === 0 && op % 3 === 1) copy.splice(i, 1);
    else copy[i] = mutate(copy[i] as Json, rest, replacement, op);
    return copy;
  }
  const keys = Object.keys(value);
  if (keys.length === 0) return { x: replacement };
  const key = keys[head % keys.length] as string;
  if (rest.length === 0 && op % 3 === 1)
    return Object.fromEntries(Object.entries(value).filter(([k]) => k !== key));
  const copy: { [k: string]: Json } = { ...value };
  if (rest.length === 0 && op % 3 === 2) copy[`${key}_`] = replacement;
  else copy[key] = mutate(copy[key] as Json, rest, replacement, op);
  return copy;
}

const jsonValue = fc.jsonValue() as fc.Arbitrary<Json>;

function headersOf(c: MessageContract, sample: unknown): Record<string, string> {
  return encodeEvent(c, sample as never, { source: '/dyad/fuzz', subject: 'x' }).headers;
}

function checkResult(
  accepted: readonly MessageContract[],
  h: Record<string, string | undefined>,
  body: Uint8Array,
) {
  const r = decodeEvent(accepted, h, body, CONTRACTS_BY_TYPE);
  if (r.ok) {
    expect(accepted).toContain(r.contract);
    expect(r.contract.schema.safeParse(r.value).success).toBe(true);
  } else {
    expect(REASONS.has(r.reason)).toBe(true);
    expect(typeof r.detail).toBe('string');
  }
  return r;
}

describe('decoding random and mutated messages (fast-check)', () => {
  it('covers every contract', () => {
    expect(new Set(VALID_SAMPLES.map(([c]) => c.type)).size).toBe(ALL_CONTRACTS.length);
  });

  it.each(VALID_SAMPLES.map(([c, v]) => [c.type, c, v] as const))(
    '%s: a mutated payload is accepted only if its schema accepts it, else refused with a reason',
    (_, c, sample) => {
      const headers = headersOf(c, sample);
      fc.assert(
        fc.property(
          fc.array(fc.nat(), { maxLength: 6 }),
          jsonValue,
          fc.nat(),
          (path, replacement, op) => {
            const body = enc.encode(JSON.stringify(mutate(sample as Json, path, replacement, op)));
            checkResult([c], headers, body);
          },
        ),
        { numRuns: 200 },
      );
    },
  );

  it('random bytes and random headers are refused with a reason code, never thrown', () => {
    const headerNames = [...Object.values(Header), 'x-other'];
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 512 }),
        fc.dictionary(fc.constantFrom(...headerNames), fc.string({ maxLength: 40 })),
        fc.subarray([...ALL_CONTRACTS], { minLength: 1 }),
        (body, h, accepted) => {
          const r = checkResult(accepted, h, body);
          // Random bytes are never a valid event by chance: no accepted type in the headers.
          expect(r.ok).toBe(false);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('a valid event with one header changed is refused with the matching reason or still valid', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...VALID_SAMPLES),
        fc.constantFrom(...Object.values(Header)),
        fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
        ([c, sample], name, value) => {
          const h: Record<string, string | undefined> = { ...headersOf(c, sample), [name]: value };
          const body = enc.encode(JSON.stringify(sample));
          checkResult([c], h, body);
        },
      ),
      { numRuns: 500 },
    );
  });
});
