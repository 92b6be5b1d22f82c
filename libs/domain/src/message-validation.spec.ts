import { ConnectionEvent } from './event';
import {
  DLQ_REASONS,
  DlqReason,
  MAX_FREE_FORM_DEPTH,
  MAX_FUTURE_SKEW_MS,
  MAX_MESSAGE_BYTES,
  MessageValidation,
  validateMessage,
} from './message-validation';

type Json = Record<string, unknown>;

/** The moment the messages are consumed: 2026-11-24T10:20:00.000Z. */
const NOW = Date.UTC(2026, 10, 24, 10, 20);
const OCCURRED_AT = '2026-11-24T10:15:00.250Z';
const OCCURRED_AT_MS = Date.UTC(2026, 10, 24, 10, 15, 0, 250);

const CALL_DATA = { outcome: 'success', latency_ms: 412 };

/** The contract's example message (CONTRACT 2.2), with `overrides` applied to the envelope. */
function envelope(overrides: Json = {}): Json {
  return {
    event_id: '6f1c2a9e-5d7b-4a55-9a51-0c2e3e7b1f00',
    type: 'psp.call.completed',
    schema_version: 1,
    org_id: 'org_123',
    connection_id: 'paystack_gh_primary',
    occurred_at: OCCURRED_AT,
    data: CALL_DATA,
    ...overrides,
  };
}

function ofType(type: string, data: unknown): Json {
  return envelope({ type, data });
}

function without(object: Json, name: string): Json {
  const copy = { ...object };
  delete copy[name];
  return copy;
}

function bytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function validate(value: unknown, consumedAt = NOW): MessageValidation {
  return validateMessage(bytes(value), consumedAt);
}

function accepted(result: MessageValidation): ConnectionEvent {
  if (!result.ok) throw new Error(`expected the message to be accepted, got ${result.reason}: ${result.detail}`);
  return result.event;
}

function expectRejected(result: MessageValidation, reason: DlqReason, field?: string): void {
  expect(result.ok).toBe(false);
  if (result.ok) return;
  expect({ reason: result.reason, field: result.field }).toEqual({ reason, field });
  // One sentence of plain ASCII, fit for a Kafka header.
  expect(result.detail).toMatch(/^[\x20-\x7e]+\.$/);
}

