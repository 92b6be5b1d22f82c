import { randomUUID } from 'node:crypto';
import { Kafka, Producer } from 'kafkajs';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import {
  ConnectionEvent,
  connectionStats,
  healthOfWindow,
  minuteBucket,
  parseStatsWindow,
  statsStreamTime,
} from '@psp/domain';
import {
  callEvent,
  configuredEvent,
  deletedEvent,
  MINUTE,
  T0,
  validationEvent,
  wireEnvelope,
} from '@psp/domain/testing/events';
import { liveReadModel, parseStoredDocument, Projection, readCheckpoint, replay } from '@psp/read-model';
import { formatOutlook, formatSuccessRate } from '../../apps/ops/src/commands/health';
import { ApiModule } from '../../apps/api/src/api.module';
import { readTopicToEnd } from '../support/dlq-reader';
import {
  dropIsolated,
  eventually,
  IsolatedStack,
  openIsolatedStack,
  isolatedSettings,
  openDatabase,
} from '../support/isolated-stack';
import { runOps, spawnOps, startProcess, stopProcess } from '../support/processes';
import { projectAll, seededRandom, seedLog } from '../support/seed';
import { startService } from '../support/service';

interface HealthChanged {
  event_id: string;
  type: string;
  schema_version: number;
  org_id: string;
  connection_id: string;
  occurred_at: string;
  data: { sequence: number; from: string | null; to: string; health_score: number };
}

const ORG = 'org_hc';
const CONNECTIONS = 10;

/**
 * Calls over 100 minutes of event time whose failure rate swings per connection, validations that
 * fail now and then, a deletion and a re-configuration: statuses move through every value, also with
 * no event (as stream time leaves calls behind).
 */
function eventSet(seed: number): ConnectionEvent[] {
  const rnd = seededRandom(seed);
  const events: ConnectionEvent[] = [];
  for (let c = 0; c < CONNECTIONS; c++)
    events.push(configuredEvent(`cfg-${c}`, T0, {}, { orgId: ORG, connectionId: `c${c}` }));
  for (let minute = 0; minute < 100; minute++) {
    for (let c = 0; c < CONNECTIONS; c++) {
      const where = { orgId: ORG, connectionId: `c${c}` };
      const phase = Math.floor((minute + c * 7) / 20) % 4; // quiet, good, bad, mixed
      const calls = phase === 0 ? 0 : Math.floor(rnd() * 12);
      const failRate = phase === 2 ? 0.7 : phase === 3 ? 0.15 : 0.01;
      for (let i = 0; i < calls; i++) {
        const failed = rnd() < failRate;
        events.push(
          callEvent(
            randomUUID(),
            T0 + minute * MINUTE + Math.floor(rnd() * 59_000),
            failed
              ? { outcome: 'failure', error_code: rnd() < 0.2 ? 'card_declined' : 'timeout' }
              : { latency_ms: 100 },
            where,
          ),
        );
      }
      if (rnd() < 0.02)
        events.push(
          validationEvent(randomUUID(), T0 + minute * MINUTE, { result: rnd() < 0.5 ? 'failure' : 'success' }, where),
        );
    }
  }
  events.push(deletedEvent('del-c3', T0 + 40 * MINUTE, { orgId: ORG, connectionId: 'c3' }));
  events.push(configuredEvent('cfg-c3-again', T0 + 70 * MINUTE, {}, { orgId: ORG, connectionId: 'c3' }));
  return events;
}

