import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { callEvent, configuredEvent } from '@psp/domain/testing/events';
import {
  COMPACTED,
  COMPACTING,
  compactLog,
  ensureLogPartitions,
  LogMaintenanceBusy,
  readLogPartitions,
  readSummarySet,
  withLogMaintenanceLock,
} from '@psp/storage';
import { generationsBehindLogTable, Projection, replay } from '@psp/read-model';
import { ApiModule } from '../../apps/api/src/api.module';
import { ConnectionStreams, SourcedEvent } from '../../apps/writer/src/connection-streams';
import { LogMaintenance } from '../../apps/writer/src/log-maintenance';
import { dropIsolated, isolatedEnv, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { runOps } from '../support/processes';
import { appendAt, DAY, history, HISTORY_START, partitionOf, today } from '../support/log-history';
import { projectAll } from '../support/seed';
import { startService } from '../support/service';

const ORGS = 3;

interface Side {
  settings: Settings;
  db: DataSource;
  app?: NestFastifyApplication;
  url?: string;
  keys: Map<string, string>;
}

/**
 * Roll-ups: the events of closed partitions folded into per-connection summaries, the partitions
 * detached and dropped; a replay from the summaries and the partitions left answers byte for byte as a
 * replay of the whole log, late events and late duplicates included.
 */
describe('compacting the event log into summaries', () => {
  const env = isolatedEnv('compact');
  const full: Side = { settings: isolatedSettings('compactfull'), db: null as never, keys: new Map() };
  const comp: Side = { settings: isolatedSettings('unused', env), db: null as never, keys: new Map() };
  const days = history({ orgs: ORGS });
  const all = days.flatMap((d) => d.rows);

  const paths = [
    '/v1/connections',
    '/v1/connections?limit=7&offset=3',
    '/v1/connections?label=ghana',
    '/v1/connections?status=inactive',
    '/v1/connections?provider=PAYSTACK',
    '/v1/connections/labels',
    '/v1/connections/conn.3:x',
    '/v1/connections/conn.3:x/stats',
    '/v1/connections/conn.11:x/stats',
  ];

  async function answers(side: Side): Promise<string[]> {
    const out: string[] = [];
    for (let o = 0; o < ORGS; o++)
      for (const p of paths) {
        const res = await fetch(side.url + p, {
          headers: { 'X-Reevit-Key': side.keys.get(`org_${o}`)!, 'X-Org-Id': `org_${o}` },
        });
        out.push(`${o} ${p} ${res.status} ${await res.text()}`);
      }
    return out;
  }

  async function logRows(db: DataSource): Promise<number> {
    return (await db.query(`SELECT count(*)::int AS n FROM event_log`))[0].n;
  }

  beforeAll(async () => {
    for (const side of [full, comp]) {
      side.db = await openDatabase(side.settings);
      await ensureLogPartitions(side.db, { widthDays: 1, aheadDays: 3 }, { from: today - 4 * DAY });
      for (const d of days) await appendAt(side.db, d.rows, d.recordedAt);
    }
  });

  afterAll(async () => {
    for (const side of [full, comp]) {
      await side.app?.close();
      await side.db?.destroy();
      await dropIsolated(side.settings);
    }
  });

  it('leaves a partition alone until every live or building generation has read past it', async () => {
    const outcome = await compactLog(comp.db, {
      generationsBehind: generationsBehindLogTable,
      before: today - 3 * DAY,
      drop: false,
    });
    expect(outcome.compacted).toEqual([]);
    expect(outcome.skipped).toEqual([
      {
        name: partitionOf(today - 4 * DAY),
        reason: expect.stringContaining('not yet projected by read-model generation 1'),
      },
    ]);
    expect(await logRows(comp.db)).toBe(6000);
    // The fold is kept for the next run; nothing was swapped in.
    expect((await readSummarySet(comp.db, COMPACTING))?.events).toBe(1200);
    expect(await readSummarySet(comp.db, COMPACTED)).toBeNull();
  });

  it('folds closed partitions into summaries, resumes an interrupted fold, detaches and drops them', async () => {
    await projectAll(new Projection(comp.db, 1, null, 1000));
    const first = await compactLog(comp.db, {
      generationsBehind: generationsBehindLogTable,
      before: today - 3 * DAY,
      drop: false,
    });
    expect(first.compacted).toEqual([{ name: partitionOf(today - 4 * DAY), rows: 1200 }]);
    expect(first.summaries).toMatchObject({ events: 1200, partitions: [partitionOf(today - 4 * DAY)] });
    expect(await logRows(comp.db)).toBe(4800);

    // Interrupted after one batch of the next partition: nothing swapped in, the fold kept.
    let batches = 0;
    const stopped = await compactLog(comp.db, {
      generationsBehind: generationsBehindLogTable,
      before: today - DAY,
      drop: true,
      batchSize: 500,
      shouldStop: () => batches++ >= 1,
    });
    expect(stopped).toMatchObject({ stopped: true, compacted: [], dropped: [] });
    expect((await readSummarySet(comp.db, COMPACTING))?.events).toBe(500);

    // One run at a time, across processes.
    await withLogMaintenanceLock(comp.db, async () => {
      await expect(
        compactLog(comp.db, { generationsBehind: generationsBehindLogTable, before: today - DAY, drop: true }),
      ).rejects.toBeInstanceOf(LogMaintenanceBusy);
    });
    const progress: number[] = [];
    const done = await compactLog(comp.db, {
      generationsBehind: generationsBehindLogTable,
      before: today - DAY,
      drop: true,
      batchSize: 500,
      progress: (n) => progress.push(n),
    });
    expect(done.compacted).toEqual([
      { name: partitionOf(today - 3 * DAY), rows: 1200 },
      { name: partitionOf(today - 2 * DAY), rows: 1200 },
    ]);
    expect(progress[progress.length - 1]).toBe(2400);
    expect(done.dropped).toEqual([
      partitionOf(today - 4 * DAY),
      partitionOf(today - 3 * DAY),
      partitionOf(today - 2 * DAY),
    ]);
    expect(done.skipped).toEqual([]); // yesterday's partition ends after --before
    expect(done.summaries).toMatchObject({ events: 3600 });
    expect(await readSummarySet(comp.db, COMPACTING)).toBeNull();
    expect(await logRows(comp.db)).toBe(2400);
    const states = Object.fromEntries(
      (await readLogPartitions(comp.db)).map((p) => [p.name, [p.state, p.table, p.rows]]),
    );
    expect(states[partitionOf(today - 4 * DAY)]).toEqual(['compacted', 'dropped', 1200]);
    expect(states[partitionOf(today - DAY)]).toEqual(['closed', 'attached', null]);
    // Every event id is still known.
    expect((await comp.db.query(`SELECT count(*)::int AS n FROM event_log_ids`))[0].n).toBe(6000);
  });

  it('answers byte for byte as a replay of the whole log, with a late event and a late duplicate after compaction', async () => {
    const late: SourcedEvent[] = [
      // a call in a minute whose partition was compacted, older than stream time: counted, outside the window
      {
        event: callEvent(
          'late-call-1',
          HISTORY_START + 3600_000,
          { outcome: 'failure', error_code: 'timeout' },
          at('conn.3:x'),
        ),
        source: src(1),
      },
      // a call inside the current health window
      {
        event: callEvent('late-call-2', HISTORY_START + 3 * 3600_000 - 120_000, { latency_ms: 4000 }, at('conn.3:x')),
        source: src(2),
      },
      // an older configuration: loses every register, but moves created_at earlier
      {
        event: configuredEvent('late-config', HISTORY_START - 3600_000, { provider: 'stripe' }, at('conn.11:x')),
        source: src(3),
      },
      // a re-send of an event whose partition was compacted and dropped, and of one still in the log
      { event: all[5].event, source: src(4) },
      { event: all[5999].event, source: src(5) },
    ];
    for (const side of [full, comp]) {
      const outcome = await new ConnectionStreams(side.db, side.settings).record(late);
      expect(outcome).toMatchObject({ appended: 3, duplicates: 2 });
    }
    await projectAll(new Projection(comp.db, 1, null, 1000));
    const lines: string[] = [];
    const rebuilt = await replay(comp.db, null, { batchSize: 700, shouldStop: () => false, log: (l) => lines.push(l) });
    expect(lines[0]).toContain('from the summaries of 3 compacted partition(s) (3600 events');
    const whole = await replay(full.db, null, { batchSize: 700, shouldStop: () => false, log: () => undefined });
    expect(rebuilt.eventsApplied).toBe(6003);
    expect(whole.eventsApplied).toBe(6003);

    for (const side of [full, comp]) {
      ({ app: side.app, url: side.url } = await startService(ApiModule, side.settings));
      const store = new ApiKeyStore(side.db);
      for (let o = 0; o < ORGS; o++)
        side.keys.set(`org_${o}`, (await store.create(`org_${o}`, ['connections:read'], 'test')).key);
    }
    const expected = await answers(full);
    expect(expected.filter((a) => a.includes(' 200 ')).length).toBeGreaterThanOrEqual(ORGS * 6);
    expect(expected.join('\n')).toContain('"created_at":"2026-11-24T07:00:00.000Z"'); // the late configuration
    expect(await answers(comp)).toEqual(expected);
    const [a, b] = await Promise.all(
      [full, comp].map((s) =>
        s.db.query(`SELECT stream_time, events_applied FROM projection_progress WHERE status = 'live'`),
      ),
    );
    expect(b).toEqual(a);
  });

  it('lists compacted partitions and compacts from the command line (npm run ops -- log compact)', async () => {
    const help = (await runOps(env, 'log', 'compact', '--help')).stdout;
    expect(help).toContain('--before <date>');
    expect(help).toContain('--drop');
    const nothing = JSON.parse(
      (await runOps(env, 'log', 'compact', '--before', new Date(today - DAY).toISOString(), '--drop', '--json')).stdout,
    );
    expect(nothing).toMatchObject({ compacted: [], dropped: [], skipped: [], stopped: false });
    expect(nothing.summaries).toMatchObject({
      events: 3600,
      partitions: [partitionOf(today - 4 * DAY), partitionOf(today - 3 * DAY), partitionOf(today - 2 * DAY)],
    });
    const listed = JSON.parse((await runOps(env, 'log', 'partitions', '--json')).stdout);
    expect(listed.partitions.find((p: { name: string }) => p.name === partitionOf(today - 2 * DAY))).toMatchObject({
      state: 'compacted',
      table: 'dropped',
      rows: 1200,
      bytes: 0,
    });
    expect(listed.summaries.connections).toBeGreaterThan(50);
    // Yesterday's partition, now that the new generation has read it.
    const text = (await runOps(env, 'log', 'compact', '--before', new Date(today).toISOString().slice(0, 10))).stdout;
    expect(text).toMatch(new RegExp(`compacted 1 partition\\(s\\) \\(\\d+ events\\): ${partitionOf(today - DAY)}`));
    expect(text).toContain('summaries: 4 compacted partition(s)');
  });

  it('compacts and drops what is older than LOG_RETAIN_DAYS on the writer schedule, one instance at a time', async () => {
    const settings = isolatedSettings('retain', { LOG_RETAIN_DAYS: '2' });
    const db = await openDatabase(settings);
    try {
      await ensureLogPartitions(db, { widthDays: 1, aheadDays: 3 }, { from: today - 4 * DAY });
      for (const d of days) await appendAt(db, d.rows, d.recordedAt);
      await projectAll(new Projection(db, 1, null, 1000));
      const writers = [new LogMaintenance(db, settings), new LogMaintenance(db, settings)];
      await Promise.all(writers.map((w) => w.tick()));
      const states = (await readLogPartitions(db)).filter((p) => p.to <= today);
      // Ranges that ended more than 2 days ago: compacted and dropped, once.
      expect(states.map((p) => [p.name, p.state, p.table])).toEqual([
        [partitionOf(today - 4 * DAY), 'compacted', 'dropped'],
        [partitionOf(today - 3 * DAY), 'compacted', 'dropped'],
        [partitionOf(today - 2 * DAY), 'closed', 'attached'],
        [partitionOf(today - DAY), 'closed', 'attached'],
      ]);
      expect(await readSummarySet(db, COMPACTED)).toMatchObject({ events: 2400 });
      for (const w of writers) await w.onApplicationShutdown();
    } finally {
      await db.destroy();
      await dropIsolated(settings);
    }
  });
});

function at(connectionId: string): { orgId: string; connectionId: string } {
  return { orgId: 'org_1', connectionId };
}

function src(offset: number): SourcedEvent['source'] {
  return { topic: 'psp.calls', partition: 0, offset: String(offset) };
}