describe('validateMessage', () => {
  describe('accepts the contract example and normalises it', () => {
    it('returns the event with occurred_at in epoch ms', () => {
      const event = accepted(validate(envelope()));
      expect(event).toEqual({
        eventId: '6f1c2a9e-5d7b-4a55-9a51-0c2e3e7b1f00',
        type: 'psp.call.completed',
        orgId: 'org_123',
        connectionId: 'paystack_gh_primary',
        occurredAt: OCCURRED_AT_MS,
        data: { outcome: 'success', latency_ms: 412 },
      });
      expect(Object.keys(event)).toEqual(['eventId', 'type', 'orgId', 'connectionId', 'occurredAt', 'data']);
    });

    it('drops envelope members the contract does not name', () => {
      const event = accepted(
        validate(envelope({ key: 'org_123:x', producer: 'router-7', credentials: { secret: 's' } })),
      );
      expect(Object.keys(event)).toEqual(['eventId', 'type', 'orgId', 'connectionId', 'occurredAt', 'data']);
    });

    it('accepts a value whose JSON has whitespace, escapes and a 1.0 schema_version', () => {
      const text =
        ' {\n "event_id":"e\\u0031", "type":"psp.call.completed", "schema_version":1.0, "org_id":"o",' +
        ' "connection_id":"c", "occurred_at":"2026-11-24T10:15:00Z", "data":{"outcome":"failure","latency_ms":0}}\n';
      const event = accepted(validateMessage(Buffer.from(text, 'utf8'), NOW));
      expect(event.eventId).toBe('e1');
      expect(event.data).toEqual({ outcome: 'failure', latency_ms: 0 });
    });
  });

  describe('empty_message', () => {
    it.each([
      ['null value (tombstone)', null],
      ['zero bytes', Buffer.alloc(0)],
    ])('%s', (_name, value) => {
      expectRejected(validateMessage(value, NOW), 'empty_message');
    });
  });

  describe('message_too_large: more than 64 KiB', () => {
    /** A valid message of exactly `size` bytes, padded with an unknown member. */
    function messageOfSize(size: number): Buffer {
      const base = bytes(envelope({ padding: '' })).length;
      const value = bytes(envelope({ padding: 'x'.repeat(size - base) }));
      expect(value.length).toBe(size);
      return value;
    }

    it('accepts exactly 65536 bytes', () => {
      expect(MAX_MESSAGE_BYTES).toBe(65_536);
      expect(validateMessage(messageOfSize(65_536), NOW).ok).toBe(true);
    });

    it('rejects 65537 bytes, before looking at the content', () => {
      expectRejected(validateMessage(messageOfSize(65_537), NOW), 'message_too_large');
      expectRejected(validateMessage(Buffer.alloc(65_537, 0xff), NOW), 'message_too_large');
    });
  });

  describe('invalid_json', () => {
    it.each([
      ['a lone continuation byte', Buffer.from([0x7b, 0x80, 0x7d])],
      ['an overlong encoding of "/"', Buffer.from([0x22, 0xc0, 0xaf, 0x22])],
      ['an encoded surrogate (CESU-8)', Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22])],
      ['a truncated multi-byte sequence', Buffer.from([0x22, 0xe2, 0x82, 0x22])],
      ['0xff', Buffer.from([0xff])],
    ])('not UTF-8: %s', (_name, value) => {
      const result = validateMessage(value, NOW);
      expectRejected(result, 'invalid_json');
      expect(!result.ok && result.detail).toBe('The message value is not valid UTF-8.');
    });

    it.each([
      ['truncated JSON', '{"event_id":"e1"'],
      ['plain text', 'hello'],
      ['single quotes', "{'event_id':'e1'}"],
      ['trailing comma', '{"event_id":"e1",}'],
      ['two values', '{} {}'],
      ['NaN', '{"latency_ms":NaN}'],
      ['whitespace only', '   '],
      ['a byte-order mark before the JSON', '\ufeff' + JSON.stringify(envelope())],
    ])('not JSON: %s', (_name, text) => {
      const result = validateMessage(Buffer.from(text, 'utf8'), NOW);
      expectRejected(result, 'invalid_json');
      expect(!result.ok && result.detail).toBe('The message value is not valid JSON.');
    });

    it('never quotes the input, which may hold credentials', () => {
      const result = validateMessage(Buffer.from('{"data":{"credentials":{"secret_key":"sk_live_abc123"', 'utf8'), NOW);
      expectRejected(result, 'invalid_json');
      expect(JSON.stringify(result)).not.toContain('sk_live_abc123');
    });
  });

  describe('not_an_object', () => {
    it.each([['[]'], ['[{"event_id":"e1"}]'], ['"text"'], ['42'], ['true'], ['null']])('%s', (text) => {
      expectRejected(validateMessage(Buffer.from(text, 'utf8'), NOW), 'not_an_object');
    });
  });

  describe('missing_field: each envelope member, absent or null', () => {
    const members = ['event_id', 'type', 'schema_version', 'org_id', 'connection_id', 'occurred_at', 'data'];
    it.each(members)('%s absent', (name) => {
      expectRejected(validate(without(envelope(), name)), 'missing_field', name);
    });
    it.each(members)('%s null', (name) => {
      expectRejected(validate(envelope({ [name]: null })), 'missing_field', name);
    });
  });

  describe('event_id: 1 to 128 characters', () => {
    it.each([
      ['1 character', 'e'],
      ['128 characters', 'e'.repeat(128)],
      ['128 astral code points (256 UTF-16 units)', '😀'.repeat(128)],
      ['any characters', 'a b/c?d#é✓'],
    ])('accepts %s', (_name, id) => {
      expect(accepted(validate(envelope({ event_id: id }))).eventId).toBe(id);
    });

    it.each([
      ['empty', ''],
      ['129 characters', 'e'.repeat(129)],
      ['129 astral code points', '😀'.repeat(129)],
      ['a number', 42],
      ['an object', { id: 'e1' }],
      ['an array', ['e1']],
      ['a boolean', true],
      ['the NUL character (PostgreSQL text cannot hold it)', 'e\u00001'],
      ['an unpaired high surrogate', 'e\ud800'],
      ['an unpaired low surrogate', '\udc00e'],
    ])('rejects %s', (_name, id) => {
      expectRejected(validate(envelope({ event_id: id })), 'invalid_field', 'event_id');
    });
  });

  describe('type', () => {
    it.each(['psp.call', 'PSP.CALL.COMPLETED', 'connection.created', '', ' psp.call.completed'])(
      'unknown_type for %j',
      (type) => {
        expectRejected(validate(envelope({ type })), 'unknown_type', 'type');
      },
    );

    it.each([[1], [{}], [['psp.call.completed']], [false]])('invalid_field when not a string: %j', (type) => {
      expectRejected(validate(envelope({ type })), 'invalid_field', 'type');
    });
  });

  describe('schema_version: the number 1', () => {
    it.each([[2], [0], [1.5], [-1], ['1'], [true], [[1]], [{}]])('rejects %j', (version) => {
      expectRejected(validate(envelope({ schema_version: version })), 'unsupported_schema_version', 'schema_version');
    });
  });

  describe('org_id: 1 to 64 characters of A-Z a-z 0-9 _ -', () => {
    it.each([['o'], ['o'.repeat(64)], ['Org_A-9z']])('accepts %s', (orgId) => {
      expect(accepted(validate(envelope({ org_id: orgId }))).orgId).toBe(orgId);
    });

    it.each([
      ['empty', ''],
      ['65 characters', 'o'.repeat(65)],
      ['a dot', 'org.1'],
      ['a colon', 'org:1'],
      ['a space', 'org 1'],
      ['a non-ASCII letter', 'orgé'],
      ['a trailing newline', 'org_1\n'],
      ['a number', 123],
    ])('rejects %s', (_name, orgId) => {
      expectRejected(validate(envelope({ org_id: orgId })), 'invalid_field', 'org_id');
    });
  });

  describe('connection_id: 1 to 128 characters of A-Z a-z 0-9 _ - . :', () => {
    it.each([['c'], ['c'.repeat(128)], ['paystack_gh-1.primary:v2']])('accepts %s', (connectionId) => {
      expect(accepted(validate(envelope({ connection_id: connectionId }))).connectionId).toBe(connectionId);
    });

    it.each([
      ['empty', ''],
      ['129 characters', 'c'.repeat(129)],
      ['a slash', 'a/b'],
      ['a space', 'a b'],
      ['a non-ASCII letter', 'cé'],
      ['a number', 7],
    ])('rejects %s', (_name, connectionId) => {
      expectRejected(validate(envelope({ connection_id: connectionId })), 'invalid_field', 'connection_id');
    });
  });

  describe('occurred_at: RFC 3339 with an offset', () => {
    it('converts an offset to UTC: 15:45:00.250+05:30 is 10:15:00.250Z', () => {
      expect(accepted(validate(envelope({ occurred_at: '2026-11-24T15:45:00.250+05:30' }))).occurredAt).toBe(
        OCCURRED_AT_MS,
      );
    });

    it.each([
      ['no offset', '2026-11-24T10:15:00.250'],
      ['not a date', 'yesterday'],
      ['Feb 29 of a common year', '2026-02-29T10:15:00Z'],
      ['a leap second', '2026-11-24T10:15:60Z'],
      ['epoch ms as a number', OCCURRED_AT_MS],
      ['an object', {}],
    ])('rejects %s', (_name, occurredAt) => {
      expectRejected(validate(envelope({ occurred_at: occurredAt })), 'invalid_field', 'occurred_at');
    });
  });

  describe('occurred_at: an instant between year 0001 and year 9999 in UTC', () => {
    it.each([
      ['the first instant', '0001-01-01T00:00:00.000Z', -62_135_596_800_000],
      ['the first instant, written with a negative offset', '0000-12-31T23:30:00-00:30', -62_135_596_800_000],
      ['year 0001 with a negative offset', '0001-01-01T00:30:00-01:00', -62_135_591_400_000],
    ])('accepts %s', (_name, occurredAt, ms) => {
      expect(accepted(validate(envelope({ occurred_at: occurredAt }))).occurredAt).toBe(ms);
    });

    it.each([
      ['year 0000', '0000-06-01T00:00:00Z'],
      ['the last millisecond of year 0000', '0000-12-31T23:59:59.999Z'],
      ['year 0001 moved into year 0000 by its offset', '0001-01-01T00:30:00+01:00'],
      ['year 0001 moved one millisecond into year 0000 by the largest offset', '0001-01-01T23:58:59.999+23:59'],
    ])('rejects %s', (_name, occurredAt) => {
      const result = validate(envelope({ occurred_at: occurredAt }));
      expectRejected(result, 'invalid_field', 'occurred_at');
    });

    it('rejects year 9999 moved into year 10000 by a negative offset (checked before the future check)', () => {
      // 9999-12-31T23:59:59.999-00:01 is 10000-01-01T00:00:59.999Z: out of range whatever the clock says.
      const farFuture = Date.UTC(9999, 11, 31, 23, 59) + 3_600_000 * 24;
      expectRejected(
        validate(envelope({ occurred_at: '9999-12-31T23:59:59.999-00:01' }), farFuture),
        'invalid_field',
        'occurred_at',
      );
    });

    it('accepts the last instant of year 9999 when it is not in the future', () => {
      const consumedAt = 253_402_300_799_999;
      expect(accepted(validate(envelope({ occurred_at: '9999-12-31T23:59:59.999Z' }), consumedAt)).occurredAt).toBe(
        consumedAt,
      );
      expect(accepted(validate(envelope({ occurred_at: '9999-12-31T23:59:59.999999Z' }), consumedAt)).occurredAt).toBe(
        consumedAt,
      );
    });

    it('names the range in the detail, without quoting the value', () => {
      const result = validate(envelope({ occurred_at: '0000-06-01T00:00:00Z' }));
      expect(result.ok).toBe(false);
      if (!result.ok) {
        expect(result.detail).toContain('0001-01-01T00:00:00.000Z');
        expect(result.detail).not.toContain('0000-06-01');
      }
    });
  });

  describe('data: a JSON object', () => {
    it.each([[[]], [[CALL_DATA]], ['{}'], [1], [true]])('rejects %j', (data) => {
      expectRejected(validate(envelope({ data })), 'invalid_field', 'data');
    });
  });

  describe('occurred_at_in_future: more than 5 minutes ahead of consumption', () => {
    // NOW is 10:20:00.000Z; 5 minutes ahead is 10:25:00.000Z.
    it('accepts exactly 5 minutes ahead', () => {
      expect(MAX_FUTURE_SKEW_MS).toBe(300_000);
      const event = accepted(validate(envelope({ occurred_at: '2026-11-24T10:25:00.000Z' })));
      expect(event.occurredAt).toBe(NOW + 300_000);
    });

    it('rejects 5 minutes and 1 ms ahead', () => {
      expectRejected(
        validate(envelope({ occurred_at: '2026-11-24T10:25:00.001Z' })),
        'occurred_at_in_future',
        'occurred_at',
      );
    });

    it('compares instants, not local times: 15:55:00.001+05:30 is 10:25:00.001Z', () => {
      expectRejected(
        validate(envelope({ occurred_at: '2026-11-24T15:55:00.001+05:30' })),
        'occurred_at_in_future',
        'occurred_at',
      );
      expect(validate(envelope({ occurred_at: '2026-11-24T15:55:00+05:30' })).ok).toBe(true);
    });

    it('truncates the fraction first: 10:25:00.0009Z is 10:25:00.000Z, accepted', () => {
      expect(validate(envelope({ occurred_at: '2026-11-24T10:25:00.0009Z' })).ok).toBe(true);
    });

    it('accepts events from long ago', () => {
      expect(validate(envelope({ occurred_at: '2001-01-01T00:00:00Z' })).ok).toBe(true);
    });
  });

  describe('check order: the first broken rule decides', () => {
    it.each<[string, unknown, DlqReason, string | undefined]>([
      ['size before JSON', null, 'message_too_large', undefined],
      ['event_id before type', envelope({ event_id: '', type: 'nope' }), 'invalid_field', 'event_id'],
      ['type before schema_version', envelope({ type: 'nope', schema_version: 2 }), 'unknown_type', 'type'],
      [
        'schema_version before org_id',
        envelope({ schema_version: 2, org_id: '' }),
        'unsupported_schema_version',
        'schema_version',
      ],
      ['org_id before connection_id', envelope({ org_id: '', connection_id: '' }), 'invalid_field', 'org_id'],
      [
        'connection_id before occurred_at',
        envelope({ connection_id: '', occurred_at: 'x' }),
        'invalid_field',
        'connection_id',
      ],
      ['occurred_at before data', envelope({ occurred_at: 'x', data: [] }), 'invalid_field', 'occurred_at'],
      ['envelope before data rules', envelope({ data: { outcome: 'x' }, org_id: '' }), 'invalid_field', 'org_id'],
      [
        'data rules before the future rule',
        envelope({ occurred_at: '2030-01-01T00:00:00Z', data: { outcome: 'x', latency_ms: 1 } }),
        'invalid_data',
        'data.outcome',
      ],
      ['unknown type before missing members', { event_id: 'e1', type: 'nope' }, 'unknown_type', 'type'],
      [
        'data members in contract order',
        ofType('psp.call.completed', { latency_ms: -1 }),
        'missing_field',
        'data.outcome',
      ],
    ])('%s', (_name, message, reason, field) => {
      const value = message === null ? Buffer.from('not json'.repeat(10_000)) : bytes(message);
      expectRejected(validateMessage(value, NOW), reason, field);
    });
  });

  describe('psp.call.completed', () => {
    const call = (data: Json) => validate(ofType('psp.call.completed', data));

    it('keeps the optional strings, in contract order', () => {
      const data = accepted(
        call({
          currency: 'GHS',
          method: 'card',
          operation: 'charge',
          error_code: 'timeout',
          latency_ms: 5,
          outcome: 'failure',
        }),
      ).data;
      expect(data).toEqual({
        outcome: 'failure',
        latency_ms: 5,
        error_code: 'timeout',
        operation: 'charge',
        method: 'card',
        currency: 'GHS',
      });
      expect(Object.keys(data)).toEqual(['outcome', 'latency_ms', 'error_code', 'operation', 'method', 'currency']);
    });

    it('treats null optional strings as absent and drops unknown members', () => {
      const data = accepted(call({ ...CALL_DATA, error_code: null, method: null, amount: 100, credentials: 'x' })).data;
      expect(data).toEqual({ outcome: 'success', latency_ms: 412 });
      expect(Object.keys(data)).toEqual(['outcome', 'latency_ms']);
    });

    it.each([['outcome'], ['latency_ms']])('missing_field when %s is absent or null', (name) => {
      expectRejected(call(without(CALL_DATA, name)), 'missing_field', `data.${name}`);
      expectRejected(call({ ...CALL_DATA, [name]: null }), 'missing_field', `data.${name}`);
    });

    it.each([['SUCCESS'], ['Failure'], ['ok'], [''], [true], [1]])('rejects outcome %j', (outcome) => {
      expectRejected(call({ ...CALL_DATA, outcome }), 'invalid_data', 'data.outcome');
    });

    it.each([[0], [1], [3000], [600_000]])('accepts latency_ms %j', (latency) => {
      expect(accepted(call({ ...CALL_DATA, latency_ms: latency })).data).toEqual({
        outcome: 'success',
        latency_ms: latency,
      });
    });

    it.each([[-1], [600_001], [1.5], ['412'], [1e21], [[412]]])('rejects latency_ms %j', (latency) => {
      expectRejected(call({ ...CALL_DATA, latency_ms: latency }), 'invalid_data', 'data.latency_ms');
    });

    it.each([['error_code'], ['operation'], ['method'], ['currency']])('rejects a non-string %s', (name) => {
      expectRejected(call({ ...CALL_DATA, [name]: 42 }), 'invalid_data', `data.${name}`);
      expectRejected(call({ ...CALL_DATA, [name]: { code: 'x' } }), 'invalid_data', `data.${name}`);
      expectRejected(call({ ...CALL_DATA, [name]: 'a\u0000b' }), 'invalid_data', `data.${name}`);
    });
  });

  describe('connection.validation.completed', () => {
    const validation = (data: unknown) => validate(ofType('connection.validation.completed', data));

    it('accepts success and failure, with an optional error', () => {
      expect(accepted(validation({ result: 'success' })).data).toEqual({ result: 'success' });
      expect(accepted(validation({ result: 'failure', error: 'invalid secret key', extra: 1 })).data).toEqual({
        result: 'failure',
        error: 'invalid secret key',
      });
      expect(accepted(validation({ result: 'failure', error: null })).data).toEqual({ result: 'failure' });
    });

    it('missing_field when result is absent or null', () => {
      expectRejected(validation({}), 'missing_field', 'data.result');
      expectRejected(validation({ result: null }), 'missing_field', 'data.result');
    });

    it.each([['FAILURE'], ['failed'], [false]])('rejects result %j', (result) => {
      expectRejected(validation({ result }), 'invalid_data', 'data.result');
    });

    it('accepts an error of 1000 characters (code points) and rejects 1001', () => {
      expect(validation({ result: 'failure', error: 'x'.repeat(1000) }).ok).toBe(true);
      expect(validation({ result: 'failure', error: '😀'.repeat(1000) }).ok).toBe(true);
      expectRejected(validation({ result: 'failure', error: 'x'.repeat(1001) }), 'invalid_data', 'data.error');
      expectRejected(validation({ result: 'failure', error: '😀'.repeat(1001) }), 'invalid_data', 'data.error');
    });

    it('rejects a non-string error', () => {
      expectRejected(validation({ result: 'failure', error: 401 }), 'invalid_data', 'data.error');
      expectRejected(validation({ result: 'failure', error: ['x'] }), 'invalid_data', 'data.error');
    });
  });

  describe('connection.configured', () => {
    const configured = (data: unknown) => validate(ofType('connection.configured', data));
    const DEFAULTS = {
      provider: 'paystack',
      mode: 'live',
      status: 'active',
      capabilities: {},
      routing_hints: { country_preference: [], method_bias: {}, fallback_only: false },
      labels: [],
      fee_structure: { percentage: 0, fixed: 0, per_method: {}, per_currency: {} },
    };

    it('fills every default when only provider is given', () => {
      const data = accepted(configured({ provider: 'paystack' })).data;
      expect(data).toEqual(DEFAULTS);
      expect(Object.keys(data)).toEqual(Object.keys(DEFAULTS));
    });

    it('treats null members as left out: they take their defaults', () => {
      const data = accepted(
        configured({
          provider: 'paystack',
          mode: null,
          status: null,
          capabilities: null,
          routing_hints: null,
          labels: null,
          fee_structure: null,
        }),
      ).data;
      expect(data).toEqual(DEFAULTS);
    });

    it('normalises a full config: keys in contract order, labels lowercased, unknown parts dropped', () => {
      const data = accepted(
        configured({
          fee_structure: {
            per_currency: { GHS: { fixed: 1 } },
            fixed: 100,
            extra: true,
            percentage: 1.5,
            per_method: { card: 2 },
          },
          labels: ['Ghana', 'PRIMARY', 'ghana'],
          routing_hints: {
            fallback_only: true,
            method_bias: { card: 'prefer' },
            country_preference: ['GH', 'NG'],
            weight: 3,
          },
          capabilities: { refunds: true, nested: { extra: [1, 'two', null] } },
          status: 'inactive',
          mode: 'sandbox',
          provider: 'hubtel',
          display_name: 'Main',
        }),
      ).data;
      expect(data).toEqual({
        provider: 'hubtel',
        mode: 'sandbox',
        status: 'inactive',
        capabilities: { refunds: true, nested: { extra: [1, 'two', null] } },
        routing_hints: { country_preference: ['GH', 'NG'], method_bias: { card: 'prefer' }, fallback_only: true },
        labels: ['ghana', 'primary'],
        fee_structure: { percentage: 1.5, fixed: 100, per_method: { card: 2 }, per_currency: { GHS: { fixed: 1 } } },
      });
      expect(Object.keys(data)).toEqual(Object.keys(DEFAULTS));
      const config = data as typeof DEFAULTS;
      expect(Object.keys(config.routing_hints)).toEqual(['country_preference', 'method_bias', 'fallback_only']);
      expect(Object.keys(config.fee_structure)).toEqual(['percentage', 'fixed', 'per_method', 'per_currency']);
    });

    it('fills missing parts of routing_hints and fee_structure, also when null', () => {
      const data = accepted(
        configured({
          provider: 'stripe',
          routing_hints: { fallback_only: true, country_preference: null },
          fee_structure: { percentage: 2.9, fixed: null },
        }),
      ).data as typeof DEFAULTS;
      expect(data.routing_hints).toEqual({ country_preference: [], method_bias: {}, fallback_only: true });
      expect(data.fee_structure).toEqual({ percentage: 2.9, fixed: 0, per_method: {}, per_currency: {} });
    });

    describe('credentials are dropped and never echoed', () => {
      const credentials = { secret_key: 'sk_live_SECRET_VALUE', public_key: 'pk_live_PUBLIC' };

      it('is not in the accepted event', () => {
        const event = accepted(configured({ provider: 'paystack', credentials }));
        expect(event.data).toEqual(DEFAULTS);
        expect(JSON.stringify(event)).not.toContain('SECRET');
      });

      it.each([
        ['bad provider', { provider: 'sk_live_SECRET_VALUE', credentials }],
        [
          'credentials in capabilities shape',
          { provider: 'paystack', capabilities: 'sk_live_SECRET_VALUE', credentials },
        ],
        ['bad label', { provider: 'paystack', labels: ['sk_live_SECRET_VALUE!'], credentials }],
      ])('is not in any rejection: %s', (_name, data) => {
        const result = configured(data);
        expect(result.ok).toBe(false);
        expect(JSON.stringify(result)).not.toContain('SECRET');
      });
    });

    it.each([['paystack'], ['hubtel'], ['flutterwave'], ['monnify'], ['mpesa'], ['stripe']])(
      'accepts provider %s',
      (provider) => {
        expect((accepted(configured({ provider })).data as typeof DEFAULTS).provider).toBe(provider);
      },
    );

    it('missing_field when provider is absent or null', () => {
      expectRejected(configured({ mode: 'live' }), 'missing_field', 'data.provider');
      expectRejected(configured({ provider: null }), 'missing_field', 'data.provider');
    });

    it.each([['Paystack'], ['PAYSTACK'], ['paypal'], [''], [1]])(
      'rejects provider %j (exact, lowercase)',
      (provider) => {
        expectRejected(configured({ provider }), 'invalid_data', 'data.provider');
      },
    );

    it.each<[string, unknown, string]>([
      ['mode "LIVE"', { mode: 'LIVE' }, 'data.mode'],
      ['mode "test"', { mode: 'test' }, 'data.mode'],
      ['status "Active"', { status: 'Active' }, 'data.status'],
      ['status "deleted"', { status: 'deleted' }, 'data.status'],
      ['capabilities array', { capabilities: ['refunds'] }, 'data.capabilities'],
      ['capabilities string', { capabilities: 'refunds' }, 'data.capabilities'],
      ['routing_hints array', { routing_hints: [] }, 'data.routing_hints'],
      [
        'country_preference string',
        { routing_hints: { country_preference: 'GH' } },
        'data.routing_hints.country_preference',
      ],
      [
        'country_preference with a number',
        { routing_hints: { country_preference: ['GH', 1] } },
        'data.routing_hints.country_preference',
      ],
      [
        'country_preference with null',
        { routing_hints: { country_preference: [null] } },
        'data.routing_hints.country_preference',
      ],
      ['method_bias array', { routing_hints: { method_bias: ['card'] } }, 'data.routing_hints.method_bias'],
      ['method_bias number value', { routing_hints: { method_bias: { card: 1 } } }, 'data.routing_hints.method_bias'],
      [
        'method_bias NUL in a key',
        { routing_hints: { method_bias: { 'c\u0000': 'x' } } },
        'data.routing_hints.method_bias',
      ],
      ['fallback_only string', { routing_hints: { fallback_only: 'true' } }, 'data.routing_hints.fallback_only'],
      ['fallback_only number', { routing_hints: { fallback_only: 1 } }, 'data.routing_hints.fallback_only'],
      ['fee_structure array', { fee_structure: [] }, 'data.fee_structure'],
      ['percentage string', { fee_structure: { percentage: '1.5' } }, 'data.fee_structure.percentage'],
      ['fixed fraction', { fee_structure: { fixed: 1.5 } }, 'data.fee_structure.fixed'],
      ['fixed string', { fee_structure: { fixed: '100' } }, 'data.fee_structure.fixed'],
      ['fixed beyond 2^53 - 1', { fee_structure: { fixed: 2 ** 53 } }, 'data.fee_structure.fixed'],
      ['per_method array', { fee_structure: { per_method: [] } }, 'data.fee_structure.per_method'],
      ['per_currency number', { fee_structure: { per_currency: 1 } }, 'data.fee_structure.per_currency'],
    ])('rejects %s', (_name, member, field) => {
      expectRejected(configured({ provider: 'paystack', ...(member as Json) }), 'invalid_data', field);
    });

    it('rejects a percentage that JSON parses to Infinity', () => {
      const text = JSON.stringify(
        ofType('connection.configured', { provider: 'paystack', fee_structure: { percentage: 0 } }),
      ).replace('"percentage":0', '"percentage":1e400');
      expectRejected(validateMessage(Buffer.from(text), NOW), 'invalid_data', 'data.fee_structure.percentage');
    });

    it('accepts negative and fractional percentages and negative fixed fees (the contract bounds neither)', () => {
      const data = accepted(configured({ provider: 'paystack', fee_structure: { percentage: -0.5, fixed: -10 } }))
        .data as typeof DEFAULTS;
      expect(data.fee_structure).toEqual({ percentage: -0.5, fixed: -10, per_method: {}, per_currency: {} });
    });

    describe('free-form objects (capabilities, per_method, per_currency) are kept as given, if storable', () => {
      function nested(depth: number): Json {
        let value: Json = {};
        for (let i = 1; i < depth; i++) value = { a: value };
        return value;
      }

      it(`accepts nesting of ${MAX_FREE_FORM_DEPTH} levels and rejects one more`, () => {
        expect(configured({ provider: 'paystack', capabilities: nested(MAX_FREE_FORM_DEPTH) }).ok).toBe(true);
        expectRejected(
          configured({ provider: 'paystack', capabilities: nested(MAX_FREE_FORM_DEPTH + 1) }),
          'invalid_data',
          'data.capabilities',
        );
      });

      it('rejects nesting far deeper than JSON.stringify could write back', () => {
        const text = JSON.stringify(
          ofType('connection.configured', { provider: 'paystack', capabilities: { deep: 0 } }),
        ).replace('"deep":0', `"deep":${'['.repeat(20_000)}${']'.repeat(20_000)}`);
        expectRejected(validateMessage(Buffer.from(text), NOW), 'invalid_data', 'data.capabilities');
      });

      it.each<[string, Json, string]>([
        ['NUL in a capabilities string', { capabilities: { a: ['x\u0000'] } }, 'data.capabilities'],
        ['NUL in a capabilities key', { capabilities: { 'a\u0000': 1 } }, 'data.capabilities'],
        [
          'an unpaired surrogate in per_method',
          { fee_structure: { per_method: { card: '\ud83d' } } },
          'data.fee_structure.per_method',
        ],
        [
          'NUL in per_currency',
          { fee_structure: { per_currency: { '\u0000': 1 } } },
          'data.fee_structure.per_currency',
        ],
      ])('rejects %s', (_name, member, field) => {
        expectRejected(configured({ provider: 'paystack', ...member }), 'invalid_data', field);
      });

      it('rejects a number that JSON parses to Infinity', () => {
        const text = JSON.stringify(
          ofType('connection.configured', { provider: 'paystack', capabilities: { max: 0 } }),
        ).replace('"max":0', '"max":-1e999');
        expectRejected(validateMessage(Buffer.from(text), NOW), 'invalid_data', 'data.capabilities');
      });

      it('keeps a paired surrogate (an emoji) and a "__proto__" key as plain data', () => {
        const text = JSON.stringify(
          ofType('connection.configured', { provider: 'paystack', capabilities: { note: '😀' } }),
        ).replace('"note"', '"__proto__":{"polluted":true},"note"');
        const data = accepted(validateMessage(Buffer.from(text), NOW)).data as typeof DEFAULTS;
        expect(JSON.stringify(data.capabilities)).toBe('{"__proto__":{"polluted":true},"note":"😀"}');
        expect(({} as Json).polluted).toBeUndefined();
      });
    });
  });

  describe('labels (connection.configured and connection.labels_changed)', () => {
    const labelled = (labels: unknown) => validate(ofType('connection.labels_changed', { labels }));
    const labelsOf = (labels: unknown) => (accepted(labelled(labels)).data as { labels: string[] }).labels;

    it('lowercases, keeps the order and removes later duplicates', () => {
      expect(labelsOf(['Ghana', 'PRIMARY', 'ghana', 'b', 'GHANA', 'a'])).toEqual(['ghana', 'primary', 'b', 'a']);
    });

    it('accepts an empty array, 20 labels and 64-character labels', () => {
      expect(labelsOf([])).toEqual([]);
      const twenty = Array.from({ length: 20 }, (_, i) => `l${i}`);
      expect(labelsOf(twenty)).toEqual(twenty);
      expect(labelsOf(['A'.repeat(64)])).toEqual(['a'.repeat(64)]);
      expect(labelsOf(['a-B_9'])).toEqual(['a-b_9']);
    });

    it.each<[string, unknown]>([
      ['21 labels', Array.from({ length: 21 }, (_, i) => `l${i}`)],
      ['21 labels that are duplicates (the limit counts them as given)', Array.from({ length: 21 }, () => 'same')],
      ['an empty label', ['']],
      ['a 65-character label', ['a'.repeat(65)]],
      ['a space', ['a b']],
      ['a dot', ['a.b']],
      ['a colon', ['a:b']],
      ['a non-ASCII letter', ['ghanä']],
      ['a number', [1]],
      ['null inside', ['a', null]],
      ['a string', 'ghana'],
      ['an object', { ghana: true }],
    ])('rejects %s', (_name, labels) => {
      expectRejected(labelled(labels), 'invalid_data', 'data.labels');
      expectRejected(
        validate(ofType('connection.configured', { provider: 'paystack', labels })),
        'invalid_data',
        'data.labels',
      );
    });

    it('names the position of the bad label in the detail', () => {
      const result = labelled(['ok', 'not ok']);
      expect(!result.ok && result.detail).toContain('data.labels[1]');
    });
  });

  describe('connection.status_changed', () => {
    const changed = (data: unknown) => validate(ofType('connection.status_changed', data));

    it('accepts active and inactive and drops other members', () => {
      expect(accepted(changed({ status: 'inactive', reason: 'paused' })).data).toEqual({ status: 'inactive' });
      expect(accepted(changed({ status: 'active' })).data).toEqual({ status: 'active' });
    });

    it('requires status', () => {
      expectRejected(changed({}), 'missing_field', 'data.status');
      expectRejected(changed({ status: null }), 'missing_field', 'data.status');
    });

    it.each([['ACTIVE'], ['deleted'], [true]])('rejects status %j', (status) => {
      expectRejected(changed({ status }), 'invalid_data', 'data.status');
    });
  });

  describe('connection.labels_changed', () => {
    it('requires labels', () => {
      expectRejected(validate(ofType('connection.labels_changed', {})), 'missing_field', 'data.labels');
      expectRejected(validate(ofType('connection.labels_changed', { labels: null })), 'missing_field', 'data.labels');
    });

    it('keeps only labels', () => {
      expect(accepted(validate(ofType('connection.labels_changed', { labels: ['X'], by: 'me' }))).data).toEqual({
        labels: ['x'],
      });
    });
  });

  describe('connection.deleted', () => {
    it('has data {} whatever members it carries', () => {
      expect(accepted(validate(ofType('connection.deleted', {}))).data).toEqual({});
      expect(accepted(validate(ofType('connection.deleted', { reason: 'closed', credentials: 'x' }))).data).toEqual({});
    });

    it('still needs data to be an object', () => {
      expectRejected(validate(ofType('connection.deleted', null)), 'missing_field', 'data');
      expectRejected(validate(ofType('connection.deleted', [])), 'invalid_field', 'data');
    });
  });

  it('produces every DLQ reason, and only those', () => {
    const produced = new Set<DlqReason>();
    const samples: Array<Buffer | null> = [
      null,
      Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x20),
      Buffer.from('{'),
      Buffer.from('[]'),
      bytes(without(envelope(), 'event_id')),
      bytes(envelope({ org_id: '' })),
      bytes(envelope({ type: 'nope' })),
      bytes(envelope({ schema_version: 2 })),
      bytes(envelope({ data: { outcome: 'success', latency_ms: -1 } })),
      bytes(envelope({ occurred_at: '2030-01-01T00:00:00Z' })),
    ];
    for (const sample of samples) {
      const result = validateMessage(sample, NOW);
      if (!result.ok) produced.add(result.reason);
    }
    expect([...produced].sort()).toEqual([...DLQ_REASONS].sort());
  });
});
