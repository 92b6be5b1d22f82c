import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { WireEvent } from './expected-model';
import type { DlqCopy, Scenario, ScenarioRun } from './scenarios';
import type { ChaosStack } from './stack';
import type { Sent } from './traffic';

/**
 * "poison storm": under the generated traffic (every partition of every topic), hostile messages of
 * every class that a naive validator lets through, each followed on the same topic, partition and
 * key by a canary (a new connection of org_0, visible in the API once it is applied). CONTRACT 2.4:
 * each hostile message is applied or in the DLQ with its reason, and none holds back the canary
 * queued behind it for more than seconds.
 *
 * Whether each hostile message is accepted, and with which `dlq-reason` it is refused, is stated here
 * by hand from CONTRACT 2.2-2.4 and the decisions documented in libs/domain's message validation,
 * never by asking the service's own validator: the suite must stay an independent judge.
 */

const MAX = 1.7976931348623157e308; // the largest finite double (Number.MAX_VALUE)
const TINY = 5e-324; // the smallest positive double, a subnormal (Number.MIN_VALUE)
const MAX_SAFE = 9007199254740991; // fee_structure.fixed must be a safe integer
/** MAX_FREE_FORM_DEPTH: nesting accepted inside a free-form object, the member itself being level 1. */
const DEPTH_LIMIT = 64;
/** 64 KiB: a value of exactly this many bytes is accepted, one more is message_too_large. */
const MAX_BYTES = 65_536;
/** Event ids that the chaos stack's event log refuses (a CHECK added in setup): valid by the contract. */
const REFUSED_PREFIX = 'chaos-poison-';
/** CONTRACT 2.4: "a bad message delays the messages behind it by seconds, never longer". */
const CANARY_LIMIT_MS = 5000;
/** Pause between two hostile messages (with their canaries). */
const GAP_MS = 200;
/** How long after the last canary the suite keeps looking for the ones not yet seen. */
const GIVE_UP_MS = 30_000;

interface Hostile {
  label: string;
  value: string | Buffer | null;
  /** Accepted: the event as the contract reads it (the oracle counts it). */
  event?: WireEvent;
  /** Refused: the `dlq-reason` it must get. */
  reason?: string;
}

/** `levels` nested objects: the outermost is level 1, the innermost holds a number. */
function nest(levels: number): Record<string, unknown> {
  let v: Record<string, unknown> = { leaf: 1 };
  for (let i = 1; i < levels; i++) v = { d: v };
  return v;
}

/** The event's JSON with an unknown envelope member `pad` making it exactly `bytes` bytes long. */
function padded(event: WireEvent, bytes: number): string {
  const bare = Buffer.byteLength(JSON.stringify({ ...event, pad: '' }));
  return JSON.stringify({ ...event, pad: 'x'.repeat(bytes - bare) });
}

