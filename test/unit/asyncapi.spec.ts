import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AsyncAPIDocumentInterface, DiagnosticSeverity, MessageInterface, Parser } from '@asyncapi/parser';
import {
  CUSTOMER_DECLINE_CODES,
  ALL_DLQ_REASONS,
  DLQ_REASONS,
  DlqReason,
  EVENT_TYPES,
  HEALTH_STATUSES,
  MAX_LABELS,
  MAX_LATENCY_MS,
  MAX_MESSAGE_BYTES,
  MAX_VALIDATION_ERROR_LENGTH,
  MODES,
  PROVIDERS,
  STATUSES,
  parseTimestamp,
  validateMessage,
} from '@psp/domain';
import { DEFAULT_HEALTH_TOPIC, DEFAULT_TOPICS, parseHealthChange, recommendedKey, topicFor } from '@psp/producer';
import { HEALTH_CHANGED, healthChangedMessage } from '@psp/read-model';

/**
 * docs/asyncapi.yaml is the producers' reference: it must parse cleanly, say what the service does
 * (its examples are accepted by the service's own validation, its bad examples get the reason they
 * claim) and document every event type there is, and no other.
 */

const ROOT = join(__dirname, '..', '..');
const DOC_PATH = join(ROOT, 'docs', 'asyncapi.yaml');
const BAD_PATH = join(ROOT, 'docs', 'asyncapi-bad-examples.json');

// JSON Schema validation of examples with the ajv the parser itself ships with.
const parserEntry = require.resolve('@asyncapi/parser');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Ajv = require(require.resolve('ajv', { paths: [parserEntry] })).default;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const addFormats = require(require.resolve('ajv-formats', { paths: [parserEntry] })).default;

type Json = Record<string, unknown>;
type ValidateFn = ((value: unknown) => boolean) & { errors?: unknown };

interface BadExample {
  name: string;
  topic: string;
  payload?: unknown;
  raw?: string;
  pad_to_bytes?: number;
  expected_reason: DlqReason;
  expected_field?: string;
  /** Set when the rule broken is one the JSON Schemas cannot express: why. */
  schema_cannot_tell?: string;
}

/** Reasons the JSON Schemas cannot tell (bytes, size, the wall clock); every other bad example must fail the schemas too. */
const NOT_SCHEMA_REASONS: ReadonlySet<DlqReason> = new Set([
  'empty_message',
  'message_too_large',
  'invalid_json',
  'occurred_at_in_future',
]);

const INTAKE_CHANNELS = ['calls', 'validations', 'connections'] as const;

let document: AsyncAPIDocumentInterface;
let diagnostics: Array<{ severity: number; code: string | number; message: string; path: Array<string | number> }>;
let ajv: { compile(schema: unknown): ValidateFn };

beforeAll(async () => {
  const parser = new Parser();
  const result = await parser.parse(readFileSync(DOC_PATH, 'utf8'), { source: DOC_PATH });
  diagnostics = result.diagnostics as typeof diagnostics;
  if (!result.document) throw new Error(`docs/asyncapi.yaml did not parse: ${JSON.stringify(diagnostics, null, 1)}`);
  document = result.document;
  ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
}, 60000);

function intakeMessages(): Array<{ channel: string; address: string; message: MessageInterface }> {
  return INTAKE_CHANNELS.flatMap((id) => {
    const channel = document.channels().get(id);
    if (!channel) throw new Error(`channel ${id} is missing`);
    return channel
      .messages()
      .all()
      .map((message) => ({ channel: id, address: channel.address() as string, message }));
  });
}

/** The `type` a message documents: the const in its payload's allOf. */
function documentedType(message: MessageInterface): string {
  const payload = message.payload()?.json() as Json;
  const parts = (payload.allOf as Json[]) ?? [];
  const consts = parts
    .map((p) => ((p.properties as Json | undefined)?.type as Json | undefined)?.const)
    .filter((c) => c !== undefined);
  if (consts.length !== 1) throw new Error(`message ${message.id()} does not fix its type with one const`);
  return consts[0] as string;
}

function schemas(): Json {
  return (document.json() as unknown as { components: { schemas: Json } }).components.schemas;
}

function schema(name: string): Json {
  return schemas()[name] as Json;
}

