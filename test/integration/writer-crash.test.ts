import { randomUUID } from 'node:crypto';
import { Kafka, Producer } from 'kafkajs';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { eventually, IsolatedStack, openIsolatedStack } from '../support/isolated-stack';
import { startProcess, stopProcess } from '../support/processes';
import { STREAM_VERSION_ENTRY_BYTES } from '../../apps/writer/src/stream-versions';

const CONNECTIONS = 40;
const CALLS = 24000;

/**
 * Exactly-once effect of the write side (offsets committed only after the batch is durable): kill -9
 * in the middle of a stream, and a second writer joining then leaving the group, lose nothing and
 * count nothing twice.
 */
describe('the writer under crashes and rebalances', () => {
  let env: Record<string, string>;
  let settings: Settings;
  let db: DataSource;
  let kafka: Kafka;
  let producer: Producer;
  let stack: IsolatedStack;
  const expected = new Map<string, { calls: number; latency: number }>();

  async function produceCalls(count: number, start: number): Promise<void> {
    const messages = [];
    for (let i = 0; i < count; i++) {
      const c = `c${(start + i) % CONNECTIONS}`;
      const latency = (start + i) % 997;
      const e = expected.get(c) ?? { calls: 0, latency: 0 };
      expected.set(c, { calls: e.calls + 1, latency: e.latency + latency });
      messages.push({
        key: `org_w:${c}`,
        value: JSON.stringify({
          event_id: randomUUID(),
          type: 'psp.call.completed',
          schema_version: 1,
          org_id: 'org_w',
          connection_id: c,
          occurred_at: new Date(Date.now() - 60000).toISOString(),
          data: { outcome: 'success', latency_ms: latency },
        }),
      });
    }
    for (let i = 0; i < messages.length; i += 2000)
      await producer.send({ topic: settings.topics.calls, acks: -1, messages: messages.slice(i, i + 2000) });
  }

  async function logCount(): Promise<number> {
    return (await db.query(`SELECT count(*)::int AS n FROM event_log`))[0].n;
  }

  async function expectExactlyOnce(total: number): Promise<void> {
    await eventually(logCount, (n) => n >= total, 90000, `${total} events in the log`);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await logCount()).toBe(total);
    const rows: { connection_id: string; calls: number; latency: number; max_version: number }[] = await db.query(
      `SELECT connection_id, count(*)::int AS calls, sum((data->>'latency_ms')::int)::int AS latency, max(stream_version) AS max_version
         FROM event_log GROUP BY connection_id`,
    );
    for (const r of rows) {
      expect({ c: r.connection_id, calls: r.calls, latency: r.latency }).toEqual({
        c: r.connection_id,
        ...expected.get(r.connection_id),
      });
      expect(r.max_version).toBe(r.calls); // stream versions have no gaps and no repeats
    }
  }

  beforeAll(async () => {
    // Room for about 7 stream versions for 40 connections: streams are forgotten and looked up again
    // all the time, through every crash and rebalance.
    stack = await openIsolatedStack('crash', { WRITER_STREAM_CACHE_BYTES: String(7 * STREAM_VERSION_ENTRY_BYTES) });
    ({ env, settings, db, kafka, producer } = stack);
  });

  afterAll(async () => {
    await stack?.close();
  });

  it('loses and double-counts nothing when the writer is killed with SIGKILL mid-stream', async () => {
    await produceCalls(CALLS, 0);
    const first = startProcess('writer', env);
    try {
      await eventually(logCount, (n) => n > CALLS / 5, 60000, 'the writer to be part-way');
    } finally {
      await stopProcess(first, 'SIGKILL');
    }
    const partial = await logCount();
    expect(partial).toBeLessThan(CALLS);
    const second = startProcess('writer', env);
    try {
      await expectExactlyOnce(CALLS);
    } finally {
      await stopProcess(second);
    }
  });

  /** Σ over the calls topic's partitions of the writer group's committed offsets. */
  async function committedMessages(): Promise<number> {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const [topic] = await admin.fetchOffsets({ groupId: settings.writerGroupId, topics: [settings.topics.calls] });
      return topic.partitions.reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
    } finally {
      await admin.disconnect();
    }
  }

  it('loses and skips nothing when the log refuses appends for a while, and commits no offset past it', async () => {
    const before = await logCount();
    await produceCalls(CALLS / 2, before);
    const writer = startProcess('writer', env);
    try {
      await eventually(logCount, (n) => n === before + CALLS / 2, 60000, 'the first half in the log');
      // From now on every append fails (as with PostgreSQL refusing writes) while batches keep arriving.
      await db.query(`CREATE FUNCTION refuse_appends() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN RAISE EXCEPTION 'appends refused by the test'; END $$`);
      await db.query(`CREATE TRIGGER refuse_appends BEFORE INSERT ON event_log
                        FOR EACH STATEMENT EXECUTE FUNCTION refuse_appends()`);
      await produceCalls(CALLS / 2, before + CALLS / 2);
      const stuckAt = await logCount();
      // Give the writer time to take the second half's batches and fail on them (it says so in its log).
      const until = Date.now() + 15000;
      while (Date.now() < until && !/append to the event log failed/.test(writer.output.join('')))
        await new Promise((r) => setTimeout(r, 200));
      await new Promise((r) => setTimeout(r, 2000));
      expect(await logCount()).toBe(stuckAt);
      expect(stuckAt).toBeLessThan(before + CALLS);
      // Every message ever produced to this file's topic becomes one event: offsets committed past the
      // log would show as more committed messages than events.
      expect(await committedMessages()).toBeLessThanOrEqual(stuckAt);
      expect(writer.output.join('')).toMatch(/append to the event log failed/);

      await db.query(`DROP TRIGGER refuse_appends ON event_log`);
      await db.query(`DROP FUNCTION refuse_appends()`);
      await expectExactlyOnce(before + CALLS);
      expect(writer.output.join('')).toMatch(/consumption restarted from the committed offsets/);
      await eventually(committedMessages, (n) => n === before + CALLS, 30000, 'all offsets committed');
    } finally {
      await db.query(`DROP TRIGGER IF EXISTS refuse_appends ON event_log`);
      await db.query(`DROP FUNCTION IF EXISTS refuse_appends()`);
      await stopProcess(writer);
    }
  });

  it('loses and double-counts nothing when a second writer joins the group and the first leaves', async () => {
    const before = await logCount();
    await produceCalls(CALLS, before);
    const a = startProcess('writer', env);
    let b: ReturnType<typeof startProcess> | undefined;
    try {
      await eventually(logCount, (n) => n > before + CALLS / 10, 60000, 'writer A part-way');
      b = startProcess('writer', env); // rebalance: partitions move between A and B
      await new Promise((r) => setTimeout(r, 6000));
      await stopProcess(a); // and again when A leaves
      await expectExactlyOnce(before + CALLS);
    } finally {
      await stopProcess(a, 'SIGKILL');
      if (b) await stopProcess(b);
    }
  });
});
