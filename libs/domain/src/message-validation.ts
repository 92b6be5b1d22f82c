/**
 * The rules of CONTRACT 2.2-2.4 and 3.3 for one Kafka message value: either the accepted, normalised
 * event, or the reason (and a sentence) it goes to the DLQ with.
 *
 * Checks run in a fixed order, so a message that breaks several rules always gets the same reason:
 * size, UTF-8 and JSON, object, the envelope members in contract order (event_id, type,
 * schema_version, org_id, connection_id, occurred_at, data), the `data` members by type in contract
 * order, and last the future rule.
 *
 * Decisions where the contract is silent (for the project docs to repeat):
 * - A member whose value is JSON `null` counts as left out, everywhere: a required one is
 *   `missing_field`, an optional one takes its default (for `connection.configured`, also inside
 *   `routing_hints` and `fee_structure`). Producers that serialise "no value" as null are common.
 * - A byte-order mark before the JSON is `invalid_json` (RFC 8259 forbids sending one).
 * - Every string kept in the event must be storable in PostgreSQL text/jsonb: no U+0000 and no
 *   unpaired UTF-16 surrogate (JSON escapes can produce both). Such a message is rejected
 *   (`invalid_field` / `invalid_data`) instead of failing later in storage.
 * - The free-form objects kept as given (`capabilities`, `fee_structure.per_method`,
 *   `fee_structure.per_currency`) must also hold only finite numbers (`1e400` parses to Infinity,
 *   which JSON cannot carry) and nest at most MAX_FREE_FORM_DEPTH levels deep (a 64 KiB message can
 *   nest deep enough to overflow the stack of JSON.stringify).
 * - `fee_structure.fixed` must be a safe integer (|n| <= 2^53 - 1), so that it is stored exactly.
 * - The optional call strings (`error_code`, `operation`, `method`, `currency`) must be strings when
 *   given: a number there breaks the contract's rule and is `invalid_data`, not silently dropped.
 * - `detail` never repeats any value from the message (so never credentials): it names the member and
 *   the rule only. All details are plain ASCII, fit for a Kafka header.
 */
import { TextDecoder } from 'node:util';
import {
  CallCompletedData,
  ConnectionConfig,
  ConnectionEvent,
  ConnectionStatus,
  EVENT_TYPES,
  EventType,
  FeeStructure,
  MODES,
  Mode,
  PROVIDERS,
  Provider,
  RoutingHints,
  STATUSES,
  ValidationCompletedData,
} from './event';
import { isStorableInstant, parseTimestamp } from './time';

/** The machine-readable reasons a message goes to the DLQ with (header `dlq-reason`). */
export const DLQ_REASONS = [
  'empty_message',
  'message_too_large',
  'invalid_json',
  'not_an_object',
  'missing_field',
  'invalid_field',
  'unknown_type',
  'unsupported_schema_version',
  'invalid_data',
  'occurred_at_in_future',
] as const;
export type DlqReason = (typeof DLQ_REASONS)[number];

/**
 * Reasons given after validation: the message passed it, but the event log refused to store what it
 * holds (a value the database cannot take). The writer finds such a message in its append and sends
 * it to the DLQ alone, so it never holds back the others (CONTRACT 2.4).
 */
export const STORAGE_DLQ_REASONS = ['unstorable'] as const;
export type StorageDlqReason = (typeof STORAGE_DLQ_REASONS)[number];

/** Every `dlq-reason` the service writes. */
export const ALL_DLQ_REASONS = [...DLQ_REASONS, ...STORAGE_DLQ_REASONS] as const;

/** 64 KiB: a message value of exactly this many bytes is accepted, one more is not. */
export const MAX_MESSAGE_BYTES = 65_536;

/** How far ahead of the moment it is consumed an event's `occurred_at` may be (exactly 5 min is fine). */
export const MAX_FUTURE_SKEW_MS = 300_000;

/** The only schema version there is. */
export const SCHEMA_VERSION = 1;

/** Deepest nesting accepted inside a free-form object; the member itself is level 1. */
export const MAX_FREE_FORM_DEPTH = 64;

export const MAX_LABELS = 20;
export const MAX_VALIDATION_ERROR_LENGTH = 1000;
export const MAX_LATENCY_MS = 600_000;

export type MessageValidation =
  | { ok: true; event: ConnectionEvent }
  | { ok: false; reason: DlqReason; detail: string; field?: string };

