import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { ConnectionEvent, PROVIDERS } from '@psp/domain';
import { appendEvents, EventToAppend, readStreamVersions } from '@psp/storage';
import { Projection } from '@psp/read-model';

import { seededRandom } from '../../apps/simulator/src/traffic';

/** The simulator's deterministic generator (mulberry32), so seeded data is the same every run. */
export { seededRandom };

/** A varied set of accepted events over `orgs` × `connections`, with out-of-order event times. */
export function mixedEvents(options: {
  orgs: number;
  connections: number;
  events: number;
  seed: number;
  start: number;
}): ConnectionEvent[] {
  const rnd = seededRandom(options.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const events: ConnectionEvent[] = [];
  const spanMs = 3 * 3600_000;
  for (let o = 0; o < options.orgs; o++) {
    for (let c = 0; c < options.connections; c++) {
      events.push({
        eventId: randomUUID(),
        type: 'connection.configured',
        orgId: `org_${o}`,
        connectionId: `conn.${c}:x`,
        occurredAt: options.start + Math.floor(rnd() * 600_000),
        data: {
          provider: pick(PROVIDERS),
          mode: pick(['live', 'sandbox'] as const),
          status: 'active',
          capabilities: { cards: rnd() < 0.5 },
          routing_hints: { country_preference: ['GH'], method_bias: {}, fallback_only: false },
          labels: [pick(['ghana', 'kenya', 'nigeria']), pick(['primary', 'backup'])].filter(
            (l, i, a) => a.indexOf(l) === i,
          ),
          fee_structure: { percentage: 1.5, fixed: 100, per_method: {}, per_currency: {} },
        },
      });
    }
  }
  while (events.length < options.events) {
    const orgId = `org_${Math.floor(rnd() * options.orgs)}`;
    const connectionId = `conn.${Math.floor(rnd() * options.connections)}:x`;
    const occurredAt = options.start + Math.floor(rnd() * spanMs);
    const r = rnd();
    const base = { eventId: randomUUID(), orgId, connectionId, occurredAt };
    if (r < 0.85) {
      const fail = rnd() < 0.1;
      events.push({
        ...base,
        type: 'psp.call.completed',
        data: fail
          ? {
              outcome: 'failure',
              latency_ms: Math.floor(rnd() * 5000),
              error_code: pick(['timeout', 'card_declined', 'gateway_error']),
            }
          : { outcome: 'success', latency_ms: Math.floor(rnd() * 4000) },
      });
    } else if (r < 0.92) {
      const ok = rnd() < 0.7;
      events.push({
        ...base,
        type: 'connection.validation.completed',
        data: ok ? { result: 'success' } : { result: 'failure', error: 'invalid key' },
      });
    } else if (r < 0.96) {
      events.push({
        ...base,
        type: 'connection.status_changed',
        data: { status: pick(['active', 'inactive'] as const) },
      });
    } else if (r < 0.99) {
      events.push({ ...base, type: 'connection.labels_changed', data: { labels: [pick(['ghana', 'kenya', 'vip'])] } });
    } else {
      events.push({ ...base, type: 'connection.deleted', data: {} });
    }
  }
  return events;
}

/**
 * Appends events straight into the log with consecutive stream versions (as the writer would),
 * continuing each stream from the versions already logged.
 */
export async function seedLog(db: DataSource, events: ConnectionEvent[], chunk = 5000): Promise<void> {
  const streams = new Map(events.map((e) => [`${e.orgId}:${e.connectionId}`, e]));
  const logged = await readStreamVersions(
    db,
    [...streams.values()].map((e) => ({ orgId: e.orgId, connectionId: e.connectionId })),
  );
  const versions = new Map(logged.map((s) => [`${s.orgId}:${s.connectionId}`, s.version]));
  const rows: EventToAppend[] = events.map((event, i) => {
    const key = `${event.orgId}:${event.connectionId}`;
    const v = (versions.get(key) ?? 0) + 1;
    versions.set(key, v);
    return { event, streamVersion: v, source: { topic: 'seed', partition: 0, offset: String(i) } };
  });
  for (let i = 0; i < rows.length; i += chunk) await appendEvents(db, rows.slice(i, i + chunk));
}

/**
 * Steps a projection until it has read every committed event. (An empty step alone does not prove
 * that: a transaction open anywhere in the cluster holds back the xmin the log is read below.)
 */
export async function projectAll(projection: Projection): Promise<number> {
  let applied = 0;
  for (;;) {
    const step = await projection.step();
    applied += step.applied;
    if (step.applied === 0) {
      if ((await projection.lag()) === 0) return applied;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
