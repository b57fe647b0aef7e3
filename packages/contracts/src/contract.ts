import type { z } from 'zod';

/**
 * One message kind on the bus: its CloudEvents type (which carries the major version), its zod
 * schema, and where it travels. Producers and consumers import the same object, so the wire
 * format has exactly one definition.
 */
export interface MessageContract<S extends z.ZodType = z.ZodType> {
  /** CloudEvents `type`, reverse-DNS with the major version last, e.g. `io.dyad.k8s.pod.v1`. */
  readonly type: string;
  /** Major schema version; a breaking change is a new contract with version + 1. */
  readonly version: number;
  readonly schema: S;
  /** One sentence for the generated docs. */
  readonly description: string;
  /** Subject pattern for docs, with `{placeholders}`, e.g. `dyad.k8s.v1.pod.{namespace}.{name}`. */
  readonly subjectPattern: string;
  /** The stream that stores it, if it is persisted. */
  readonly stream?: string;
}

/** The decoded payload type of a contract. */
export type PayloadOf<C extends MessageContract> = z.output<C['schema']>;

const TYPE_PATTERN = /^io\.dyad(\.[a-z][a-z0-9-]*)+\.v([1-9][0-9]*)$/;

/** Declares a contract and checks that its type name and version agree. */
export function defineMessage<S extends z.ZodType>(c: MessageContract<S>): MessageContract<S> {
  const m = TYPE_PATTERN.exec(c.type);
  if (m === null || Number(m[2]) !== c.version) {
    throw new Error(`contract type ${c.type} must look like io.dyad.<area>.<name>.v${c.version}`);
  }
  return Object.freeze(c);
}