function shuffled<T>(xs: T[], seed: number): T[] {
  const rnd = seededRandom(seed);
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

async function outbox(db: DataSource): Promise<HealthChanged[]> {
  const rows: { message: string }[] = await db.query(`SELECT message FROM health_change_outbox ORDER BY id`);
  return rows.map((r) => JSON.parse(r.message) as HealthChanged);
}

/** Each listed connection's health status as served at the live generation's stream time. */
async function servedStatuses(db: DataSource, generation: number): Promise<Map<string, string>> {
  const { streamTime } = await readCheckpoint(db, generation);
  const rows: { connection_id: string; document: string }[] = await db.query(
    `SELECT connection_id, document FROM connection_read_model WHERE generation = $1 AND listed`,
    [generation],
  );
  const b = minuteBucket(streamTime!);
  return new Map(rows.map((r) => [r.connection_id, healthOfWindow(parseStoredDocument(r.document).window, b).status]));
}

/** CONTRACT 2.5's chain, per connection: sequence 1, 2, …; from = previous to (null first); to ≠ from. */
function expectChains(messages: HealthChanged[], latest: Map<string, string>): Map<string, HealthChanged[]> {
  const byConnection = new Map<string, HealthChanged[]>();
  for (const m of messages) byConnection.set(m.connection_id, [...(byConnection.get(m.connection_id) ?? []), m]);
  for (const [connection, chain] of byConnection) {
    chain.forEach((m, i) => {
      expect(m.type).toBe('connection.health_changed');
      expect(m.data.sequence).toBe(i + 1);
      expect(m.event_id).toBe(`${ORG}:${connection}:${i + 1}`);
      expect(m.data.from).toBe(i === 0 ? null : chain[i - 1].data.to);
      expect(m.data.to).not.toBe(m.data.from);
    });
    if (latest.has(connection))
      expect([connection, chain[chain.length - 1].data.to]).toEqual([connection, latest.get(connection)]);
  }
  for (const connection of latest.keys()) expect(byConnection.has(connection)).toBe(true);
  return byConnection;
}

describe('health changes (CONTRACT 2.5) through the projection', () => {
  const runs: { settings: Settings; db: DataSource }[] = [];
  let app: NestFastifyApplication | undefined;

  afterAll(async () => {
    await app?.close();
    for (const r of runs) {
      await r.db.destroy();
      await dropIsolated(r.settings);
    }
  });

  it('chains every connection in any delivery order, and the latest message is what the API serves', async () => {
    const events = eventSet(11);
    const orders = [events, shuffled(events, 5), [...events].reverse()];
    for (let order = 0; order < orders.length; order++) {
      const settings = isolatedSettings(`health${order}`);
      const db = await openDatabase(settings);
      runs.push({ settings, db });
      // Delivered in slices, each projected in small steps, so steps straddle minutes in every order.
      const projection = new Projection(db, 1, null, 97);
      const slice = 700;
      for (let i = 0; i < orders[order].length; i += slice) {
        await seedLog(db, orders[order].slice(i, i + slice));
        await projectAll(projection);
      }
      const messages = await outbox(db);
      const served = await servedStatuses(db, 1);
      const chains = expectChains(messages, served);
      expect(chains.size).toBe(CONNECTIONS);
      if (order === 0) {
        // In event-time order, statuses swing with the phases, and traffic that stops (a quiet phase)
        // turns a verdict into `unknown` as stream time moves on: changes seen without any new call.
        expect(messages.length).toBeGreaterThan(CONNECTIONS * 3);
        expect(messages.filter((m) => m.data.from !== null && m.data.to === 'unknown').length).toBeGreaterThan(0);
      }
      if (order === 0) {
        ({ app } = await startService(ApiModule, settings));
        const key = (await new ApiKeyStore(db).create(ORG, ['connections:read'], 'test')).key;
        const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
        const res = await fetch(`${url}/v1/connections?limit=200`, {
          headers: { 'X-Reevit-Key': key, 'X-Org-Id': ORG },
        });
        const listed = (await res.json()) as { connections: { id: string; health_status: string }[] };
        expect(new Map(listed.connections.map((c) => [c.id, c.health_status]))).toEqual(served);
      }
    }
  });

  it('gives the same messages and documents when the state cache cannot hold the connections', async () => {
    // The state cache holds states as bytes and lets them go at its bound; a state (and its chain's
    // tail) it let go is read back from the read model. 4 KiB holds one or two states: almost every
    // step reads its connections back. Same events, same slices and steps as run 0.
    const reference = runs[0]?.db; // the first test's run in event-time order
    expect(reference).toBeDefined();
    const events = eventSet(11);
    const settings = isolatedSettings('healthsmallcache');
    const db = await openDatabase(settings);
    runs.push({ settings, db });
    const projection = new Projection(db, 1, null, 97, 4096);
    for (let i = 0; i < events.length; i += 700) {
      await seedLog(db, events.slice(i, i + 700));
      await projectAll(projection);
    }
    // The same chains (the order between connections within one step is not part of the contract).
    const byChain = (messages: HealthChanged[]): HealthChanged[] =>
      [...messages].sort((a, b) => a.event_id.localeCompare(b.event_id, 'en', { numeric: true }));
    const messages = await outbox(db);
    expect(messages.length).toBeGreaterThan(CONNECTIONS * 3);
    expect(byChain(messages)).toEqual(byChain(await outbox(reference)));
    const documents = (d: DataSource): Promise<unknown[]> =>
      d.query(
        `SELECT connection_id, document, health_reported, health_sequence, health_next_change
           FROM connection_read_model WHERE generation = 1 ORDER BY connection_id`,
      );
    expect(await documents(db)).toEqual(await documents(reference));
  });

  it('produces nothing while a replay builds, and one catch-up message per connection that differs at the switch', async () => {
    const { db } = runs[0];
    const before = (await outbox(db)).length;
    // Pretend the chain of c1 ended elsewhere (as after a fix that changes answers): the switch must say so.
    const [{ health_reported: c1Reported }] = await db.query(
      `SELECT health_reported FROM connection_read_model WHERE generation = 1 AND connection_id = 'c1'`,
    );
    const pretend = c1Reported === 'healthy' ? 'degraded' : 'healthy';
    await db.query(
      `UPDATE connection_read_model SET health_reported = $1 WHERE generation = 1 AND connection_id = 'c1'`,
      [pretend],
    );
    let duringBuild = -1;
    const outcome = await replay(db, null, {
      batchSize: 500,
      shouldStop: () => false,
      log: () => undefined,
      progress: {
        update: () => undefined,
        finish: () => undefined,
      },
    });
    duringBuild = (
      await db.query(`SELECT count(*)::int AS n FROM health_change_outbox WHERE generation = $1`, [outcome.generation])
    )[0].n;
    expect(duringBuild).toBe(0); // the switch only marks connections due; the live steps write the messages
    await projectAll(new Projection(db, outcome.generation, null, 500));
    const after = await outbox(db);
    const catchUp = after.slice(before);
    expect(catchUp.map((m) => [m.connection_id, m.data.from, m.data.to])).toEqual([['c1', pretend, c1Reported]]);
    const previous = after.filter((m) => m.connection_id === 'c1');
    expect(catchUp[0].data.sequence).toBe(previous[previous.length - 2].data.sequence + 1);
  });
});

describe('health changes on Kafka through a kill -9 of the relaying projector', () => {
  let env: Record<string, string>;
  let settings: Settings;
  let db: DataSource;
  let kafka: Kafka;
  let producer: Producer;
  let stack: IsolatedStack;

  beforeAll(async () => {
    stack = await openIsolatedStack('healthkafka');
    ({ env, settings, db, kafka, producer } = stack);
  });

  afterAll(async () => {
    await stack?.close();
  });

  it('loses no change and orders none wrongly: after de-duplication by event_id every chain is whole', async () => {
    // The same kind of traffic, 100 minutes of event time ending 3 minutes before now.
    const shift = Date.now() - 3 * MINUTE - (T0 + 100 * MINUTE);
    const events = eventSet(23).map((e) => ({ ...e, occurredAt: e.occurredAt + shift }));
    events.sort((a, b) => a.occurredAt - b.occurredAt);
    const wire = events.map((e) => ({
      key: `${e.orgId}:${e.connectionId}`,
      value: JSON.stringify(wireEnvelope(e)),
      topic:
        e.type === 'psp.call.completed'
          ? settings.topics.calls
          : e.type === 'connection.validation.completed'
            ? settings.topics.validations
            : settings.topics.connections,
    }));
    const send = async (from: number, to: number) => {
      for (let i = from; i < to; i += 500) {
        const chunk = wire.slice(i, Math.min(to, i + 500));
        await producer.sendBatch({
          acks: -1,
          topicMessages: [settings.topics.calls, settings.topics.validations, settings.topics.connections].map(
            (topic) => ({
              topic,
              messages: chunk.filter((m) => m.topic === topic).map(({ key, value }) => ({ key, value })),
            }),
          ),
        });
        await new Promise((r) => setTimeout(r, 30));
      }
    };
    const topicEnd = async () => {
      const admin = kafka.admin();
      await admin.connect();
      try {
        return (await admin.fetchTopicOffsets(settings.topics.health)).reduce((n, p) => n + Number(p.high), 0);
      } finally {
        await admin.disconnect();
      }
    };

    const writer = startProcess('writer', env);
    let projector = startProcess('projector', env);
    try {
      await send(0, Math.floor(wire.length / 2));
      // Kill the projector (which relays) while it is producing health changes.
      await eventually(topicEnd, (n) => n >= 3, 60000, 'the first health changes on Kafka');
      await stopProcess(projector, 'SIGKILL');
      await send(Math.floor(wire.length / 2), wire.length);
      projector = startProcess('projector', env);
      await eventually(
        async () => (await db.query(`SELECT count(*)::int AS n FROM event_log`))[0].n as number,
        (n) => n === events.length,
        90000,
        'every event in the log',
      );
      await eventually(
        async () =>
          (
            await db.query(
              `SELECT (SELECT count(*) FROM health_change_outbox)::int AS waiting,
                      (SELECT events_applied FROM projection_progress WHERE status = 'live')::int AS applied`,
            )
          )[0] as { waiting: number; applied: number },
        (s) => s.waiting === 0 && s.applied === events.length,
        60000,
        'projected and relayed',
      );
      const copies = await readTopicToEnd(kafka, settings.topics.health, 'health-reader');
      const byId = new Map<string, string>();
      for (const c of copies) {
        const known = byId.get(c.key + ' ' + JSON.parse(c.value!).event_id);
        if (known !== undefined) expect(c.value).toBe(known); // a re-send is the same message
        byId.set(c.key + ' ' + JSON.parse(c.value!).event_id, c.value!);
      }
      const messages = [...byId.values()].map((v) => JSON.parse(v) as HealthChanged);
      for (const c of copies) expect(c.key).toBe(`${ORG}:${(JSON.parse(c.value!) as HealthChanged).connection_id}`);
      // In the topic's order per connection (one key, one partition), de-duplicated.
      const ordered: HealthChanged[] = [];
      const seen = new Set<string>();
      for (const c of copies) {
        const m = JSON.parse(c.value!) as HealthChanged;
        if (seen.has(m.event_id)) continue;
        seen.add(m.event_id);
        ordered.push(m);
      }
      expect(ordered.length).toBe(messages.length);
      const served = await servedStatuses(db, 1);
      expectChains(ordered, served);

      // The ops view: the latest change per connection, as served; and --follow from the beginning.
      const summary = await runOps(env, 'health', '--org', ORG);
      expect(summary.stdout).toContain(`${CONNECTIONS} connection(s) of ${ORG}, latest health change each:`);
      for (const [connection, status] of served)
        expect(summary.stdout).toMatch(new RegExp(`  ${ORG}/${connection}  ${status} +\\d+\\.\\d\\d  #\\d+ at `));
      // Each with what the stats route says now (CONTRACT 1.5b): the success rate and its interval, the outlook.
      const { streamTime } = await liveReadModel(db);
      const stored: { connection_id: string; document: string }[] = await db.query(
        `SELECT connection_id, document FROM connection_read_model
          WHERE generation = (SELECT generation FROM projection_generation WHERE status = 'live') AND listed`,
      );
      expect(stored.length).toBe(served.size);
      let withCalls = 0;
      for (const { connection_id: id, document } of stored) {
        const { window, statsWindow } = parseStoredDocument(document);
        const w = parseStatsWindow(statsWindow);
        const now = connectionStats(id, w.buckets, statsStreamTime(w.streamTimeMs, streamTime), window.capped);
        if (now.success_rate !== null) withCalls++;
        const line = summary.stdout.split('\n').find((l) => l.startsWith(`  ${ORG}/${id}  `));
        expect(line).toContain(`  ${formatSuccessRate(now.calls, now.success_rate)}; ${formatOutlook(now.outlook)}`);
      }
      expect(withCalls).toBeGreaterThan(0);
      expect(summary.stdout).toContain(`then, at stream time ${new Date(streamTime!).toISOString()}:`);
      const follow = spawnOps(env, 'health', '--follow', '--from-beginning', '--org', ORG);
      try {
        await eventually(
          async () => follow.output.join(''),
          (out) => out.includes(`${ORG}/c0  #1  (new) → `),
          30000,
          'ops health --follow printing changes',
        );
      } finally {
        await stopProcess(follow, 'SIGINT');
      }
      expect(follow.exitCode).toBe(0);
    } finally {
      await stopProcess(projector);
      await stopProcess(writer);
    }
  });
});
