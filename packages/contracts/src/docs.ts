import { z } from 'zod';
import type { MessageContract } from './contract.ts';
import { CE_SPECVERSION, CONTENT_TYPE_JSON, Header, dataSchemaUri } from './cloudevents.ts';
import { ALL_CONTRACTS, ALL_STREAMS, REQUEST_REPLY } from './registry.ts';
import { REPLY_INBOX } from './reply.ts';
import { DeadLetterHeader, DeadLetterStream } from './streams.ts';
import type { StreamSpec } from './streams.ts';
import { DEAD_LETTER_ROOT } from './subjects.ts';

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
  // Draft-07: the JSON Schema version AsyncAPI 3 reads (schemaFormat below). "output" mode
  // documents what is on the wire after the producer applied defaults. Objects stay open: a later
  // minor revision may add optional fields, and old readers must accept them.
  const schema = z.toJSONSchema(c.schema, {
    target: 'draft-07',
    io: 'output',
    unrepresentable: 'any',
    override: (ctx) => {
      if (ctx.jsonSchema.additionalProperties === false) delete ctx.jsonSchema.additionalProperties;
    },
  });
  return { $id: dataSchemaUri(c.type), title: c.type, description: c.description, ...schema };
}

const SCHEMA_FORMAT = 'application/schema+json;version=draft-07';

function channelId(c: MessageContract): string {
  return c.type.replace(/^io\.dyad\./, '').replace(/\./g, '-');
}

const isReply = (c: MessageContract) => c.subjectPattern === REPLY_INBOX;

/** Placeholders of a subject pattern, e.g. `containerId` of `….{containerId}.{ifName}`. */
function parametersOf(pattern: string): Record<string, unknown> | undefined {
  const names = [...pattern.matchAll(/\{([A-Za-z][A-Za-z0-9]*)\}/g)].map((m) => m[1] as string);
  if (names.length === 0) return undefined;
  return Object.fromEntries(
    names.map((p) => [
      p,
      {
        description: `${p}: one subject token, percent-encoded for '.', '*', '>', '%' and white space`,
      },
    ]),
  );
}

function asyncApiOf(contracts: readonly MessageContract[]): Record<string, unknown> {
  const channels: Record<string, unknown> = {};
  const operations: Record<string, unknown> = {};
  const messages: Record<string, unknown> = {};
  const requests = new Map(REQUEST_REPLY.map((r) => [r.request, r.replies]));
  for (const c of contracts) {
    const id = channelId(c);
    messages[id] = {
      name: c.type,
      title: c.type,
      summary: c.description,
      contentType: CONTENT_TYPE_JSON,
      headers: { $ref: '#/components/schemas/CloudEventHeaders' },
      payload: { schemaFormat: SCHEMA_FORMAT, schema: { $ref: `./schemas/${c.type}.json` } },
    };
    if (isReply(c)) continue; // on the requester's inbox channel, below
    const parameters = parametersOf(c.subjectPattern);
    channels[id] = {
      address: c.subjectPattern,
      description:
        c.stream === undefined ? c.description : `${c.description} Stored in stream ${c.stream}.`,
      ...(parameters ? { parameters } : {}),
      messages: { [id]: { $ref: `#/components/messages/${id}` } },
    };
    const replies = requests.get(c);
    operations[replies ? `request-${id}` : `receive-${id}`] = replies
      ? {
          action: 'send',
          channel: { $ref: `#/channels/${id}` },
          summary: `Request with ${c.type}; the answer arrives on the request's reply subject`,
          reply: {
            channel: { $ref: '#/channels/inbox' },
            messages: replies.map((r) => ({ $ref: `#/channels/inbox/messages/${channelId(r)}` })),
          },
        }
      : { action: 'receive', channel: { $ref: `#/channels/${id}` }, summary: `Consume ${c.type}` };
  }
  channels['inbox'] = {
    address: null,
    description:
      "The requester's inbox: the NATS reply subject a request carries (`_INBOX.…` by default).",
    messages: Object.fromEntries(
      contracts
        .filter(isReply)
        .map((c) => [channelId(c), { $ref: `#/components/messages/${channelId(c)}` }]),
    ),
  };
  messages['dead-letter'] = {
    name: 'dead-letter',
    title: 'A refused message',
    summary:
      'A message a service refused, byte for byte, with its own headers and the dyad-dlq-* headers saying why.',
    headers: { $ref: '#/components/schemas/DeadLetterHeaders' },
    payload: { description: 'The refused message body, unchanged (any bytes).' },
  };
  channels['dead-letter'] = {
    address: `${DEAD_LETTER_ROOT}.{service}`,
    description: `What a service refused, kept a week in stream ${DeadLetterStream.name}.`,
    parameters: { service: { description: 'the refusing service, e.g. `ipam`' } },
    messages: { 'dead-letter': { $ref: '#/components/messages/dead-letter' } },
  };
  operations['receive-dead-letter'] = {
    action: 'receive',
    channel: { $ref: '#/channels/dead-letter' },
    summary: 'Consume refused messages',
  };
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Dyad events',
      version: '1',
      description: [
        'Messages Dyad services exchange over NATS. Each is a CloudEvent in binary content mode',
        `(the CloudEvents NATS binding): context attributes in ce-* headers (specversion ${CE_SPECVERSION}),`,
        'the JSON payload as the body, W3C traceparent in the headers. A type ends in its major',
        'version; a breaking change is a new type. ce-subject, where set, names what the event is',
        'about as <kind>/<namespace>/<name> or <kind>/<name> (e.g. pod/shop/web-0, node/node-1).',
        `Streams: ${ALL_STREAMS.map((s) => `${s.name} (${s.subjects.join(', ')}${retention(s)}): ${s.description}`).join(' ')}`,
      ].join(' '),
    },
    servers: {
      cluster: {
        host: 'dyad-nats:4222',
        protocol: 'nats',
        description:
          "The Helm chart's NATS (Service dyad-nats in the release's namespace); the lab prints its own with `npm run lab -- status -o json`.",
      },
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
            [Header.subject]: {
              type: 'string',
              description: 'what the event is about: <kind>/<namespace>/<name> or <kind>/<name>',
            },
            [Header.dataschema]: { type: 'string', description: 'urn:dyad:schema:<type>' },
            [Header.datacontenttype]: { type: 'string', const: CONTENT_TYPE_JSON },
            [Header.contentType]: { type: 'string', const: CONTENT_TYPE_JSON },
            [Header.traceparent]: { type: 'string', description: 'W3C Trace Context' },
            [Header.tracestate]: { type: 'string' },
          },
        },
        DeadLetterHeaders: {
          type: 'object',
          required: Object.values(DeadLetterHeader),
          properties: Object.fromEntries(
            Object.values(DeadLetterHeader).map((h) => [h, { type: 'string' }]),
          ),
        },
      },
    },
  };
}

function retention(s: StreamSpec): string {
  const parts: string[] = [];
  if (s.maxMsgsPerSubject === 1) parts.push('last value per subject');
  if (s.maxAgeMs !== undefined) parts.push(`kept ${Math.round(s.maxAgeMs / 3_600_000)} h`);
  if (s.maxBytes !== undefined) parts.push(`at most ${s.maxBytes / 2 ** 20} MiB`);
  return parts.length > 0 ? `: ${parts.join(', ')}` : '';
}

function pretty(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}
