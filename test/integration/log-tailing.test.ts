import { randomUUID } from 'node:crypto';
import { DataSource, QueryRunner } from 'typeorm';
import { Settings } from '@psp/config';
import { ConnectionEvent } from '@psp/domain';
import { appendEvents, LOG_START, LogPosition, readLogAfter, readLogByStream } from '@psp/storage';
import { dropIsolated, isolatedSettings, openDatabase } from '../support/isolated-stack';

function call(connectionId: string, i: number): ConnectionEvent {
  return {
    eventId: randomUUID(),
    type: 'psp.call.completed',
    orgId: 'org_t',
    connectionId,
    occurredAt: Date.UTC(2026, 10, 24, 9, 0, 0) + i,
    data: { outcome: 'success', latency_ms: i },
  };
}

async function openWriter(db: DataSource): Promise<QueryRunner> {
  const q = db.createQueryRunner();
  await q.connect();
  await q.startTransaction();
  return q;
}

/** The log is read in (transaction id, position) order, never skipping a row that commits late. */
describe('tailing the event log', () => {
  let settings: Settings;
  let db: DataSource;

  beforeAll(async () => {
    settings = isolatedSettings('tailing');
    db = await openDatabase(settings);
  });

  afterAll(async () => {
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('does not read past a transaction that is still open, then reads everything once it commits', async () => {
    const early = await openWriter(db);
    await appendEvents(early, [
      { event: call('c1', 1), streamVersion: 1, source: { topic: 't', partition: 0, offset: '1' } },
    ]);
    const late = await openWriter(db);
    await appendEvents(late, [
      { event: call('c2', 2), streamVersion: 1, source: { topic: 't', partition: 0, offset: '2' } },
    ]);
    await late.commitTransaction();

    // The later transaction has committed, but the earlier one is open: reading past it now could skip it.
    expect(await readLogAfter(db, LOG_START, 100)).toEqual([]);
    await early.commitTransaction();
    const read = await readLogAfter(db, LOG_START, 100);
    expect(read.map((r) => r.event.connectionId)).toEqual(['c1', 'c2']);
    await early.release();
    await late.release();
  });

  it('orders transaction ids as numbers, not text, across a change in their number of digits', async () => {
    // Rows written "by" two finished transactions on either side of a power of ten (999 and 1000 on a
    // young cluster, 9999 and 10000 on an older one): the one with fewer digits comes first.
    const db2 = await openDatabase({
      ...settings,
      databaseUrl: settings.databaseUrl.replace(/\/([^/]+)$/, '/$1_digits'),
    });
    try {
      const current: string = (await db2.query(`SELECT pg_current_xact_id()::text AS x`))[0].x;
      expect(current.length).toBeGreaterThanOrEqual(2); // every cluster has run more than 10 transactions
      const boundary = 10n ** BigInt(current.length - 1);
      const [before, after] = [(boundary - 1n).toString(), boundary.toString()];
      for (const [xid, id] of [
        [after, 'later'],
        [before, 'earlier'],
      ]) {
        await db2.query(
          `INSERT INTO event_log (transaction_id, event_id, org_id, connection_id, stream_version, type, occurred_at, data,
                                  source_topic, source_partition, source_offset)
           VALUES ($1::xid8, $2, 'org_t', $2, 1, 'connection.deleted', now(), '{}', 't', 0, 0)`,
          [xid, id],
        );
      }
      const first = await readLogAfter(db2, LOG_START, 1);
      expect(first.map((r) => [r.at.transactionId, r.event.eventId])).toEqual([[before, 'earlier']]);
      const next = await readLogAfter(db2, first[0].at, 10);
      expect(next.map((r) => [r.at.transactionId, r.event.eventId])).toEqual([[after, 'later']]);
      const plan: { 'QUERY PLAN': string }[] = await db2.query(
        `EXPLAIN SELECT e.transaction_id::text AS tx FROM event_log e WHERE (e.transaction_id, e.position) > ('0'::xid8, 0) ORDER BY e.transaction_id, e.position LIMIT 10`,
      );
      expect(plan.map((p) => p['QUERY PLAN']).join('\n')).not.toMatch(/Sort Key: \(\(e\.transaction_id\)::text\)/);
    } finally {
      await db2.destroy();
      await dropIsolated({ ...settings, databaseUrl: settings.databaseUrl.replace(/\/([^/]+)$/, '/$1_digits') });
    }
  });

  it('sees every event exactly once while many writers commit out of order', async () => {
    const writers = 8;
    const perWriter = 50;
    const seen: string[] = [];
    let at: LogPosition = (await readLogAfter(db, LOG_START, 1000)).slice(-1)[0]?.at ?? LOG_START;
    let stop = false;
    const reader = (async () => {
      while (!stop || seen.length < writers * perWriter) {
        const batch = await readLogAfter(db, at, 37);
        for (const r of batch) seen.push(r.event.eventId);
        if (batch.length > 0) at = batch[batch.length - 1].at;
        else await new Promise((r) => setTimeout(r, 5));
        if (stop && batch.length === 0 && seen.length >= writers * perWriter) break;
      }
    })();
    const produced: string[] = [];
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; i < perWriter; i += 5) {
          const q = await openWriter(db);
          const rows = Array.from({ length: 5 }, (_, k) => {
            const event = call(`w${w}`, i + k);
            produced.push(event.eventId);
            return { event, streamVersion: i + k + 1, source: { topic: 't', partition: w, offset: String(i + k) } };
          });
          await appendEvents(q, rows);
          await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 15))); // commit in random order
          await q.commitTransaction();
          await q.release();
        }
      }),
    );
    stop = true;
    await Promise.race([
      reader,
      new Promise((_, reject) => setTimeout(() => reject(new Error('reader did not catch up')), 20000)),
    ]);
    expect(seen.length).toBe(produced.length);
    expect(new Set(seen)).toEqual(new Set(produced));
  });

  it('reads every instant back to the millisecond (occurred_at as epoch ms), the extremes of the contract included', async () => {
    const instants = [
      Date.UTC(2026, 10, 24, 9, 0, 0, 1),
      Date.UTC(2026, 10, 24, 9, 0, 0, 999),
      Date.parse('0001-01-01T00:00:00.001Z'),
      Date.parse('1969-12-31T23:59:59.999Z'),
      Date.parse('9999-12-31T23:59:59.999Z'),
    ];
    const events = instants.map((at, i) => ({ ...call(`instants_${i}`, i), occurredAt: at }));
    const before = await readLogAfter(db, LOG_START, 1_000_000);
    const from = before.length > 0 ? before[before.length - 1].at : LOG_START;
    await appendEvents(
      db,
      events.map((event, i) => ({ event, streamVersion: 1, source: { topic: 't', partition: 0, offset: String(i) } })),
    );
    // Read below the cluster's oldest running transaction (readLogAfter's rule): a transaction open
    // elsewhere on the machine may hold the new rows back for a moment.
    let read = await readLogAfter(db, from, 100);
    for (let tries = 0; read.length < instants.length && tries < 200; tries++) {
      await new Promise((r) => setTimeout(r, 50));
      read = await readLogAfter(db, from, 100);
    }
    expect(read.map((l) => l.event.occurredAt)).toEqual(instants);
    // The replay's reader, by stream.
    const through = read[read.length - 1].at;
    const byStream: number[] = [];
    for await (const page of readLogByStream(db, { after: from, through, afterStream: null }, { pageSize: 2 }))
      for (const e of page) byStream[Number(e.connectionId.split('_')[1])] = e.occurredAt;
    expect(byStream).toEqual(instants);
  });
});
