import { z } from 'zod';
import type { MessageContract } from './contract.ts';
import { CE_SPECVERSION, CONTENT_TYPE_JSON, Header, dataSchemaUri } from './cloudevents.ts';
import { ALL_CONTRACTS, ALL_STREAMS } from './registry.ts';
import { DeadLetterHeader } from './streams.ts';

/**
 * Generates the documents third-party tools read: one JSON Schema per message and an AsyncAPI 3
 * document. Pure: returns file paths (relative to docs/events/) and their text, so the same code
 * writes them and checks them for staleness.
 */
export function generateEventDocs(
  contracts: readonly MessageContract[] = ALL_CONTRACTS,
): Map<string, string> {
  const files = new Map<string, string>();
  for (const c of contracts) {
    files.set(`schemas/${c.type}.json`, pretty(jsonSchemaOf(c)));
  }
  files.set('asyncapi.json', pretty(asyncApiOf(contracts)));
  return files;
}

function jsonSchemaOf(c: MessageContract): Record<string, unknown> {
  // "output" mode documents what is on the wire after the producer applied defaults. Objects stay
  // open: a later minor revision may add optional fields, and old readers must accept them.
  const schema = z.toJSONSchema(c.schema, {
    target: 'draft-2020-12',
    io: 'output',
    unrepresentable: 'any',
    override: (ctx) => {
      if (ctx.jsonSchema.additionalProperties === false) delete ctx.jsonSchema.additionalProperties;
    },
  });
  return { $id: dataSchemaUri(c.type), title: c.type, description: c.description, ...schema };
}

function channelId(c: MessageContract): string {
  return c.type.replace(/^io\.dyad\./, '').replace(/\./g, '-');
}

function asyncApiOf(contracts: readonly MessageContract[]): Record<string, unknown> {
  const channels: Record<string, unknown> = {};
  const operations: Record<string, unknown> = {};
  const messages: Record<string, unknown> = {};
  for (const c of contracts) {
    const id = channelId(c);
    const params = [...c.subjectPattern.matchAll(/\{([a-z]+)\}/g)].map((m) => m[1] as string);
    messages[id] = {
      name: c.type,
      title: c.type,
      summary: c.description,
      contentType: CONTENT_TYPE_JSON,
      headers: { $ref: '#/components/schemas/CloudEventHeaders' },
      payload: { $ref: `./schemas/${c.type}.json` },
      bindings: { nats: { bindingVersion: '0.1.0' } },
    };
    channels[id] = {
      address: c.subjectPattern,
      description:
        c.stream === undefined ? c.description : `${c.description} Stored in stream ${c.stream}.`,
      ...(params.length > 0
        ? {
            parameters: Object.fromEntries(
              params.map((p) => [
                p,
                { description: `${p}, percent-encoded for '.', '*', '>', '%' and white space` },
              ]),
            ),
          }
        : {}),
      messages: { [id]: { $ref: `#/components/messages/${id}` } },
    };
    operations[`receive-${id}`] = {
      action: 'receive',
      channel: { $ref: `#/channels/${id}` },
      summary: `Consume ${c.type}`,
    };
  }
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Dyad events',
      version: '1',
      description: [
        'Messages Dyad services exchange over NATS. Each is a CloudEvent in binary content mode:',
        `context attributes in ce-* headers (specversion ${CE_SPECVERSION}), the JSON payload as the body,`,
        'W3C traceparent in the headers. A type ends in its major version; a breaking change is a new type.',
        `Refused messages go to dyad.dlq.v1.<service> with headers ${Object.values(DeadLetterHeader).join(', ')}.`,
        `Streams: ${ALL_STREAMS.map((s) => `${s.name} (${s.subjects.join(', ')})`).join('; ')}.`,
      ].join(' '),
    },
    defaultContentType: CONTENT_TYPE_JSON,
    channels,
    operations,
    components: {
      messages,
      schemas: {
        CloudEventHeaders: {
          type: 'object',
          required: [Header.specversion, Header.id, Header.source, Header.type, Header.time],
          properties: {
            [Header.specversion]: { type: 'string', const: CE_SPECVERSION },
            [Header.id]: { type: 'string' },
            [Header.source]: { type: 'string', description: '/dyad/<service>' },
            [Header.type]: { type: 'string' },
            [Header.time]: { type: 'string', format: 'date-time' },
            [Header.subject]: { type: 'string' },
            [Header.dataschema]: { type: 'string', description: 'urn:dyad:schema:<type>' },
            [Header.contentType]: { type: 'string', const: CONTENT_TYPE_JSON },
            [Header.traceparent]: { type: 'string', description: 'W3C Trace Context' },
            [Header.tracestate]: { type: 'string' },
          },
        },
      },
    },
  };
}

function pretty(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}
