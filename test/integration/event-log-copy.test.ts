import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ConnectionEvent } from '@psp/domain';
import { copyEvents, CopyClient, EventToAppend, LOG_START, readLogAfter } from '@psp/storage';
import { dropIsolated, isolatedSettings, openDatabase } from '../support/isolated-stack';

/** Texts a COPY stream must carry unchanged: its own delimiters, escapes, NULL and end-of-data markers. */
const AWKWARD = [
  'comma,inside',
  'quote"inside',
  '""',
  'back\\slash',
  '\\N',
  '\\.',
  'tab\there',
  'new\nline',
  'carriage\rreturn',
  '\r\n',
  ' spaced ',
  'é ünïcödé 😀 日本',
  'x'.repeat(128),
];

/** Instants around the edges of the formatter's shortcuts: whole seconds, 1 and 2 digit milliseconds, before 1970. */
const OCCURRED_AT = [
  Date.UTC(2026, 10, 24, 9, 0, 0),
  Date.UTC(2026, 10, 24, 9, 0, 0, 7),
  Date.UTC(2026, 10, 24, 9, 0, 0, 42),
  Date.UTC(1969, 11, 31, 23, 59, 59, 999),
  -1,
  Date.UTC(1000, 0, 1, 0, 0, 0, 5),
];

function event(i: number, eventId: string, data: Record<string, unknown>): EventToAppend {
  return {
    event: {
      eventId,
      type: 'connection.configured',
      orgId: 'org_copy',
      connectionId: `conn.${i % 3}:a-b_c`,
      occurredAt: OCCURRED_AT[i % OCCURRED_AT.length] + i * 1001,
      data,
    } as unknown as ConnectionEvent,
    streamVersion: Math.floor(i / 3) + 1,
    source: { topic: 'psp.connections', partition: i % 6, offset: String(2 ** 40 + i) },
  };
}

/** The writer's COPY append stores every event exactly as given, whatever its strings hold. */
describe('appending with COPY', () => {
  let settings: Settings;
  let db: DataSource;

  beforeAll(async () => {
    settings = isolatedSettings('copy');
    db = await openDatabase(settings);
  });

  afterAll(async () => {
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('round-trips ids, data strings, times and sources with delimiters, escapes and markers in them', async () => {
    const rows: EventToAppend[] = [];
    AWKWARD.forEach((text, i) => {
      rows.push(
        event(i, `${text}#${i}`, {
          provider: text,
          labels: [text, 'plain'],
          capabilities: { [text]: i, nested: { deeper: [text, i + 0.5] } },
        }),
      );
    });
    // More rows than one chunk of the stream, so chunk boundaries are crossed.
    for (let i = AWKWARD.length; i < 2500; i++) rows.push(event(i, `plain-${i}`, { provider: 'paystack', n: i }));

    await db.transaction(async (tx) => {
      await copyEvents((await tx.queryRunner!.connect()) as CopyClient, rows);
    });

    const read = await readLogAfter(db, LOG_START, 10_000);
    expect(read.map((r) => r.event)).toEqual(rows.map((r) => r.event));
    const stored: {
      event_id: string;
      stream_version: number;
      source_topic: string;
      source_partition: number;
      source_offset: string;
    }[] = await db.query(
      `SELECT event_id, stream_version, source_topic, source_partition, source_offset::text FROM event_log ORDER BY position`,
    );
    expect(stored).toEqual(
      rows.map((r) => ({
        event_id: r.event.eventId,
        stream_version: r.streamVersion,
        source_topic: r.source.topic,
        source_partition: r.source.partition,
        source_offset: r.source.offset,
      })),
    );
  });

  it('fails the whole append with a unique violation when an event id is already logged', async () => {
    const before: { n: number }[] = await db.query(`SELECT count(*)::int AS n FROM event_log`);
    const again = [event(9000, 'fresh-one', { n: 1 }), event(9001, `${AWKWARD[0]}#0`, { n: 2 })];
    again[0].streamVersion = 100_000;
    again[1].streamVersion = 100_001;
    await expect(
      db.transaction(async (tx) => copyEvents((await tx.queryRunner!.connect()) as CopyClient, again)),
    ).rejects.toMatchObject({ code: '23505', constraint: 'event_log_event_id' });
    const after: { n: number }[] = await db.query(`SELECT count(*)::int AS n FROM event_log`);
    expect(after[0].n).toBe(before[0].n);
  });
});