/**
 * Validates and normalises one message value consumed at `consumedAtMs` (the wall clock, read by the
 * caller: the future rule is the contract's one use of it).
 */
export function validateMessage(value: Buffer | null, consumedAtMs: number): MessageValidation {
  try {
    return { ok: true, event: readEvent(value, consumedAtMs) };
  } catch (e) {
    if (e instanceof Rejection) {
      return e.field === undefined
        ? { ok: false, reason: e.reason, detail: e.detail }
        : { ok: false, reason: e.reason, detail: e.detail, field: e.field };
    }
    throw e;
  }
}

/** Thrown inside this module only, to stop at the first broken rule; never escapes it. */
class Rejection {
  constructor(
    readonly reason: DlqReason,
    readonly detail: string,
    readonly field?: string,
  ) {}
}

type JsonObject = Record<string, unknown>;

// `ignoreBOM: true` keeps a leading BOM in the text, where JSON.parse rejects it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const ORG_ID = /^[A-Za-z0-9_-]{1,64}$/;
const CONNECTION_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const LABEL = /^[A-Za-z0-9_-]{1,64}$/;
// U+0000, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one.
// eslint-disable-next-line no-control-regex -- NUL is exactly what this looks for
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const UNSTORABLE_RULE = 'must not contain the NUL character or unpaired UTF-16 surrogates';

function readEvent(value: Buffer | null, consumedAtMs: number): ConnectionEvent {
  const root = readRootObject(value);

  const eventId = readEventId(root);
  const type = readType(root);
  readSchemaVersion(root);
  const orgId = readIdentifier(root, 'org_id', ORG_ID, 'org_id must be 1 to 64 characters of A-Z a-z 0-9 _ -.');
  const connectionId = readIdentifier(
    root,
    'connection_id',
    CONNECTION_ID,
    'connection_id must be 1 to 128 characters of A-Z a-z 0-9 _ - . :.',
  );
  const occurredAt = readOccurredAt(root);
  const data = readDataObject(root);

  const event = eventOf(type, eventId, orgId, connectionId, occurredAt, data);

  if (occurredAt > consumedAtMs + MAX_FUTURE_SKEW_MS) {
    throw new Rejection(
      'occurred_at_in_future',
      'occurred_at is more than 5 minutes ahead of the time the message was consumed.',
      'occurred_at',
    );
  }
  return event;
}

/** Builds the event with its type's normalised data (keys of the event and its data in contract order). */
function eventOf(
  type: EventType,
  eventId: string,
  orgId: string,
  connectionId: string,
  occurredAt: number,
  data: JsonObject,
): ConnectionEvent {
  switch (type) {
    case 'psp.call.completed':
      return { eventId, type, orgId, connectionId, occurredAt, data: readCallData(data) };
    case 'connection.validation.completed':
      return { eventId, type, orgId, connectionId, occurredAt, data: readValidationData(data) };
    case 'connection.configured':
      return { eventId, type, orgId, connectionId, occurredAt, data: readConfig(data) };
    case 'connection.status_changed':
      return { eventId, type, orgId, connectionId, occurredAt, data: { status: readStatus(data) } };
    case 'connection.labels_changed':
      return { eventId, type, orgId, connectionId, occurredAt, data: { labels: readRequiredLabels(data) } };
    case 'connection.deleted':
      // `{}` by the contract; any members are unknown members, and ignored.
      return { eventId, type, orgId, connectionId, occurredAt, data: {} };
  }
}

// ---------------------------------------------------------------------------------------------------
// The value as a whole

function readRootObject(value: Buffer | null): JsonObject {
  if (value === null || value.length === 0) {
    throw new Rejection('empty_message', 'The message value is empty.');
  }
  if (value.length > MAX_MESSAGE_BYTES) {
    throw new Rejection(
      'message_too_large',
      `The message value is ${value.length} bytes, more than the limit of ${MAX_MESSAGE_BYTES} bytes (64 KiB).`,
    );
  }
  let text: string;
  try {
    text = utf8.decode(value);
  } catch {
    throw new Rejection('invalid_json', 'The message value is not valid UTF-8.');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // The parser's own message can quote the input (and so credentials): never pass it on.
    throw new Rejection('invalid_json', 'The message value is not valid JSON.');
  }
  if (!isObject(parsed)) {
    throw new Rejection('not_an_object', 'The message value is JSON but not a JSON object.');
  }
  return parsed;
}

