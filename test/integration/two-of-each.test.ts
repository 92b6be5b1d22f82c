import { ChildProcess } from 'node:child_process';
import { AssignerProtocol, Kafka, Message, Producer } from 'kafkajs';
import { DataSource } from 'typeorm';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { PROVIDERS, validateMessage } from '@psp/domain';
import { WireEnvelope } from '@psp/domain/testing/events';
import { Projection, readShardHolders } from '@psp/read-model';
import { ApiModule } from '../../apps/api/src/api.module';
import {
  dropIsolated,
  eventually,
  isolatedEnv,
  isolatedSettings,
  openDatabase,
  testProducer,
} from '../support/isolated-stack';
import { freePort, startProcess, stopProcess, waitForHttp } from '../support/processes';
import { projectAll, seededRandom, seedLog } from '../support/seed';
import { startService } from '../support/service';

const ORGS = 4;
const CONNECTIONS = 6;
const UNIQUE_EVENTS = 8000;
const DUPLICATE_SHARE = 0.05;
const CHUNK = 400;
const CHUNKS_BEFORE_KILL = 8;

type Wire = WireEnvelope;

/**
 * A known event set for ORGS × CONNECTIONS streams: each connection configured first, then calls,
 * validations, status, label and config changes and a few deletions, with event times fixed once
 * (within the 5 minutes before `now`, so the writer takes them all) and deterministic event ids.
 * Returns the wire envelopes in the order they are produced, duplicates (exact re-sends, some many
 * chunks later) included.
 */
function eventSet(now: number): { sent: Wire[]; unique: Wire[] } {
  const rnd = seededRandom(20261124);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const base = now - 270_000;
  const unique: Wire[] = [];
  let n = 0;
  const envelope = (
    org: number,
    conn: number,
    at: number,
    type: Wire['type'],
    data: Record<string, unknown>,
  ): Wire => ({
    event_id: `two-of-each-${String(n++).padStart(6, '0')}`,
    type,
    schema_version: 1,
    org_id: `org_${org}`,
    connection_id: `conn_${conn}`,
    occurred_at: new Date(at).toISOString(),
    data,
  });
  const config = () => ({
    provider: pick(PROVIDERS),
    mode: pick(['live', 'sandbox']),
    status: 'active',
    capabilities: { cards: rnd() < 0.5, mobile_money: rnd() < 0.5 },
    routing_hints: { country_preference: [pick(['GH', 'KE', 'NG'])], method_bias: {}, fallback_only: rnd() < 0.2 },
    labels: [pick(['Ghana', 'kenya', 'NIGERIA']), pick(['primary', 'backup'])],
    fee_structure: {
      percentage: Math.round(rnd() * 300) / 100,
      fixed: Math.floor(rnd() * 200),
      per_method: {},
      per_currency: {},
    },
  });
  for (let o = 0; o < ORGS; o++)
    for (let c = 0; c < CONNECTIONS; c++)
      unique.push(envelope(o, c, base + o * 1000 + c * 10, 'connection.configured', config()));
  while (unique.length < UNIQUE_EVENTS) {
    const o = Math.floor(rnd() * ORGS);
    const c = Math.floor(rnd() * CONNECTIONS);
    const at = base + 5000 + Math.floor(rnd() * 250_000); // the latest is 15 s before `now`
    const r = rnd();
    if (r < 0.8) {
      const fail = rnd() < 0.15;
      unique.push(
        envelope(
          o,
          c,
          at,
          'psp.call.completed',
          fail
            ? {
                outcome: 'failure',
                latency_ms: Math.floor(rnd() * 5000),
                error_code: pick(['timeout', 'card_declined', 'gateway_error']),
              }
            : {
                outcome: 'success',
                latency_ms: Math.floor(rnd() * 3000),
                method: pick(['card', 'mobile_money']),
                currency: 'GHS',
              },
        ),
      );
    } else if (r < 0.88) {
      unique.push(
        envelope(
          o,
          c,
          at,
          'connection.validation.completed',
          rnd() < 0.7 ? { result: 'success' } : { result: 'failure', error: 'invalid key' },
        ),
      );
    } else if (r < 0.92) {
      unique.push(envelope(o, c, at, 'connection.status_changed', { status: pick(['active', 'inactive']) }));
    } else if (r < 0.96) {
      unique.push(
        envelope(o, c, at, 'connection.labels_changed', { labels: [pick(['Ghana', 'kenya', 'vip', 'Backup'])] }),
      );
    } else if (r < 0.995) {
      unique.push(envelope(o, c, at, 'connection.configured', config()));
    } else {
      unique.push(envelope(o, c, at, 'connection.deleted', {}));
    }
  }
  const sent: Wire[] = [];
  for (const w of unique) {
    sent.push(w);
    // A re-send of an earlier event (same event_id, same content), from a few to many chunks back.
    if (sent.length > 50 && rnd() < DUPLICATE_SHARE) sent.push(sent[Math.floor(rnd() * (sent.length - 1))]);
  }
  return { sent, unique };
}