export function hostileMessages(now: number): Hostile[] {
  const at = new Date(now).toISOString();
  let fresh = 0;
  const event = (
    type: string,
    org: string,
    connection: string,
    data: Record<string, unknown>,
    overrides: Partial<WireEvent> = {},
  ): WireEvent => ({
    event_id: randomUUID(),
    type,
    schema_version: 1,
    org_id: org,
    connection_id: connection,
    occurred_at: at,
    data,
    ...overrides,
  });
  const call = (overrides: Partial<WireEvent> = {}) =>
    event('psp.call.completed', 'org_0', 'conn_0', { outcome: 'success', latency_ms: 5 }, overrides);
  // A new connection of org_0 each time, so that what the API shows of it comes from this event alone.
  const configured = (data: Record<string, unknown>, overrides: Partial<WireEvent> = {}) =>
    event('connection.configured', 'org_0', `hostile_${++fresh}`, { provider: 'stripe', ...data }, overrides);
  const accepted = (label: string, e: WireEvent, value: string = JSON.stringify(e)): Hostile => ({
    label,
    value,
    event: e,
  });
  const refused = (label: string, reason: string, value: string | Buffer | null): Hostile => ({
    label,
    value,
    reason,
  });

  const overflowing = JSON.stringify(configured({ capabilities: { huge: 0 } })).replace('"huge":0', '"huge":1e400');
  const ignored = configured({});
  const notUtf8 = Buffer.from(
    JSON.stringify(call({ data: { outcome: 'failure', latency_ms: 5, error_code: '@@' } })),
    'utf8',
  );
  const at2 = notUtf8.indexOf('@@');
  notUtf8[at2] = 0xc3; // a two-byte lead byte followed by '(' (0x28): not UTF-8
  notUtf8[at2 + 1] = 0x28;

  return [
    refused('occurred_at in year 0000', 'invalid_field', JSON.stringify(call({ occurred_at: '0000-06-01T00:00:00Z' }))),
    refused(
      'occurred_at whose offset moves it before year 1',
      'invalid_field',
      JSON.stringify(call({ occurred_at: '0001-01-01T00:30:00+01:00' })),
    ),
    accepted(
      'occurred_at whose offset makes it the first instant of year 1',
      configured({}, { occurred_at: '0001-01-01T01:00:00+01:00' }),
    ),
    accepted(
      'the largest and smallest doubles in capabilities',
      configured({ capabilities: { max: MAX, min: -MAX, tiny: TINY, neg_tiny: -TINY } }),
    ),
    accepted(
      'the largest and smallest doubles in fee_structure',
      configured({
        fee_structure: {
          percentage: TINY,
          fixed: MAX_SAFE,
          per_method: { card: MAX, bank_transfer: -MAX, mobile_money: TINY },
          per_currency: { GHS: -TINY },
        },
      }),
    ),
    refused('1e400 (Infinity once parsed) in capabilities', 'invalid_data', overflowing),
    accepted(`capabilities nested ${DEPTH_LIMIT} levels deep`, configured({ capabilities: nest(DEPTH_LIMIT) })),
    refused(
      `capabilities nested ${DEPTH_LIMIT + 1} levels deep`,
      'invalid_data',
      JSON.stringify(configured({ capabilities: nest(DEPTH_LIMIT + 1) })),
    ),
    refused(
      'NUL in data.error_code',
      'invalid_data',
      JSON.stringify(call({ data: { outcome: 'failure', latency_ms: 5, error_code: 'time\u0000out' } })),
    ),
    refused(
      'a lone surrogate in data.error',
      'invalid_data',
      JSON.stringify(
        event('connection.validation.completed', 'org_0', 'conn_1', { result: 'failure', error: 'bad key \ud800' }),
      ),
    ),
    refused('NUL in event_id', 'invalid_field', JSON.stringify(call({ event_id: `evt-\u0000-${randomUUID()}` }))),
    refused(
      'a lone surrogate in a capabilities key',
      'invalid_data',
      JSON.stringify(configured({ capabilities: { '\udc00': true } })),
    ),
    accepted(
      'NUL and a lone surrogate only in members the contract ignores or drops (credentials)',
      ignored,
      JSON.stringify({
        ...ignored,
        note: 'x\u0000\ud800',
        data: { ...ignored.data, credentials: { secret: 'sk_\u0000\ud800' } },
      }),
    ),
    ((e: WireEvent) => accepted(`exactly ${MAX_BYTES} bytes (an unknown member pads it)`, e, padded(e, MAX_BYTES)))(
      event('psp.call.completed', 'org_1', 'conn_2', { outcome: 'success', latency_ms: 7 }),
    ),
    refused(`${MAX_BYTES + 1} bytes`, 'message_too_large', padded(call(), MAX_BYTES + 1)),
    refused('bytes that are not UTF-8', 'invalid_json', notUtf8),
    refused('an empty value', 'empty_message', ''),
    refused('a tombstone (null value)', 'empty_message', null),
    refused(
      'a valid call the event log refuses (CHECK on event_id)',
      'unstorable',
      JSON.stringify(call({ event_id: `${REFUSED_PREFIX}${randomUUID()}` })),
    ),
    refused(
      'a valid configuration the event log refuses (CHECK on event_id)',
      'unstorable',
      JSON.stringify(configured({}, { event_id: `${REFUSED_PREFIX}${randomUUID()}` })),
    ),
  ];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Sends each hostile message and its canary (one batch, same topic, partition and key, so the
 * canary is queued right behind it), cycling through every topic and partition, while the traffic
 * flows; then watches the API until every canary is listed and notes the delays.
 */
async function storm(stack: ChaosStack, notes: string[], run: ScenarioRun): Promise<void> {
  const t = stack.settings.topics;
  const topics = [t.calls, t.validations, t.connections];
  const partitions = Number(stack.env.TOPIC_PARTITIONS);
  const hostile = hostileMessages(Date.now());
  const key = run.keys.get('org_0')!;
  const produced = new Map<string, { at: number; label: string }>();
  const seen = new Map<string, number>();
  let sending = true;
  let lastProduced = Date.now();

  const watch = (async () => {
    while (sending || seen.size < produced.size) {
      if (!sending && Date.now() - lastProduced > GIVE_UP_MS) break;
      const res = await stack.get('/v1/connections?limit=200', 'org_0', key).catch(() => null);
      const now = Date.now();
      if (res?.status === 200) {
        for (const c of (JSON.parse(res.body) as { connections: { id: string }[] }).connections)
          if (produced.has(c.id) && !seen.has(c.id)) seen.set(c.id, now);
      }
      await sleep(50);
    }
  })();

  for (const [i, h] of hostile.entries()) {
    const topic = topics[i % topics.length];
    const partition = Math.floor(i / topics.length) % partitions;
    const canaryId = `canary_${i + 1}`;
    const route = { topic, partition, key: `org_0:${canaryId}` };
    const message: Sent = h.event
      ? { ...route, value: h.value, kind: 'good', event: h.event, label: h.label }
      : { ...route, value: h.value, kind: 'bad', reason: h.reason, label: h.label };
    const canaryEvent: WireEvent = {
      event_id: randomUUID(),
      type: 'connection.configured',
      schema_version: 1,
      org_id: 'org_0',
      connection_id: canaryId,
      occurred_at: new Date().toISOString(),
      data: { provider: 'paystack', labels: ['canary'] },
    };
    const canary: Sent = { ...route, value: JSON.stringify(canaryEvent), kind: 'good', event: canaryEvent };
    await stack.produce([message, canary]);
    lastProduced = Date.now();
    produced.set(canaryId, { at: lastProduced, label: h.label });
    run.extra.push(message, canary);
    await sleep(GAP_MS);
  }
  sending = false;
  await watch;

  const delays = [...produced].map(([id, p]) => ({ id, label: p.label, ms: (seen.get(id) ?? NaN) - p.at }));
  const visible = delays.filter((d) => !Number.isNaN(d.ms)).sort((a, b) => a.ms - b.ms);
  const worst = visible[visible.length - 1];
  notes.push(
    `canaries: ${visible.length}/${delays.length} visible in the API; delay after being produced: median ${
      visible[Math.floor(visible.length / 2)]?.ms ?? '-'
    } ms, worst ${worst ? `${worst.ms} ms (behind: ${worst.label})` : '-'}`,
  );
  for (const d of delays) {
    if (Number.isNaN(d.ms))
      notes.push(
        `FAILED: the canary behind "${d.label}" was not visible in the API ${GIVE_UP_MS / 1000} s after it was produced`,
      );
    else if (d.ms > CANARY_LIMIT_MS)
      notes.push(`FAILED: the canary behind "${d.label}" took ${d.ms} ms to be visible (limit ${CANARY_LIMIT_MS} ms)`);
  }
}

function sameValue(copy: Buffer | null, original: string | Buffer | null): boolean {
  if (original === null) return copy === null;
  return copy !== null && copy.equals(Buffer.isBuffer(original) ? original : Buffer.from(original, 'utf8'));
}

/**
 * Every hostile message applied (in the log, not in the DLQ, and for configurations, shown by the API
 * exactly as sent) or in the DLQ, unchanged, with the reason stated above; the writer never restarted
 * consumption because of one.
 */
async function verify(stack: ChaosStack, notes: string[], run: ScenarioRun, dlq: DlqCopy[]): Promise<void> {
  const hostile = run.extra.filter((s) => s.label !== undefined);
  const bySource = new Map<string, DlqCopy[]>();
  for (const c of dlq) bySource.set(c.source, [...(bySource.get(c.source) ?? []), c]);
  const acceptedIds = hostile.filter((s) => s.kind === 'good').map((s) => s.event!.event_id);
  const logged = new Set(
    (
      (await stack.db.query(`SELECT event_id FROM event_log WHERE event_id = ANY($1)`, [acceptedIds])) as {
        event_id: string;
      }[]
    ).map((r) => r.event_id),
  );
  let applied = 0;
  const reasons = new Map<string, number>();
  for (const h of hostile) {
    const copies = bySource.get(`${h.topic}/${h.partition}/${h.offset}`) ?? [];
    if (h.kind === 'good') {
      const e = h.event!;
      const problems: string[] = [];
      if (!logged.has(e.event_id)) problems.push('not in the event log');
      if (copies.length > 0) problems.push(`in the DLQ (${copies[0].reason})`);
      if (e.type === 'connection.configured') {
        const res = await stack.get(`/v1/connections/${e.connection_id}`, e.org_id, run.keys.get(e.org_id)!);
        const shown = res.status === 200 ? (JSON.parse(res.body) as Record<string, unknown>) : null;
        const d = e.data;
        const fees = { percentage: 0, fixed: 0, per_method: {}, per_currency: {}, ...(d.fee_structure ?? {}) };
        if (!shown) problems.push(`not shown by the API (${res.status})`);
        else if (!isDeepStrictEqual(shown.capabilities, d.capabilities ?? {}))
          problems.push('shown by the API with other capabilities than sent');
        else if (!isDeepStrictEqual(shown.fee_structure, fees))
          problems.push('shown by the API with another fee_structure than sent');
      }
      if (problems.length === 0) applied += 1;
      else notes.push(`FAILED: "${h.label}" should be applied, but is ${problems.join(', ')}`);
    } else if (copies.length === 0) {
      notes.push(`FAILED: "${h.label}" is neither applied nor in the DLQ (expected ${h.reason})`);
    } else if (copies[0].reason !== h.reason) {
      notes.push(`FAILED: "${h.label}" is in the DLQ as ${copies[0].reason || '(no reason)'}, expected ${h.reason}`);
    } else if (!sameValue(copies[0].value, h.value)) {
      notes.push(`FAILED: the DLQ copy of "${h.label}" is not the message unchanged`);
    } else {
      reasons.set(h.reason!, (reasons.get(h.reason!) ?? 0) + 1);
    }
  }
  notes.push(
    `hostile messages: ${hostile.length} sent, ${applied} applied as sent, ${[...reasons.values()].reduce((a, b) => a + b, 0)} in the DLQ with the expected reason (${[
      ...reasons,
    ]
      .map(([r, n]) => `${r} ${n}`)
      .join(', ')})`,
  );
  const writerLog = stack.output.filter((l) => l.startsWith('[writer')).join('');
  const failedAppends = writerLog.match(/append to the event log failed/g)?.length ?? 0;
  if (failedAppends > 0)
    notes.push(
      `FAILED: the writer's append failed ${failedAppends} time(s) and consumption restarted: a message held it back`,
    );
}

export const poisonStorm: Scenario = {
  name: 'poison storm',
  // 20 chunks 400 ms apart: the traffic flows on every partition for as long as the storm lasts.
  chunkPauseMs: 400,
  setup: async (stack) => {
    // A refusal that only this database makes, of messages valid by every rule of the contract.
    await stack.db.query(
      `ALTER TABLE event_log ADD CONSTRAINT chaos_refusal_check CHECK (event_id NOT LIKE '${REFUSED_PREFIX}%') NOT VALID`,
    );
  },
  fault: storm,
  verify,
};