// ---------------------------------------------------------------------------------------------------
// The envelope

function readEventId(root: JsonObject): string {
  const v = requiredEnvelopeMember(root, 'event_id');
  if (typeof v !== 'string') throw invalidField('event_id', 'event_id must be a string.');
  const length = codePointCount(v);
  if (length < 1 || length > 128) throw invalidField('event_id', 'event_id must be 1 to 128 characters long.');
  if (UNSTORABLE.test(v)) throw invalidField('event_id', `event_id ${UNSTORABLE_RULE}.`);
  return v;
}

const KNOWN_TYPES: ReadonlySet<string> = new Set(EVENT_TYPES);

function readType(root: JsonObject): EventType {
  const v = requiredEnvelopeMember(root, 'type');
  if (typeof v !== 'string') throw invalidField('type', 'type must be a string.');
  if (!KNOWN_TYPES.has(v)) {
    throw new Rejection(
      'unknown_type',
      `type is not one of the known event types (${EVENT_TYPES.join(', ')}).`,
      'type',
    );
  }
  return v as EventType;
}

function readSchemaVersion(root: JsonObject): void {
  const v = requiredEnvelopeMember(root, 'schema_version');
  // The JSON number 1 (`1.0` parses to the same number); the string "1" is not it.
  if (v !== SCHEMA_VERSION) {
    throw new Rejection('unsupported_schema_version', 'schema_version must be the number 1.', 'schema_version');
  }
}

function readIdentifier(root: JsonObject, name: 'org_id' | 'connection_id', pattern: RegExp, rule: string): string {
  const v = requiredEnvelopeMember(root, name);
  if (typeof v !== 'string') throw invalidField(name, `${name} must be a string.`);
  if (!pattern.test(v)) throw invalidField(name, rule);
  return v;
}

function readOccurredAt(root: JsonObject): number {
  const v = requiredEnvelopeMember(root, 'occurred_at');
  const ms = typeof v === 'string' ? parseTimestamp(v) : null;
  if (ms === null) {
    throw invalidField(
      'occurred_at',
      'occurred_at must be an RFC 3339 timestamp with an offset, such as 2026-11-24T10:15:00.250Z.',
    );
  }
  if (!isStorableInstant(ms)) {
    throw invalidField(
      'occurred_at',
      'occurred_at must name an instant between 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z (in UTC).',
    );
  }
  return ms;
}

function readDataObject(root: JsonObject): JsonObject {
  const v = requiredEnvelopeMember(root, 'data');
  if (!isObject(v)) throw invalidField('data', 'data must be a JSON object.');
  return v;
}

function requiredEnvelopeMember(root: JsonObject, name: string): unknown {
  const v = member(root, name);
  if (v === undefined) throw new Rejection('missing_field', `The required member ${name} is missing.`, name);
  return v;
}

function invalidField(field: string, detail: string): Rejection {
  return new Rejection('invalid_field', detail, field);
}

// ---------------------------------------------------------------------------------------------------
// `data`, by type

const CALL_OPTIONAL_STRINGS = ['error_code', 'operation', 'method', 'currency'] as const;

function readCallData(data: JsonObject): CallCompletedData {
  const outcome = requiredDataMember(data, 'outcome');
  if (outcome !== 'success' && outcome !== 'failure') {
    throw invalidData('data.outcome', 'data.outcome must be success or failure.');
  }
  const latency = requiredDataMember(data, 'latency_ms');
  if (typeof latency !== 'number' || !Number.isInteger(latency) || latency < 0 || latency > MAX_LATENCY_MS) {
    throw invalidData('data.latency_ms', `data.latency_ms must be an integer from 0 to ${MAX_LATENCY_MS}.`);
  }
  const call: CallCompletedData = { outcome, latency_ms: latency };
  for (const name of CALL_OPTIONAL_STRINGS) {
    const v = member(data, name);
    if (v !== undefined) call[name] = storableString(v, `data.${name}`);
  }
  return call;
}

