import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ALL_CONTRACTS, generateEventDocs } from '../src/index.ts';

const docsDir = join(dirname(fileURLToPath(import.meta.url)), '../../../docs/events');

describe('docs/events', () => {
  const generated = generateEventDocs();

  it('has a schema for every contract and an AsyncAPI 3 document', () => {
    for (const c of ALL_CONTRACTS) expect(generated.has(`schemas/${c.type}.json`)).toBe(true);
    const api = JSON.parse(generated.get('asyncapi.json') ?? '{}') as {
      asyncapi: string;
      channels: object;
    };
    expect(api.asyncapi).toBe('3.0.0');
    expect(Object.keys(api.channels)).toHaveLength(ALL_CONTRACTS.length);
  });

  it('committed files are current (run `npm run contracts:docs` after changing a contract)', () => {
    for (const [rel, text] of generated) {
      const committed = readFileSync(join(docsDir, rel), 'utf8');
      expect(committed, `docs/events/${rel} is stale`).toBe(text);
    }
    const onDisk = readdirSync(join(docsDir, 'schemas')).map((f) => `schemas/${f}`);
    expect(onDisk.sort(), 'docs/events/schemas has files no contract generates').toEqual(
      [...generated.keys()].filter((k) => k.startsWith('schemas/')).sort(),
    );
  });
});
