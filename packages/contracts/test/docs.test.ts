import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DiagnosticSeverity, Parser, fromFile } from '@asyncapi/parser';
import { ALL_CONTRACTS, REPLY_INBOX, generateEventDocs } from '../src/index.ts';

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
    // one channel per contract, replies on the shared inbox channel, plus the dead letters
    const replies = ALL_CONTRACTS.filter((c) => c.subjectPattern === REPLY_INBOX).length;
    expect(Object.keys(api.channels)).toHaveLength(ALL_CONTRACTS.length - replies + 2);
  });

  it('is valid AsyncAPI 3 as the reference parser reads it, with every $ref resolved', async () => {
    const parser = new Parser();
    const { document, diagnostics } = await fromFile(
      parser,
      join(docsDir, 'asyncapi.json'),
    ).parse();
    const errors = diagnostics.filter(
      // the parser's DiagnosticSeverity and its diagnostics' (from @stoplight/types) are two
      // declarations of one numeric enum
      // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-comparison
      (d) => d.severity === DiagnosticSeverity.Error,
    );
    expect(errors.map((d) => `${d.path.join('.')}: ${d.message}`)).toEqual([]);
    expect(document).toBeDefined();
    const flow = document?.channels().get('flow-v1');
    expect(flow?.address()).toBe(
      'dyad.flow.v1.{node}.{verdict}.{family}.{sourceNamespace}.{destinationNamespace}',
    );
    expect(
      flow
        ?.parameters()
        .all()
        .map((p) => p.id()),
    ).toEqual(['node', 'verdict', 'family', 'sourceNamespace', 'destinationNamespace']);
    const payload = flow?.messages().all()[0]?.payload();
    expect(payload?.properties()?.['verdict']?.enum()).toEqual(['FORWARDED', 'DROPPED']);
    const grow = document?.operations().get('request-ipam-grow-v1');
    expect(grow?.action()).toBe('send');
    expect(
      grow
        ?.reply()
        ?.messages()
        .all()
        .map((m) => m.name()),
    ).toEqual(['io.dyad.ipam.grown.v1', 'io.dyad.bus.error.v1']);
    expect(document?.channels().get('dead-letter')?.address()).toBe('dyad.dlq.v1.{service}');
    expect(
      document
        ?.servers()
        .all()
        .map((s) => s.protocol()),
    ).toEqual(['nats']);
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