function readValidationData(data: JsonObject): ValidationCompletedData {
  const result = requiredDataMember(data, 'result');
  if (result !== 'success' && result !== 'failure') {
    throw invalidData('data.result', 'data.result must be success or failure.');
  }
  const validation: ValidationCompletedData = { result };
  const error = member(data, 'error');
  if (error !== undefined) {
    const text = storableString(error, 'data.error');
    if (codePointCount(text) > MAX_VALIDATION_ERROR_LENGTH) {
      throw invalidData('data.error', `data.error must be at most ${MAX_VALIDATION_ERROR_LENGTH} characters long.`);
    }
    validation.error = text;
  }
  return validation;
}

/**
 * The whole config, every member filled with its default when left out (or null). `credentials` and
 * every other member the contract does not name are simply never read, so they cannot reach the
 * event, the log or a DLQ detail.
 */
function readConfig(data: JsonObject): ConnectionConfig {
  const provider = requiredDataMember(data, 'provider');
  if (!isOneOf(PROVIDERS, provider)) {
    throw invalidData('data.provider', `data.provider must be one of ${PROVIDERS.join(', ')} (lowercase).`);
  }
  const mode = member(data, 'mode') ?? 'live';
  if (!isOneOf(MODES, mode)) throw invalidData('data.mode', 'data.mode must be live or sandbox.');
  const status = member(data, 'status') ?? 'active';
  if (!isOneOf(STATUSES, status)) throw invalidData('data.status', 'data.status must be active or inactive.');
  const capabilities = member(data, 'capabilities') ?? {};
  if (!isObject(capabilities)) throw invalidData('data.capabilities', 'data.capabilities must be a JSON object.');
  checkFreeForm(capabilities, 'data.capabilities');

  return {
    provider: provider as Provider,
    mode: mode as Mode,
    status: status as ConnectionStatus,
    capabilities,
    routing_hints: readRoutingHints(member(data, 'routing_hints')),
    labels: readLabels(member(data, 'labels') ?? []),
    fee_structure: readFeeStructure(member(data, 'fee_structure')),
  };
}

function readRoutingHints(v: unknown): RoutingHints {
  if (v === undefined) return { country_preference: [], method_bias: {}, fallback_only: false };
  if (!isObject(v)) throw invalidData('data.routing_hints', 'data.routing_hints must be a JSON object.');

  const countries = member(v, 'country_preference') ?? [];
  const countryField = 'data.routing_hints.country_preference';
  if (!Array.isArray(countries)) throw invalidData(countryField, `${countryField} must be an array of strings.`);
  for (const c of countries) storableString(c, countryField, `${countryField} must be an array of strings.`);

  const bias = member(v, 'method_bias') ?? {};
  const biasField = 'data.routing_hints.method_bias';
  const biasRule = `${biasField} must be a JSON object of string values.`;
  if (!isObject(bias)) throw invalidData(biasField, biasRule);
  for (const key of Object.keys(bias)) {
    storableString(key, biasField, biasRule);
    storableString(bias[key], biasField, biasRule);
  }

  const fallbackOnly = member(v, 'fallback_only') ?? false;
  if (typeof fallbackOnly !== 'boolean') {
    throw invalidData('data.routing_hints.fallback_only', 'data.routing_hints.fallback_only must be true or false.');
  }
  return {
    country_preference: countries as string[],
    method_bias: bias as Record<string, string>,
    fallback_only: fallbackOnly,
  };
}

function readFeeStructure(v: unknown): FeeStructure {
  if (v === undefined) return { percentage: 0, fixed: 0, per_method: {}, per_currency: {} };
  if (!isObject(v)) throw invalidData('data.fee_structure', 'data.fee_structure must be a JSON object.');

  const percentage = member(v, 'percentage') ?? 0;
  if (typeof percentage !== 'number' || !Number.isFinite(percentage)) {
    throw invalidData('data.fee_structure.percentage', 'data.fee_structure.percentage must be a finite number.');
  }
  const fixed = member(v, 'fixed') ?? 0;
  if (typeof fixed !== 'number' || !Number.isSafeInteger(fixed)) {
    throw invalidData(
      'data.fee_structure.fixed',
      'data.fee_structure.fixed must be an integer between -9007199254740991 and 9007199254740991.',
    );
  }
  const perMethod = member(v, 'per_method') ?? {};
  if (!isObject(perMethod)) {
    throw invalidData('data.fee_structure.per_method', 'data.fee_structure.per_method must be a JSON object.');
  }
  checkFreeForm(perMethod, 'data.fee_structure.per_method');
  const perCurrency = member(v, 'per_currency') ?? {};
  if (!isObject(perCurrency)) {
    throw invalidData('data.fee_structure.per_currency', 'data.fee_structure.per_currency must be a JSON object.');
  }
  checkFreeForm(perCurrency, 'data.fee_structure.per_currency');
  return { percentage, fixed, per_method: perMethod, per_currency: perCurrency };
}

