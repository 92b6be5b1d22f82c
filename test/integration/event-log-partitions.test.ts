import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { callEvent, T0 } from '@psp/domain/testing/events';
import {
  appendEvents,
  ensureDatabase,
  ensureLogPartitions,
  EventToAppend,
  LOG_START,
  LogPosition,
  migrate,
  MIGRATIONS,
  readLogAfter,
  readLogPartitions,
  readStreamVersions,
} from '@psp/storage';
import { ConnectionStreams, SourcedEvent } from '../../apps/writer/src/connection-streams';
import { dropIsolated, isolatedEnv, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { runOps } from '../support/processes';

const DAY = 86_400_000;
const today = Math.floor(Date.now() / DAY) * DAY;

function row(id: string, connectionId: string, version: number, occurredAt = T0): EventToAppend {
  return {
    event: callEvent(id, occurredAt, { latency_ms: version }, { orgId: 'org_p', connectionId }),
    streamVersion: version,
    source: { topic: 'psp.calls', partition: 0, offset: String(version) },
  };
}

/** Every column of every row, as text, in the log's global order. */
const EVERY_ROW = `SELECT position::text, transaction_id::text, event_id, org_id, connection_id, stream_version, type,
                          occurred_at, data::text AS data, source_topic, source_partition, source_offset::text, recorded_at
                     FROM event_log ORDER BY transaction_id, position`;

async function readAll(db: DataSource): Promise<LogPosition[]> {
  const out: LogPosition[] = [];
  let at = LOG_START;
  for (;;) {
    const batch = await readLogAfter(db, at, 7);
    if (batch.length === 0) return out;
    out.push(...batch.map((b) => b.at));
    at = batch[batch.length - 1].at;
  }
}

/** The event log partitioned by recorded_at, with event ids and stream versions kept beside it. */
describe('the partitioned event log', () => {
  const env = isolatedEnv('partitions');
  let settings: Settings;
  let db: DataSource;

  beforeAll(async () => {
    settings = isolatedSettings('unused', env);
    db = await openDatabase(settings);
  });

  afterAll(async () => {
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('moves an existing log into partitions by day, every row and column as it was, in the same order', async () => {
    const url = new URL(settings.databaseUrl);
    url.pathname = `${url.pathname}_moved`;
    const movedSettings = { ...settings, databaseUrl: url.toString() };
    await ensureDatabase(movedSettings.databaseUrl);
    const before = new DataSource({
      type: 'postgres',
      url: movedSettings.databaseUrl,
      migrations: MIGRATIONS.slice(0, 5), // the log as it was before partitioning
      migrationsTableName: 'schema_migration',
      logging: false,
    });
    await before.initialize();
    try {
      await before.runMigrations({ transaction: 'each' });
      // Rows appended over four days, by transactions that commit out of order, plus rows "written"
      // by transactions on either side of a power of ten (numeric, not text, order).
      for (let d = 3; d >= 0; d--) {
        const q1 = before.createQueryRunner();
        const q2 = before.createQueryRunner();
        await q1.startTransaction();
        await q2.startTransaction();
        const at = new Date(today - d * DAY + 3600_000 * (d + 1)).toISOString();
        await q1.query(
          `INSERT INTO event_log (event_id, org_id, connection_id, stream_version, type, occurred_at, data, source_topic, source_partition, source_offset, recorded_at)
           VALUES ($1, 'org_m', 'a', $2::int, 'psp.call.completed', now(), '{"outcome":"success","latency_ms":1,"z":{"b":1,"a":2}}', 't', 0, $2::int, $3)`,
          [`a-${d}`, 4 - d, at],
        );
        await q2.query(
          `INSERT INTO event_log (event_id, org_id, connection_id, stream_version, type, occurred_at, data, source_topic, source_partition, source_offset, recorded_at)
           VALUES ($1, 'org_m', 'b', $2::int, 'psp.call.completed', now(), '{"outcome":"failure","latency_ms":2}', 't', 1, $2::int, $3)`,
          [`b-${d}`, 4 - d, at],
        );
        await q2.commitTransaction(); // the later transaction commits first
        await q1.commitTransaction();
        await q1.release();
        await q2.release();
      }
      const current: string = (await before.query(`SELECT pg_current_xact_id()::text AS x`))[0].x;
      const boundary = 10n ** BigInt(current.length - 1);
      for (const [xid, id] of [
        [boundary.toString(), 'later'],
        [(boundary - 1n).toString(), 'earlier'],
      ])
        await before.query(
          `INSERT INTO event_log (transaction_id, event_id, org_id, connection_id, stream_version, type, occurred_at, data, source_topic, source_partition, source_offset, recorded_at)
           VALUES ($1::xid8, $2, 'org_m', $2, 1, 'connection.deleted', now(), '{}', 't', 2, 0, now() - interval '1 day')`,
          [xid, id],
        );
    } finally {
      await before.destroy();
    }
    const original = new DataSource({ type: 'postgres', url: movedSettings.databaseUrl, logging: false });
    await original.initialize();
    const rowsBefore = await original.query(EVERY_ROW);
    // The log's order before the move, read with SQL of that schema (readLogAfter reads columns that
    // later migrations add, e.g. trace_context).
    const orderBefore: LogPosition[] = (
      await original.query(
        `SELECT transaction_id::text AS tx, position::text AS pos FROM event_log ORDER BY transaction_id, position`,
      )
    ).map((r: { tx: string; pos: string }) => ({ transactionId: r.tx, position: r.pos }));
    await original.destroy();
    expect(rowsBefore).toHaveLength(10);

    expect(await migrate(movedSettings.databaseUrl)).toContain('PartitionedEventLog1732400000005');
    const moved = await openDatabase(movedSettings);
    try {
      expect(await moved.query(EVERY_ROW)).toEqual(rowsBefore);
      expect(await readAll(moved)).toEqual(orderBefore);
      // Each row sits in the partition of its recorded_at's day.
      const placed: { p: string; day: string }[] = await moved.query(
        `SELECT tableoid::regclass::text AS p, to_char(recorded_at AT TIME ZONE 'UTC', 'YYYYMMDD') AS day FROM event_log`,
      );
      for (const r of placed) expect(r.p).toBe(`event_log_p${r.day}`);
      expect(new Set(placed.map((r) => r.p)).size).toBe(4);
      // The ids and stream versions came along; the next append continues both.
      expect((await moved.query(`SELECT count(*)::int AS n FROM event_log_ids`))[0].n).toBe(10);
      expect(
        await readStreamVersions(moved, [
          { orgId: 'org_m', connectionId: 'a' },
          { orgId: 'org_m', connectionId: 'b' },
          { orgId: 'org_m', connectionId: 'later' },
          { orgId: 'org_m', connectionId: 'zzz' },
        ]),
      ).toEqual([
        { orgId: 'org_m', connectionId: 'a', version: 4 },
        { orgId: 'org_m', connectionId: 'b', version: 4 },
        { orgId: 'org_m', connectionId: 'later', version: 1 },
        { orgId: 'org_m', connectionId: 'zzz', version: 0 },
      ]);
      const streams = new ConnectionStreams(moved, movedSettings);
      const more: SourcedEvent[] = [
        {
          event: callEvent('a-new', T0, {}, { orgId: 'org_m', connectionId: 'a' }),
          source: { topic: 't', partition: 0, offset: '9' },
        },
        {
          event: callEvent('a-0', T0, {}, { orgId: 'org_m', connectionId: 'a' }),
          source: { topic: 't', partition: 0, offset: '1' },
        },
      ];
      expect(await streams.record(more)).toMatchObject({ appended: 1, duplicates: 1 });
      const [added] = await moved.query(
        `SELECT position::text AS p, stream_version FROM event_log WHERE event_id = 'a-new'`,
      );
      expect(added.stream_version).toBe(5);
      expect(BigInt(added.p)).toBeGreaterThan(
        BigInt(Math.max(...rowsBefore.map((r: { position: string }) => Number(r.position)))),
      );
      // Partitions exist ahead of today.
      const partitions = await readLogPartitions(moved);
      expect(partitions[partitions.length - 1].to).toBeGreaterThanOrEqual(today + 4 * DAY);
    } finally {
      await moved.destroy();
      await dropIsolated(movedSettings);
    }
  });

  it('refuses an event id logged before in another partition, and a stream version another append took', async () => {
    await ensureLogPartitions(db, { widthDays: 1, aheadDays: 3 }, { from: today - 5 * DAY });
    await appendEvents(db, [row('u-1', 'u', 1), row('u-2', 'u', 2)]);
    await db.query(
      `INSERT INTO event_log (event_id, org_id, connection_id, stream_version, type, occurred_at, data, source_topic, source_partition, source_offset, recorded_at)
       VALUES ('old-1', 'org_p', 'old', 1, 'connection.deleted', now(), '{}', 't', 0, 0, now() - interval '4 days')`,
    );
    // The same id, appended today: another partition, still refused.
    await expect(appendEvents(db, [row('old-1', 'v', 1)])).rejects.toMatchObject({
      code: '23505',
      constraint: 'event_log_event_id',
    });
    // Stream u is at 2: version 2 again, a gap (4), or a new stream not starting at 1 are refused.
    for (const rows of [
      [row('u-x', 'u', 2)],
      [row('u-y', 'u', 4)],
      [row('w-1', 'w', 2)],
      [row('u-3', 'u', 3), row('u-3b', 'u', 3)],
    ])
      await expect(appendEvents(db, rows)).rejects.toMatchObject({
        code: '23505',
        constraint: 'event_log_stream_version',
      });
    await appendEvents(db, [row('u-3', 'u', 3), row('w-1', 'w', 1), row('w-2', 'w', 2)]);
    expect(
      await db.query(
        `SELECT org_id, connection_id, version FROM event_log_streams WHERE connection_id IN ('u', 'w', 'old') ORDER BY 2`,
      ),
    ).toEqual([
      { org_id: 'org_p', connection_id: 'old', version: 1 },
      { org_id: 'org_p', connection_id: 'u', version: 3 },
      { org_id: 'org_p', connection_id: 'w', version: 2 },
    ]);
    // Refused appends left nothing behind.
    const ids: { event_id: string }[] = await db.query(`SELECT event_id FROM event_log_ids ORDER BY 1`);
    expect(ids.map((r) => r.event_id)).toEqual(['old-1', 'u-1', 'u-2', 'u-3', 'w-1', 'w-2']);
  });

  it('lets one of two concurrent appends to a new stream win; the other is refused as a taken version', async () => {
    const q1 = db.createQueryRunner();
    const q2 = db.createQueryRunner();
    await q1.startTransaction();
    await q2.startTransaction();
    try {
      await appendEvents(q1, [row('n-1a', 'n', 1)]);
      const second = appendEvents(q2, [row('n-1b', 'n', 1)]); // waits for the first transaction
      await new Promise((r) => setTimeout(r, 200));
      await q1.commitTransaction();
      await expect(second).rejects.toMatchObject({ code: '23505', constraint: 'event_log_stream_version' });
      await q2.rollbackTransaction();
    } finally {
      await q1.release();
      await q2.release();
    }
    expect(await db.query(`SELECT event_id FROM event_log WHERE connection_id = 'n'`)).toEqual([{ event_id: 'n-1a' }]);
  });

  it('creates partitions ahead once, fills a hole, and the writer creates a missing one itself', async () => {
    expect(await ensureLogPartitions(db, { widthDays: 1, aheadDays: 3 })).toBe(0); // already there
    const partitions = await readLogPartitions(db);
    const names = partitions.map((p) => p.name);
    expect(names).toEqual([...names].sort());
    for (let i = 1; i < partitions.length; i++) expect(partitions[i].from).toBe(partitions[i - 1].to);
    expect(partitions.find((p) => p.from === today)?.state).toBe('open');
    expect(partitions.find((p) => p.to === today - 2 * DAY)).toMatchObject({ state: 'closed', table: 'attached' });

    // Today's partition disappears (as if never created): the writer's append creates it and goes on.
    const todays = partitions.find((p) => p.from === today)!;
    await db.query(`ALTER TABLE event_log DETACH PARTITION ${todays.name}`);
    await db.query(`ALTER TABLE ${todays.name} RENAME TO ${todays.name}_aside`);
    await db.query(`DELETE FROM event_log_partition WHERE name = $1`, [todays.name]);
    const streams = new ConnectionStreams(db, settings);
    const outcome = await streams.record([
      {
        event: callEvent('after-hole', T0, {}, { orgId: 'org_p', connectionId: 'h' }),
        source: { topic: 't', partition: 0, offset: '1' },
      },
    ]);
    expect(outcome).toMatchObject({ appended: 1, unstorable: [] });
    const [where] = await db.query(`SELECT tableoid::regclass::text AS p FROM event_log WHERE event_id = 'after-hole'`);
    expect(where.p).toBe(todays.name);
    const after = await readLogPartitions(db);
    expect(after.map((p) => p.name)).toEqual(names);
  });

  it('lists partitions with rows, bytes and state (npm run ops -- log partitions)', async () => {
    const listed = JSON.parse((await runOps(env, 'log', 'partitions', '--json')).stdout);
    const counted: { p: string; n: number }[] = await db.query(
      `SELECT tableoid::regclass::text AS p, count(*)::int AS n FROM event_log GROUP BY 1`,
    );
    for (const c of counted)
      expect(listed.partitions.find((p: { name: string }) => p.name === c.p)).toMatchObject({ rows: c.n });
    expect(listed.log.rows).toBe(counted.reduce((n, c) => n + c.n, 0));
    expect(listed.partitions.every((p: { bytes: number }) => p.bytes > 0)).toBe(true);
    expect(listed.ids.bytes).toBeGreaterThan(0);
    const text = (await runOps(env, 'log', 'partitions')).stdout;
    expect(text).toMatch(/event_log_p\d{8}\s+\S+Z\s+\S+Z\s+(open|closed)\s+attached/);
    expect((await runOps(env, 'log', 'partitions', '--help')).stdout).toContain('compacted');
  });
});