function examplesOf(
  message: MessageInterface,
): Array<{ name: string; summary?: string; payload: unknown; headers?: Json }> {
  return message
    .examples()
    .all()
    .map((e) => e.json() as { name: string; summary?: string; payload: unknown; headers?: Json });
}

function bytesOf(example: BadExample): Buffer {
  if (example.raw !== undefined) return Buffer.from(example.raw, 'utf8');
  const text = JSON.stringify(example.payload);
  if (example.pad_to_bytes === undefined) return Buffer.from(text, 'utf8');
  // `{...}` becomes `{...,"padding":"xxx"}`: 14 bytes of member syntax plus the x's.
  const xs = example.pad_to_bytes - Buffer.byteLength(text) - ',"padding":""'.length;
  const padded = Buffer.from(JSON.stringify({ ...(example.payload as Json), padding: 'x'.repeat(xs) }), 'utf8');
  expect(padded.length).toBe(example.pad_to_bytes);
  return padded;
}

describe('docs/asyncapi.yaml', () => {
  it('parses as AsyncAPI 3.0 with no diagnostic of severity error', () => {
    const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
    expect(errors.map((d) => `${d.code} at ${d.path.join('.')}: ${d.message}`)).toEqual([]);
    expect(document.version()).toBe('3.0.0');
  });

  it('documents every event type exactly once, on its topic, and nothing else', () => {
    const documented = intakeMessages().map(({ address, message }) => {
      const type = documentedType(message);
      expect(message.name()).toBe(type);
      expect(address).toBe(topicFor(type as (typeof EVENT_TYPES)[number]));
      return type;
    });
    expect([...documented].sort()).toEqual([...EVENT_TYPES].sort());
  });

  it('names the four default topics', () => {
    const addresses = document
      .channels()
      .all()
      .map((c) => c.address());
    expect(addresses.sort()).toEqual(
      [
        DEFAULT_TOPICS.calls,
        DEFAULT_TOPICS.connections,
        'psp.dlq',
        DEFAULT_TOPICS.validations,
        DEFAULT_HEALTH_TOPIC,
      ].sort(),
    );
  });

  it('describes the health changes the service produces, and its examples are what it produces', () => {
    const channel = document.channels().get('health')!;
    expect(channel.address()).toBe(DEFAULT_HEALTH_TOPIC);
    const [message] = channel.messages().all();
    expect(message.name()).toBe(HEALTH_CHANGED);
    const validate = ajv.compile(message.payload()!.json());
    for (const example of examplesOf(message)) {
      expect([example.name, validate(example.payload)]).toEqual([example.name, true]);
      const p = example.payload as {
        org_id: string;
        connection_id: string;
        occurred_at: string;
        data: { sequence: number; from: string | null; to: string; health_score: number };
      };
      // Byte for byte what the service writes for that change.
      expect(JSON.stringify(example.payload)).toBe(
        healthChangedMessage({
          orgId: p.org_id,
          connectionId: p.connection_id,
          sequence: p.data.sequence,
          streamTimeMs: Date.parse(p.occurred_at),
          from: p.data.from,
          to: p.data.to,
          score: p.data.health_score,
        }),
      );
      // And the routers' kit reads it.
      expect(parseHealthChange(JSON.stringify(example.payload))?.sequence).toBe(p.data.sequence);
    }
    expect(schema('HealthStatus').enum).toEqual([...HEALTH_STATUSES]);
  });

  it('states the same enums and limits as the service', () => {
    expect(schema('Provider').enum).toEqual([...PROVIDERS]);
    expect(schema('Mode').enum).toEqual([...MODES]);
    expect(schema('Status').enum).toEqual([...STATUSES]);
    expect(schema('EventType').enum).toEqual([...EVENT_TYPES]);
    expect(schema('DlqReason').enum).toEqual([...ALL_DLQ_REASONS]);
    expect(schema('Labels').maxItems).toBe(MAX_LABELS);
    const call = schema('CallCompletedData').properties as Record<string, Json>;
    expect(call.latency_ms.maximum).toBe(MAX_LATENCY_MS);
    for (const code of CUSTOMER_DECLINE_CODES) expect(call.error_code.description).toContain(`\`${code}\``);
    const validation = schema('ValidationCompletedData').properties as Record<string, Json>;
    expect(validation.error.maxLength).toBe(MAX_VALIDATION_ERROR_LENGTH);
    expect(schema('Envelope').description).toContain(`${MAX_MESSAGE_BYTES} bytes`);
    const dlqHeaders = schema('DlqHeaders');
    expect(dlqHeaders.required).toEqual(['dlq-reason', 'dlq-detail', 'dlq-topic', 'dlq-partition', 'dlq-offset']);
  });

  it('gives every message type at least one example, keyed <org_id>:<connection_id>', () => {
    const keyPattern = new RegExp(schema('MessageKey').pattern as string);
    for (const { message } of intakeMessages()) {
      const examples = examplesOf(message);
      expect(examples.length).toBeGreaterThan(0);
      for (const example of examples) {
        const key = recommendedKey(example.payload as { org_id: string; connection_id: string });
        expect(key).toMatch(keyPattern);
        expect(example.summary).toContain(`Key \`${key}\``);
      }
    }
  });

  it('has examples that the service accepts, as the type they document, and that match the schemas', () => {
    const all = intakeMessages().flatMap(({ message }) => examplesOf(message).map((example) => ({ message, example })));
    // Consumed just after the latest example happened, so none is "in the future".
    const consumedAt =
      Math.max(...all.map(({ example }) => parseTimestamp((example.payload as Json).occurred_at as string) ?? 0)) +
      1000;
    const ids = new Set<string>();
    for (const { message, example } of all) {
      const result = validateMessage(Buffer.from(JSON.stringify(example.payload), 'utf8'), consumedAt);
      if (!result.ok)
        throw new Error(
          `example ${message.id()}/${example.name} is refused: ${result.reason} ${result.field}: ${result.detail}`,
        );
      expect(result.event.type).toBe(documentedType(message));
      ids.add(result.event.eventId);
      const validate = ajv.compile(message.payload()!.json());
      if (!validate(example.payload))
        throw new Error(
          `example ${message.id()}/${example.name} breaks its schema: ${JSON.stringify(validate.errors)}`,
        );
    }
    expect(ids.size).toBe(all.length); // every example has its own event_id
  });

  it('has DLQ examples whose headers the service would write for their value', () => {
    const dlq = document.channels().get('dlq')!.messages().all();
    expect(dlq).toHaveLength(1);
    const validateHeaders = ajv.compile(dlq[0].headers()!.json());
    const examples = examplesOf(dlq[0]);
    expect(examples.length).toBeGreaterThan(0);
    for (const example of examples) {
      expect(validateHeaders(example.headers)).toBe(true);
      const headers = example.headers as Record<string, string>;
      const result = validateMessage(Buffer.from(example.payload as string, 'utf8'), Date.UTC(2026, 10, 24, 12));
      expect(result.ok).toBe(false);
      if (result.ok) continue;
      expect(headers['dlq-reason']).toBe(result.reason);
      expect(headers['dlq-detail']).toBe(result.detail);
      expect(Object.values(DEFAULT_TOPICS)).toContain(headers['dlq-topic']);
    }
  });
});