function readStatus(data: JsonObject): ConnectionStatus {
  const status = requiredDataMember(data, 'status');
  if (!isOneOf(STATUSES, status)) throw invalidData('data.status', 'data.status must be active or inactive.');
  return status as ConnectionStatus;
}

function readRequiredLabels(data: JsonObject): string[] {
  return readLabels(requiredDataMember(data, 'labels'));
}

/**
 * CONTRACT 2.3: at most 20 strings, each 1 to 64 characters of A-Z a-z 0-9 _ -; stored lowercase, in
 * the given order, later duplicates (after lowercasing) removed. The 20 counts the labels as given.
 */
function readLabels(v: unknown): string[] {
  if (!Array.isArray(v)) throw invalidData('data.labels', 'data.labels must be an array of strings.');
  if (v.length > MAX_LABELS) throw invalidData('data.labels', `data.labels must hold at most ${MAX_LABELS} labels.`);
  const labels: string[] = [];
  for (let i = 0; i < v.length; i++) {
    const label: unknown = v[i];
    if (typeof label !== 'string' || !LABEL.test(label)) {
      throw invalidData('data.labels', `data.labels[${i}] must be a string of 1 to 64 characters of A-Z a-z 0-9 _ -.`);
    }
    const lower = label.toLowerCase();
    if (!labels.includes(lower)) labels.push(lower);
  }
  return labels;
}

function requiredDataMember(data: JsonObject, name: string): unknown {
  const v = member(data, name);
  if (v === undefined) {
    throw new Rejection('missing_field', `The required member data.${name} is missing.`, `data.${name}`);
  }
  return v;
}

function invalidData(field: string, detail: string): Rejection {
  return new Rejection('invalid_data', detail, field);
}

/** A string that storage can hold, or the rejection naming `field`. */
function storableString(v: unknown, field: string, notAStringRule = `${field} must be a string.`): string {
  if (typeof v !== 'string') throw invalidData(field, notAStringRule);
  if (UNSTORABLE.test(v)) throw invalidData(field, `${field} ${UNSTORABLE_RULE}.`);
  return v;
}

/**
 * A free-form object is kept as given, so everything in it must survive JSON.stringify and jsonb:
 * storable keys and strings, finite numbers, bounded nesting. Walks with an explicit stack, since the
 * nesting is what is being checked.
 */
function checkFreeForm(root: JsonObject, field: string): void {
  const stack: Array<{ value: unknown; depth: number }> = [{ value: root, depth: 1 }];
  while (stack.length > 0) {
    const { value, depth } = stack.pop() as { value: unknown; depth: number };
    if (typeof value === 'string') {
      if (UNSTORABLE.test(value)) throw invalidData(field, `${field} ${UNSTORABLE_RULE}.`);
    } else if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw invalidData(field, `${field} must hold only finite numbers.`);
    } else if (typeof value === 'object' && value !== null) {
      if (depth > MAX_FREE_FORM_DEPTH) {
        throw invalidData(field, `${field} must not nest more than ${MAX_FREE_FORM_DEPTH} levels deep.`);
      }
      if (Array.isArray(value)) {
        for (const item of value) stack.push({ value: item, depth: depth + 1 });
      } else {
        const object = value as JsonObject;
        for (const key of Object.keys(object)) {
          if (UNSTORABLE.test(key)) throw invalidData(field, `${field} keys ${UNSTORABLE_RULE}.`);
          stack.push({ value: object[key], depth: depth + 1 });
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// JSON helpers

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An own member's value; `undefined` when it is absent or null (null counts as left out). */
function member(object: JsonObject, name: string): unknown {
  if (!Object.hasOwn(object, name)) return undefined;
  const v = object[name];
  return v === null ? undefined : v;
}

function isOneOf(values: readonly string[], v: unknown): boolean {
  return typeof v === 'string' && values.includes(v);
}

/** Length in Unicode code points (a surrogate pair is one character). */
function codePointCount(s: string): number {
  let count = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        count--;
        i++;
      }
    }
  }
  return count;
}
