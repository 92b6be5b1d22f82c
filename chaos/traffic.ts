import { randomUUID } from 'node:crypto';
import { seededRandom } from '../test/support/seed';
import { WireEvent } from './expected-model';

/** One message the traffic generator sends, and what the service must do with it. */
export interface Sent {
  topic: string;
  key: string;
  /** The value as produced: JSON text, raw bytes (not necessarily UTF-8), or null (a tombstone). */
  value: string | Buffer | null;
  kind: 'good' | 'duplicate' | 'bad';
  event?: WireEvent;
  /** A partition chosen by the sender; without it the producer picks one by key. */
  partition?: number;
  /** Where the message landed (set when it was produced to a chosen partition): its DLQ copy says so. */
  offset?: string;
  /** For a bad message: the `dlq-reason` the scenario states it must get (by hand, not by the service's code). */
  reason?: string;
  /** A name for notes (the scenario's own hostile messages). */
  label?: string;
}

export interface TrafficOptions {
  orgs: number;
  connections: number;
  events: number;
  seed: number;
  /** Share of messages that are bad (each a different way of breaking the contract). */
  badFraction: number;
  /** Share of good messages sent a second time, unchanged, later on. */
  duplicateFraction: number;
  /** Send every message to a random one of the three topics instead of its own. */
  shuffleTopics: boolean;
}

export const DEFAULT_TRAFFIC: TrafficOptions = {
  orgs: 3,
  connections: 8,
  events: 6000,
  seed: 1,
  badFraction: 0,
  duplicateFraction: 0,
  shuffleTopics: false,
};

const PROVIDERS = ['paystack', 'hubtel', 'flutterwave', 'monnify', 'mpesa', 'stripe'];
const DECLINES = ['insufficient_funds', 'card_declined', 'do_not_honor'];

/**
 * A reproducible stream of traffic: every connection configured first, then calls (successes,
 * technical failures, customer declines, slow calls), validations, status and label changes, with
 * event times up to two minutes in the past (so arrival order differs from event order).
 */
export function generateTraffic(
  options: TrafficOptions,
  topics: { calls: string; validations: string; connections: string },
  now = Date.now(),
): Sent[] {
  const rnd = seededRandom(options.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const all = [topics.calls, topics.validations, topics.connections];
  const sent: Sent[] = [];
  const good: Sent[] = [];
  const push = (
    type: string,
    org: string,
    conn: string,
    data: Record<string, unknown>,
    topic: string,
    at = now - Math.floor(rnd() * 120_000),
  ) => {
    const event: WireEvent = {
      event_id: randomUUID(),
      type,
      schema_version: 1,
      org_id: org,
      connection_id: conn,
      occurred_at: new Date(at).toISOString(),
      data,
    };
    const s: Sent = {
      topic: options.shuffleTopics ? pick(all) : topic,
      key: `${org}:${conn}`,
      value: JSON.stringify(event),
      kind: 'good',
      event,
    };
    sent.push(s);
    good.push(s);
  };
  for (let o = 0; o < options.orgs; o++) {
    for (let c = 0; c < options.connections; c++) {
      push(
        'connection.configured',
        `org_${o}`,
        `conn_${c}`,
        {
          provider: pick(PROVIDERS),
          labels: [pick(['ghana', 'kenya']), 'primary'],
          credentials: { secret: 'sk_live_chaos' },
        },
        topics.connections,
        now - 180_000,
      );
    }
  }
  let bad = 0;
  while (sent.length < options.events) {
    const r = rnd();
    if (r < options.badFraction) {
      bad += 1;
      const conn = `conn_${Math.floor(rnd() * options.connections)}`;
      // Each breaks one rule of an otherwise valid call envelope.
      const call = (overrides: Record<string, unknown>) =>
        JSON.stringify({
          event_id: randomUUID(),
          type: 'psp.call.completed',
          schema_version: 1,
          org_id: 'org_0',
          connection_id: conn,
          occurred_at: new Date(now).toISOString(),
          data: { outcome: 'success', latency_ms: 1 },
          ...overrides,
        });
      const variants = [
        'not json {',
        call({ schema_version: 2 }),
        call({ type: 'psp.call.exploded', data: {} }),
        call({ occurred_at: new Date(now + 3600_000).toISOString() }),
        call({ org_id: 'org 0' }),
        call({ data: { outcome: 'success', latency_ms: -5 } }),
      ];
      sent.push({ topic: pick(all), key: `org_0:${conn}`, value: variants[bad % variants.length], kind: 'bad' });
      continue;
    }
    if (good.length > 0 && rnd() < options.duplicateFraction / (1 + options.duplicateFraction)) {
      const original = pick(good);
      sent.push({ ...original, topic: options.shuffleTopics ? pick(all) : original.topic, kind: 'duplicate' });
      continue;
    }
    const org = `org_${Math.floor(rnd() * options.orgs)}`;
    const conn = `conn_${Math.floor(rnd() * options.connections)}`;
    const t = rnd();
    if (t < 0.86) {
      const u = rnd();
      const data =
        u < 0.08
          ? { outcome: 'failure', latency_ms: Math.floor(rnd() * 2000), error_code: 'gateway_timeout' }
          : u < 0.12
            ? { outcome: 'failure', latency_ms: Math.floor(rnd() * 800), error_code: pick(DECLINES) }
            : {
                outcome: 'success',
                latency_ms: rnd() < 0.05 ? 3001 + Math.floor(rnd() * 5000) : Math.floor(rnd() * 1500),
              };
      push('psp.call.completed', org, conn, data, topics.calls);
    } else if (t < 0.94) {
      push(
        'connection.validation.completed',
        org,
        conn,
        rnd() < 0.8 ? { result: 'success' } : { result: 'failure', error: 'invalid secret key' },
        topics.validations,
      );
    } else if (t < 0.97) {
      push('connection.status_changed', org, conn, { status: pick(['active', 'inactive']) }, topics.connections);
    } else {
      push(
        'connection.labels_changed',
        org,
        conn,
        { labels: [pick(['ghana', 'kenya', 'vip']), pick(['Primary', 'backup'])] },
        topics.connections,
      );
    }
  }
  return sent;
}