/**
 * Two writers, two projectors and two API processes on one stack give exactly the answers of one
 * of each, through a kill -9 of a writer (and of a projector) while traffic flows. The reference is
 * built independently: the same event set seeded straight into a second database, projected by one
 * Projection and served by one API.
 */
describe('two writers, two projectors and two APIs on one stack', () => {
  let env: Record<string, string>;
  let settings: Settings;
  let db: DataSource;
  let kafka: Kafka;
  let producer: Producer;
  let refSettings: Settings;
  let refDb: DataSource;
  let refApp: NestFastifyApplication | undefined;
  let refUrl: string;
  const children: ChildProcess[] = [];
  const keys = new Map<string, string>();
  const refKeys = new Map<string, string>();

  beforeAll(async () => {
    env = isolatedEnv('twoofeach', { LOG_LEVEL: 'warn', KAFKAJS_NO_PARTITIONER_WARNING: '1' });
    settings = isolatedSettings('unused', env);
    refSettings = isolatedSettings('twoofeachref');
    [db, refDb] = await Promise.all([openDatabase(settings), openDatabase(refSettings)]);
    ({ kafka, producer } = await testProducer(settings, { createTopics: true }));
    const store = new ApiKeyStore(db);
    const refStore = new ApiKeyStore(refDb);
    for (let o = 0; o < ORGS; o++) {
      keys.set(`org_${o}`, (await store.create(`org_${o}`, ['connections:read'], 'test')).key);
      refKeys.set(`org_${o}`, (await refStore.create(`org_${o}`, ['connections:read'], 'test')).key);
    }
  });

  afterAll(async () => {
    await Promise.all(children.map((c) => stopProcess(c)));
    await refApp?.close();
    await producer?.disconnect();
    await db?.destroy();
    await refDb?.destroy();
    if (settings) await dropIsolated(settings);
    if (refSettings) await dropIsolated(refSettings);
  });

  function start(name: 'writer' | 'projector' | 'api', extra: Record<string, string> = {}) {
    const child = startProcess(name, { ...env, ...extra });
    children.push(child);
    return child;
  }

  /** The writer group's members: the client id each was started with, and the partitions it holds. */
  async function writerGroup(): Promise<{ state: string; members: { clientId: string; partitions: string[] }[] }> {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const { groups } = await admin.describeGroups([settings.writerGroupId]);
      const group = groups[0];
      return {
        state: group.state,
        members: group.members.map((m) => {
          const decoded = AssignerProtocol.MemberAssignment.decode(m.memberAssignment);
          const partitions = Object.entries(decoded?.assignment ?? {}).flatMap(([topic, ps]) =>
            ps.map((p) => `${topic}/${p}`),
          );
          return { clientId: m.clientId, partitions };
        }),
      };
    } finally {
      await admin.disconnect();
    }
  }

  /** Σ of the writer group's committed offsets and Σ of the end offsets, over the three intake topics. */
  async function offsets(): Promise<{ committed: number; end: number }> {
    const topics = [settings.topics.calls, settings.topics.validations, settings.topics.connections];
    const admin = kafka.admin();
    await admin.connect();
    try {
      const committed = await admin.fetchOffsets({ groupId: settings.writerGroupId, topics });
      let end = 0;
      for (const topic of topics) for (const p of await admin.fetchTopicOffsets(topic)) end += Number(p.high);
      return {
        committed: committed.reduce(
          (sum, t) => sum + t.partitions.reduce((s, p) => s + Math.max(0, Number(p.offset)), 0),
          0,
        ),
        end,
      };
    } finally {
      await admin.disconnect();
    }
  }

  async function produce(batch: Wire[]): Promise<void> {
    const topicOf = (w: Wire) =>
      w.type === 'psp.call.completed'
        ? settings.topics.calls
        : w.type === 'connection.validation.completed'
          ? settings.topics.validations
          : settings.topics.connections;
    const byTopic = new Map<string, Message[]>();
    for (const w of batch)
      byTopic.set(topicOf(w), [
        ...(byTopic.get(topicOf(w)) ?? []),
        { key: `${w.org_id}:${w.connection_id}`, value: JSON.stringify(w) },
      ]);
    await producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
    });
  }

  const logCount = async (): Promise<number> => (await db.query(`SELECT count(*)::int AS n FROM event_log`))[0].n;

  function paths(): string[] {
    const out = [
      '/v1/connections',
      '/v1/connections/labels',
      '/v1/connections?status=inactive',
      '/v1/connections?limit=2&offset=3',
    ];
    for (let c = 0; c < CONNECTIONS; c++) out.push(`/v1/connections/conn_${c}`);
    out.push('/v1/connections/conn_missing');
    return out;
  }

  /** Every org's answers from one API: status, content type and body, byte for byte. */
  async function answers(url: string, keyOf: Map<string, string>): Promise<string[]> {
    const out: string[] = [];
    for (let o = 0; o < ORGS; o++)
      for (const p of paths()) {
        const res = await fetch(url + p, {
          headers: { 'X-Reevit-Key': keyOf.get(`org_${o}`)!, 'X-Org-Id': `org_${o}` },
        });
        out.push(`org_${o} ${p} ${res.status} ${res.headers.get('content-type')} ${await res.text()}`);
      }
    return out;
  }

  it('logs every event once, projects it once, and both APIs answer exactly as one of each would', async () => {
    const began = Date.now();
    const now = Math.floor(Date.now() / 1000) * 1000;
    const { sent, unique } = eventSet(now);

    // Two of each, on one isolated stack. Each writer gets a client id of its own, to tell them apart in the group.
    const writer1 = start('writer', { KAFKA_CLIENT_ID: `${env.KAFKA_CLIENT_ID}-w1` });
    start('writer', { KAFKA_CLIENT_ID: `${env.KAFKA_CLIENT_ID}-w2` });
    const projector1 = start('projector');
    // The survivor steps up to 4 of its shards at once (PROJECTOR_CONCURRENCY): the answers must not change.
    start('projector', { PROJECTOR_CONCURRENCY: '4' });
    const apis: { url: string; child: ReturnType<typeof startProcess> }[] = [];
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      apis.push({ url: `http://127.0.0.1:${port}`, child: start('api', { HTTP_PORT: String(port) }) });
    }

    // Meanwhile, the reference: the same events (as the writer's validation reads them), seeded straight
    // into a second database in another order, projected by one Projection, served by one API in this process.
    // The APIs take their ports first: the reference app listens on a port the OS picks, which could
    // otherwise be one of theirs before they bind it (and answer in their place).
    const apisUp = Promise.all(apis.map((api) => waitForHttp(`${api.url}/healthz`, api.child)));
    apisUp.catch(() => undefined); // awaited below
    const reference = (async () => {
      const events = unique
        .map((w) => validateMessage(Buffer.from(JSON.stringify(w)), Date.now()))
        .map((v) => {
          if (!v.ok) throw new Error(`the test's own event is invalid: ${v.reason} ${v.detail}`);
          return v.event;
        })
        .reverse();
      await seedLog(refDb, events);
      expect(await projectAll(new Projection(refDb, 1, null, 2000))).toBe(UNIQUE_EVENTS);
      await apisUp;
      ({ app: refApp, url: refUrl } = await startService(ApiModule, refSettings));
    })();

    reference.catch(() => undefined); // awaited below; this only keeps an early failure from going unhandled
    await apisUp;
    // Both writers in the group, each holding partitions, before any traffic.
    await eventually(
      writerGroup,
      (g) => g.state === 'Stable' && g.members.length === 2 && g.members.every((m) => m.partitions.length > 0),
      60000,
      'both writers to hold partitions',
    );
    const before = await writerGroup();
    const w1Partitions = before.members.find((m) => m.clientId.startsWith(`${env.KAFKA_CLIENT_ID}-w1-`))!.partitions;
    expect(w1Partitions.length).toBeGreaterThan(0);

    // Traffic: the first chunks, until both writers have appended (events from partitions of each are in the log).
    const chunks: Wire[][] = [];
    for (let i = 0; i < sent.length; i += CHUNK) chunks.push(sent.slice(i, i + CHUNK));
    for (const chunk of chunks.slice(0, CHUNKS_BEFORE_KILL)) await produce(chunk);
    await eventually(
      async () =>
        (
          (await db.query(`SELECT DISTINCT source_topic || '/' || source_partition AS p FROM event_log`)) as {
            p: string;
          }[]
        ).map((r) => r.p),
      (ps) => ps.some((p) => w1Partitions.includes(p)) && ps.some((p) => !w1Partitions.includes(p)),
      60000,
      'both writers to have appended',
    );

    // The two projectors share the 16 projection shards (PostgreSQL advisory locks), 8 each, and both
    // have applied events of their shards before the kill.
    const holders = async () => [...(await readShardHolders(db)).entries()];
    await eventually(
      holders,
      (h) => h.length === 16 && new Set(h.map(([, p]) => p)).size === 2,
      30000,
      'the two projectors to hold 8 shards each',
    );
    const byHolder = new Map<string, number>();
    for (const [, p] of await holders()) byHolder.set(p, (byHolder.get(p) ?? 0) + 1);
    expect([...byHolder.values()]).toEqual([8, 8]);
    const killedHolder = `:${projector1.pid}`;
    expect([...byHolder.keys()].some((h) => h.endsWith(killedHolder))).toBe(true);

    // The rest of the traffic flows while writer 1 (and projector 1) are killed with SIGKILL.
    const rest = (async () => {
      for (const chunk of chunks.slice(CHUNKS_BEFORE_KILL)) {
        await produce(chunk);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const atKill = await logCount();
    await Promise.all([stopProcess(writer1, 'SIGKILL'), stopProcess(projector1, 'SIGKILL')]);
    expect(atKill).toBeLessThan(UNIQUE_EVENTS);
    // The survivor takes the killed projector's shards within 15 s.
    const killedAt = Date.now();
    await eventually(
      holders,
      (h) => h.length === 16 && h.every(([, p]) => !p.endsWith(killedHolder)),
      15000,
      "the surviving projector to take the killed one's shards",
    );
    process.stdout.write(`two-of-each: the killed projector's shards moved in ${Date.now() - killedAt} ms\n`);
    await rest;

    // The survivor takes writer 1's partitions over and everything ends up in the log exactly once.
    await eventually(logCount, (n) => n >= UNIQUE_EVENTS, 60000, `${UNIQUE_EVENTS} events in the log`);
    // and the group's offsets reach the end of every partition (no message left behind, none passed).
    const ends = await eventually(offsets, (o) => o.committed === o.end, 30000, 'every message committed');
    expect(ends.end).toBeGreaterThanOrEqual(sent.length);
    const after = await writerGroup();
    expect(after.members.map((m) => m.partitions.length)).toEqual([9]);
    expect(after.members[0].clientId.startsWith(`${env.KAFKA_CLIENT_ID}-w2-`)).toBe(true);
    const [counts] = await db.query(`SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS d FROM event_log`);
    expect(counts).toEqual({ n: UNIQUE_EVENTS, d: UNIQUE_EVENTS });
    // The same events as the reference's log, member for member as stored.
    const logged = `SELECT event_id, org_id, connection_id, type, occurred_at, data::text AS data FROM event_log ORDER BY event_id`;
    await reference;
    expect(await db.query(logged)).toEqual(await refDb.query(logged));
    // Stream versions 1..n per connection, no gap, no repeat, n = that connection's events.
    const perStream = new Map<string, number>();
    for (const w of unique)
      perStream.set(`${w.org_id}:${w.connection_id}`, (perStream.get(`${w.org_id}:${w.connection_id}`) ?? 0) + 1);
    const streams: { s: string; n: number; lo: number; hi: number; dv: number }[] = await db.query(
      `SELECT org_id || ':' || connection_id AS s, count(*)::int AS n, min(stream_version)::int AS lo,
              max(stream_version)::int AS hi, count(DISTINCT stream_version)::int AS dv
         FROM event_log GROUP BY 1 ORDER BY 1`,
    );
    expect(streams).toEqual(
      [...perStream].sort(([a], [b]) => (a < b ? -1 : 1)).map(([s, n]) => ({ s, n, lo: 1, hi: n, dv: n })),
    );

    // The surviving projector catches up, and no event was applied twice: events_applied = log rows.
    const applied = async (): Promise<{ generation: number; status: string; applied: number }[]> =>
      db.query(
        `SELECT generation, status, events_applied::int AS applied FROM projection_progress ORDER BY generation`,
      );
    await eventually(applied, (g) => g[0]?.applied >= UNIQUE_EVENTS, 60000, 'the projection to catch up');
    await new Promise((r) => setTimeout(r, 1500)); // also: every API instance re-checks PostgreSQL's versions each second
    expect(await applied()).toEqual([{ generation: 1, status: 'live', applied: UNIQUE_EVENTS }]);
    const [ref] = await refDb.query(`SELECT stream_time FROM projection_generation WHERE generation = 1`);
    const [ours] = await db.query(`SELECT stream_time FROM projection_generation WHERE generation = 1`);
    expect(ours.stream_time).toEqual(ref.stream_time);

    // Both APIs answer byte for byte alike, and as the single reference does.
    const [a1, a2, expected] = await Promise.all([
      answers(apis[0].url, keys),
      answers(apis[1].url, keys),
      answers(refUrl, refKeys),
    ]);
    expect(expected.filter((r) => / 200 /.test(r)).length).toBeGreaterThan(ORGS * 8);
    expect(expected.some((r) => /conn_missing 404 /.test(r))).toBe(true);
    expect(a1).toEqual(expected);
    expect(a2).toEqual(expected);
    // Read twice more (Redis and in-process caches warm): still the same.
    expect(await answers(apis[1].url, keys)).toEqual(expected);
    expect(await answers(apis[0].url, keys)).toEqual(expected);
    console.log(
      `two-of-each: ${sent.length} messages (${sent.length - UNIQUE_EVENTS} duplicates), ${atKill} logged at the kill, ${Date.now() - began} ms`,
    );
  });
});