describe('docs/asyncapi-bad-examples.json', () => {
  const file = JSON.parse(readFileSync(BAD_PATH, 'utf8')) as { consumed_at: string; examples: BadExample[] };
  const consumedAt = parseTimestamp(file.consumed_at)!;

  it('covers every DLQ reason, with unique names', () => {
    expect(new Set(file.examples.map((e) => e.expected_reason))).toEqual(new Set(DLQ_REASONS));
    expect(new Set(file.examples.map((e) => e.name)).size).toBe(file.examples.length);
  });

  it.each(file.examples.map((e) => [e.name, e] as const))('%s fails with its expected reason', (_name, example) => {
    expect(Object.values(DEFAULT_TOPICS)).toContain(example.topic);
    const result = validateMessage(bytesOf(example), consumedAt);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.reason).toBe(example.expected_reason);
    expect(result.field).toBe(example.expected_field);
  });

  it('breaks the schemas of its topic too, where a schema can tell', () => {
    for (const example of file.examples) {
      if (
        NOT_SCHEMA_REASONS.has(example.expected_reason) ||
        example.payload === undefined ||
        example.schema_cannot_tell !== undefined
      )
        continue;
      const channel = document
        .channels()
        .all()
        .find((c) => c.address() === example.topic)!;
      const validate = ajv.compile({
        anyOf: channel
          .messages()
          .all()
          .map((m) => m.payload()!.json()),
      });
      expect([example.name, validate(example.payload)]).toEqual([example.name, false]);
    }
  });
});
