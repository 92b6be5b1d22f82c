/**
 * npm run bench:history [-- --connections 10000] [--days 30] [--events 3000000] [--keep-days 2]
 *                          [--bursts 5] [--burst-ms 1000] [--pause-ms 9000] [--ingest-batch 1000]
 *                          [--batch 50000] [--profile] [--quick]
 *
 * History, measured (issue 19, item 6): a log of EVENTS events spread over DAYS days of event time
 * across CONNECTIONS connections (orgs of 10), one partition a day, compacted but for the last
 * KEEP-DAYS days. In one isolated run (own database, bench/support/harness IsolatedRun):
 *   1. seed: every day's events (test/support/seed.ts mixedEvents, deletions left out, event times
 *      spread over that day) by COPY FROM STDIN in 5000-row transactions into that day's partition
 *      (recorded_at in the day, as if appended then; consecutive stream versions), then VACUUM ANALYZE;
 *   2. ingest without compaction: the writer's append path (apps/writer ConnectionStreams.record) in
 *      this process, batches of INGEST-BATCH call events on random connections of the fleet, in
 *      BURSTS bursts of BURST-MS ms, PAUSE-MS ms apart (sampled in bursts so that the events ingested
 *      stay few beside the history: they are in every later measure);
 *   3. replay from the raw log: replay() of libs/read-model (what `npm run ops -- replay` runs, its own
 *      pool of 3) into a new generation, timed;
 *   4. compaction: `ops log compact --before <today − (KEEP-DAYS − 1) days> --drop`, the compiled ops
 *      command line in its own process, timed from spawn to exit; meanwhile the same ingest bursts, one
 *      every BURST-MS + PAUSE-MS ms, the first at once: their rate over step 2's (and step 7's) is
 *      "ingest during compaction";
 *   5. log bytes just before step 4 and just after it: the partitions (attached or detached),
 *      event_log_ids, event_log_streams, and the summaries (log_summary, log_summary_set); also the
 *      history's own (before − the compacted partitions + the summaries: without what step 4 ingested);
 *   6. replay from the summaries: replay() again, now seeded from the compacted summaries and reading
 *      the KEEP-DAYS partitions still in the log (with what steps 2 and 4 appended), timed; its
 *      events_applied must be every event seeded and ingested (nothing lost, nothing twice);
 *   7. ingest without compaction again (BURSTS bursts); the baseline is the mean of steps 2 and 7.
 * --quick: 1,000 connections, 7 days, 200,000 events, 3 bursts of 500 ms 1 s apart (each option can
 * still be given).
 * Both replays are timed by statement (pg Client#query wall time, bench/support/timing-hook); --profile
 * also records their V8 CPU profiles and prints the breakdowns.
 * Prints the results against the targets (replay ≥ 10× faster after compaction, ingest during
 * compaction ≥ 0.7× of without, bytes after ≤ 1/5 of before). Cleans up at the end.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { DataSource } from 'typeorm';
import { ConnectionEvent } from '@psp/domain';
import { replay, ReplayOutcome } from '@psp/read-model';
import {
  COMPACTED,
  COMPACTING,
  createDataSource,
  ensureLogPartitions,
  readLogPartitions,
  readLogSideTables,
  readSummarySet,
} from '@psp/storage';
import { ConnectionStreams, SourcedEvent } from '../apps/writer/src/connection-streams';
import { Progress } from '../apps/ops/src/progress';
import { mixedEvents, seededRandom } from '../test/support/seed';
import {
  args,
  codeVersion,
  CpuAccount,
  fmt,
  fmtInt,
  fmtMb,
  IsolatedRun,
  machine,
  machineJiffies,
  note,
  ROOT,
  runBench,
  say,
  table,
  Ticker,
  useServers,
} from './support/harness';
import { installTiming } from './support/timing-hook';
import { timingRows } from './support/timing';
import { CpuProfile, profileSelf, summariseProfile } from './support/profile';

const DAY = 86_400_000;
const PER_ORG = 10;
const COPY_TX_ROWS = 5000;
const TARGETS = { replaySpeedup: 10, ingestRatio: 0.7, bytesRatio: 0.2 };

runBench('bench:history', async (register) => {
  const a = args();
  const quick = a.flag('quick');
  const connections = Math.max(PER_ORG, a.num('connections', quick ? 1000 : 10_000));
  const days = Math.max(2, Math.floor(a.num('days', quick ? 7 : 30)));
  const events = a.num('events', quick ? 200_000 : 3_000_000);
  const keepDays = Math.min(days - 1, Math.max(1, Math.floor(a.num('keep-days', 2))));
  const bursts = Math.max(1, Math.floor(a.num('bursts', quick ? 3 : 5)));
  const burstMs = Math.max(100, a.num('burst-ms', quick ? 500 : 1000));
  const pauseMs = a.num('pause-ms', quick ? 1000 : 9000);
  const ingestBatch = Math.max(1, a.num('ingest-batch', 1000));
  const batchSize = a.num('batch', 50000);
  const profile = a.flag('profile');
  const profileDir = profile ? mkdtempSync(join(tmpdir(), 'psp-bench-history-')) : '';
  const timing = installTiming();
  const orgs = Math.ceil(connections / PER_ORG);
  const benchStarted = performance.now();

  await useServers();
  const run = new IsolatedRun('benchhistory');
  register(run);
  const s = run.settings;
  const db = await run.openDatabase();
  say(
    `bench:history — ${fmtInt(events)} events over ${days} days of event time across ${fmtInt(orgs * PER_ORG)} connections ` +
      `(${fmtInt(orgs)} orgs of ${PER_ORG}), compaction of all but the last ${keepDays} day(s)`,
  );
  say();
  table([['machine', ''], ...(await machine(db, s.redisUrl))], { alignNumbers: false });
  say();

  // 1. Seed, a partition a day: the oldest day `days - 1` days before today, the last one today.
  const today = Math.floor(Date.now() / DAY) * DAY;
  const firstDay = today - (days - 1) * DAY;
  await ensureLogPartitions(db, { widthDays: 1, aheadDays: 3 }, { from: firstDay });
  const client = new Client({ connectionString: s.databaseUrl, application_name: 'psp-bench-seed' });
  await client.connect();
  run.onCleanup('close seed connection', () => client.end());
  const seedStarted = performance.now();
  let seeded = 0;
  let seedDay = 0;
  const seedTicker = new Ticker(
    () =>
      `seed: day ${seedDay + 1}/${days}, ${fmtInt(seeded)}/${fmtInt(events)} events (${fmtInt(seeded / ((performance.now() - seedStarted) / 1000))}/s)`,
  ).start();
  const versions = new Map<string, number>();
  const now = Date.now();
  for (seedDay = 0; seedDay < days; seedDay++) {
    // Event time: day k of the `days` days ending now; recorded_at: in day k's partition.
    const eventDayStart = now - (days - seedDay) * DAY;
    const partitionDay = firstDay + seedDay * DAY;
    const recordedAt = seedDay === days - 1 ? now - 1000 : partitionDay + 12 * 3600_000;
    const want = Math.floor(events / days) + (seedDay === days - 1 ? events % days : 0);
    const dayEvents = eventsOfDay(seedDay, want, orgs, eventDayStart);
    for (let i = 0; i < dayEvents.length; i += COPY_TX_ROWS) {
      let text = '';
      for (const e of dayEvents.slice(i, i + COPY_TX_ROWS)) {
        const key = `${e.orgId}:${e.connectionId}`;
        const v = (versions.get(key) ?? 0) + 1;
        versions.set(key, v);
        text +=
          `${e.eventId}\t${e.orgId}\t${e.connectionId}\t${v}\t${e.type}\t${new Date(e.occurredAt).toISOString()}\t` +
          `${copyText(JSON.stringify(e.data))}\tseed\t0\t${seeded}\t${new Date(recordedAt).toISOString()}\n`;
        seeded++;
      }
      await pipeline(
        Readable.from([text]),
        client.query(
          copyFrom(
            `COPY event_log (event_id, org_id, connection_id, stream_version, type, occurred_at, data, source_topic, source_partition, source_offset, recorded_at) FROM STDIN`,
          ),
        ),
      );
    }
  }
  seedDay = days - 1;
  seedTicker.stop();
  const seedSeconds = (performance.now() - seedStarted) / 1000;
  note('VACUUM ANALYZE');
  await client.query('VACUUM ANALYZE');
  await waitForXmin(db);

  // 2. Ingest without compaction.
  const ingestDb = await createDataSource(s.databaseUrl, {
    poolSize: 3,
    applicationName: 'psp-bench-ingest',
  }).initialize();
  run.onCleanup('close ingest pool', () => ingestDb.destroy());
  const ingest = new Ingest(new ConnectionStreams(ingestDb, s), orgs, ingestBatch);
  const cpuBefore = new CpuAccount(db, run.databaseName);
  await cpuBefore.start();
  const before = await ingest.bursts('ingest without compaction (before)', burstMs, pauseMs, (n) => n >= bursts);
  await cpuBefore.stop();
  await waitForXmin(db);

  // 3. Replay from the raw log, as `npm run ops -- replay` (its own pool of 3).
  const replayDb = await createDataSource(s.databaseUrl, {
    poolSize: 3,
    applicationName: 'psp-connections-ops',
  }).initialize();
  run.onCleanup('close replay pool', () => replayDb.destroy());
  const raw = await timedReplay(replayDb, 'replay from the raw log', batchSize, timing, profileDir);
  if (raw.outcome.eventsApplied !== seeded + ingest.total)
    throw new Error(
      `the raw replay applied ${raw.outcome.eventsApplied} events, ${seeded + ingest.total} were logged (seeded and ingested)`,
    );

  // 4-5. The compaction, with ingest beside it; the bytes around it.
  const partitions = await readLogPartitions(db);
  const compactBefore = today - (keepDays - 1) * DAY;
  const toCompact = partitions.filter((p) => p.to <= compactBefore && p.table === 'attached');
  const compactedBytes = toCompact.reduce((n, p) => n + p.bytes, 0);
  const bytesBefore = await logBytes(db);
  const cutoff = new Date(compactBefore).toISOString().slice(0, 10);
  note(`ops log compact --before ${cutoff} --drop (${toCompact.length} partitions), with ingest bursts beside it`);
  const jiffiesAt = machineJiffies();
  const compactor = runCompaction(run.env, cutoff);
  const cpuDuring = new CpuAccount(db, run.databaseName);
  cpuDuring.track('ops log compact (its Node.js process)', compactor.pid);
  await cpuDuring.start();
  const compaction = compactor.done;
  let compactionDone = false;
  void compaction.finally(() => (compactionDone = true));
  let folded = 0;
  const poll = setInterval(() => {
    void Promise.all([readSummarySet(db, COMPACTING), readSummarySet(db, COMPACTED)])
      .then(([c, d]) => (folded = (c?.events ?? 0) + (d?.events ?? 0)))
      .catch(() => undefined);
  }, 1000);
  const toFold = toCompact.length * Math.floor(seeded / days);
  const during = await ingest.bursts(
    'ingest during compaction',
    burstMs,
    pauseMs,
    () => compactionDone,
    () => `; compaction: ${fmtInt(folded)}/~${fmtInt(toFold)} events folded`,
  );
  clearInterval(poll);
  const compacted = await compaction;
  await cpuDuring.stop();
  const jiffies = machineJiffies();
  const busyCores = ((jiffies.busy - jiffiesAt.busy) / Math.max(1, jiffies.total - jiffiesAt.total)) * nproc();
  if (compacted.code !== 0)
    throw new Error(`ops log compact exited with ${compacted.code}:\n${compacted.output.slice(-2000)}`);
  const bytesAfter = await logBytes(db);
  const historyAfter = bytesBefore.total - compactedBytes + (bytesAfter.summaries - bytesBefore.summaries);
  const summaries = await readSummarySet(db, COMPACTED);
  const foldedEvents = summaries?.events ?? 0;
  // What autovacuum would leave of the summaries: the fold rewrites each summary once per batch.
  await db.query(`VACUUM log_summary, log_summary_set`);
  const summariesVacuumed = (await logBytes(db)).summaries;
  const [{ live }]: { live: string }[] = await db.query(
    `SELECT coalesce(sum(pg_column_size(m.*)), 0)::text AS live FROM log_summary m`,
  );
  // What-if (not what the app does): the summaries' table rewritten, as a compaction that left no dead rows would leave it.
  await db.query(`VACUUM FULL log_summary`);
  const summariesRewritten = (await logBytes(db)).summaries;

  // 6. Replay from the summaries and the partitions left.
  await waitForXmin(db);
  const fromSummaries = await timedReplay(replayDb, 'replay from the summaries', batchSize, timing, profileDir);
  const ingestedBefore = ingest.total;
  const expected = seeded + ingestedBefore;
  if (fromSummaries.outcome.eventsApplied !== expected)
    throw new Error(
      `the replay from the summaries applied ${fromSummaries.outcome.eventsApplied} events, ${expected} were logged (seeded and ingested)`,
    );
  const rows: { n: string }[] = await db.query(
    `SELECT count(*)::text AS n FROM connection_read_model WHERE generation = $1`,
    [fromSummaries.outcome.generation],
  );

  // 7. Ingest without compaction again.
  const after = await ingest.bursts('ingest without compaction (after)', burstMs, pauseMs, (n) => n >= bursts);
  const baseline = (before.rate + after.rate) / 2;

  const speedup = raw.seconds / fromSummaries.seconds;
  const ratio = during.rate / baseline;
  const bytesRatio = historyAfter / bytesBefore.total;
  const rewrittenAfter = historyAfter - bytesAfter.summaries + summariesRewritten;
  say();
  say(
    `results (${fmtInt(seeded)} events, ${days} days, ${fmtInt(orgs * PER_ORG)} connections, ${toCompact.length} partitions compacted; code ${codeVersion()})`,
  );
  say();
  table([
    ['measure', 'seconds', 'events', 'events/s'],
    [
      'seed: COPY FROM STDIN, 5000-row transactions (setup)',
      fmt(seedSeconds, 1),
      fmtInt(seeded),
      fmtInt(seeded / seedSeconds),
    ],
    [
      `REPLAY from the raw log (generation ${raw.outcome.generation})`,
      fmt(raw.seconds, 1),
      fmtInt(raw.outcome.eventsApplied),
      fmtInt(raw.outcome.eventsApplied / raw.seconds),
    ],
    [
      `COMPACTION: ops log compact --drop, spawn to exit (${toCompact.length} partitions)`,
      fmt(compacted.seconds, 1),
      fmtInt(foldedEvents),
      fmtInt(foldedEvents / compacted.seconds),
    ],
    [
      `REPLAY from the summaries + ${keepDays} partition(s) (generation ${fromSummaries.outcome.generation})`,
      fmt(fromSummaries.seconds, 1),
      fmtInt(fromSummaries.outcome.eventsApplied),
      '',
    ],
    [
      `ingest without compaction, before (${before.bursts} bursts)`,
      fmt(before.seconds, 1),
      fmtInt(before.events),
      fmtInt(before.rate),
    ],
    [
      `INGEST DURING COMPACTION (${during.bursts} bursts)`,
      fmt(during.seconds, 1),
      fmtInt(during.events),
      fmtInt(during.rate),
    ],
    [
      `ingest without compaction, after (${after.bursts} bursts)`,
      fmt(after.seconds, 1),
      fmtInt(after.events),
      fmtInt(after.rate),
    ],
  ]);
  say();
  table([
    ['bytes', 'just before compaction', 'just after'],
    ['partitions (attached or detached, not dropped)', fmtMb(bytesBefore.partitions), fmtMb(bytesAfter.partitions)],
    ['event_log_ids (every id, kept forever)', fmtMb(bytesBefore.ids), fmtMb(bytesAfter.ids)],
    ['event_log_streams', fmtMb(bytesBefore.streams), fmtMb(bytesAfter.streams)],
    ['summaries (log_summary, log_summary_set)', fmtMb(bytesBefore.summaries), fmtMb(bytesAfter.summaries)],
    ['TOTAL', fmtMb(bytesBefore.total), fmtMb(bytesAfter.total)],
    ['without event_log_ids', fmtMb(bytesBefore.total - bytesBefore.ids), fmtMb(bytesAfter.total - bytesAfter.ids)],
    [
      `HISTORY: before − the ${toCompact.length} compacted partitions + the summaries (without the ${fmtInt(during.events)} events ingested meanwhile)`,
      fmtMb(bytesBefore.total),
      fmtMb(historyAfter),
    ],
    ['same, without event_log_ids', fmtMb(bytesBefore.total - bytesBefore.ids), fmtMb(historyAfter - bytesBefore.ids)],
  ]);
  say();
  table([
    ['detail', 'value'],
    [
      'summaries',
      `${fmtInt(foldedEvents)} events in ${fmtInt(summaries?.connections ?? 0)} connection summaries; ${fmtMb(summariesVacuumed)} after VACUUM (${fmtInt(summariesVacuumed / Math.max(1, summaries?.connections ?? 0))} B per connection), of which live rows ${fmtMb(Number(live))} (${fmtInt(Number(live) / Math.max(1, summaries?.connections ?? 0))} B per connection); WHAT-IF after VACUUM FULL log_summary: ${fmtMb(summariesRewritten)}`,
    ],
    [
      'read model after the second replay',
      `${rows[0].n} connections in generation ${fromSummaries.outcome.generation}`,
    ],
    [
      'events applied by the second replay',
      `${fmtInt(expected)} = ${fmtInt(seeded)} seeded + ${fmtInt(ingestedBefore)} ingested before and during the compaction (checked)`,
    ],
    ['whole bench (seed included)', `${fmt((performance.now() - benchStarted) / 1000, 0)} s`],
    ['machine busy during the compaction', `${fmt(busyCores, 2)} of ${nproc()} cores (everything, all users)`],
  ]);
  say();
  table([
    ['target', 'got', ''],
    [
      `replay after compaction ≥ ${TARGETS.replaySpeedup}× faster than from the raw log`,
      `${fmt(speedup, 1)}× (${fmt(raw.seconds, 1)} s → ${fmt(fromSummaries.seconds, 1)} s)`,
      speedup >= TARGETS.replaySpeedup ? 'PASS' : 'MISS',
    ],
    [
      `ingest during compaction ≥ ${TARGETS.ingestRatio}× of without`,
      `${fmt(ratio, 2)}× (${fmtInt(during.rate)} vs ${fmtInt(baseline)} events/s)`,
      ratio >= TARGETS.ingestRatio ? 'PASS' : 'MISS',
    ],
    [
      'bytes after ≤ 1/5 of before',
      `${fmt(bytesRatio, 3)} (${fmtMb(bytesBefore.total)} → ${fmtMb(historyAfter)}); without event_log_ids ${fmt((historyAfter - bytesBefore.ids) / (bytesBefore.total - bytesBefore.ids), 3)}; WHAT-IF summaries without dead rows ${fmt(rewrittenAfter / bytesBefore.total, 3)}, and without event_log_ids ${fmt((rewrittenAfter - bytesBefore.ids) / (bytesBefore.total - bytesBefore.ids), 3)}`,
      bytesRatio <= TARGETS.bytesRatio ? 'PASS' : 'MISS',
    ],
  ]);
  say();
  say(`ingest without compaction (before): CPU (${fmt(cpuBefore.seconds, 1)} s wall, pauses included):`);
  table(cpuBefore.rows('bench: ingest through ConnectionStreams'));
  say();
  say(`during the compaction: CPU (${fmt(cpuDuring.seconds, 1)} s wall):`);
  table(cpuDuring.rows('bench: ingest through ConnectionStreams'));
  for (const [label, r] of [
    ['replay from the raw log', raw],
    ['replay from the summaries', fromSummaries],
  ] as const) {
    say();
    say(`${label}: where the wall time goes (pg Client#query wall time by statement, ${fmt(r.seconds, 1)} s):`);
    table(timingRows(r.stats));
    if (r.cpuProfile) summariseProfile(r.cpuProfile, { title: `${label}: CPU profile (${r.profileFile})`, top: 12 });
  }
});

/**
 * The events of seed day `day`: mixedEvents (the fleet's configurations on the first day only),
 * without deletions, event times spread over the day (mixedEvents spreads them over 3 hours).
 */
function eventsOfDay(day: number, count: number, orgs: number, dayStart: number): ConnectionEvent[] {
  const configured = orgs * PER_ORG;
  const want = Math.ceil(count * 1.02) + 10;
  const generated = mixedEvents({
    orgs,
    connections: PER_ORG,
    events: want + (day === 0 ? 0 : configured),
    seed: 2000 + day,
    start: dayStart,
  });
  return (day === 0 ? generated : generated.slice(configured))
    .filter((e) => e.type !== 'connection.deleted')
    .slice(0, count)
    .map((e) => ({ ...e, occurredAt: dayStart + (e.occurredAt - dayStart) * 8 }));
}

/** A value in COPY's text format. */
function copyText(value: string): string {
  return /[\\\t\n\r]/.test(value)
    ? value.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'))
    : value;
}

function nproc(): number {
  return availableParallelism();
}

/** The projection reads the log below the cluster's xmin: wait (untimed) until it has passed every write. */
async function waitForXmin(db: DataSource): Promise<void> {
  const started = Date.now();
  for (;;) {
    const r: { ok: boolean }[] = await db.query(
      `SELECT (SELECT max(transaction_id) FROM event_log) < pg_snapshot_xmin(pg_current_snapshot()) AS ok`,
    );
    if (r[0].ok) return;
    if (Date.now() - started > 120000)
      throw new Error('a transaction elsewhere on the PostgreSQL server stayed open for 2 minutes');
    await new Promise((res) => setTimeout(res, 50));
  }
}

async function timedReplay(
  db: DataSource,
  label: string,
  batchSize: number,
  timing: ReturnType<typeof installTiming>,
  profileDir: string,
): Promise<{
  seconds: number;
  outcome: ReplayOutcome;
  stats: ReturnType<ReturnType<typeof installTiming>['snapshot']>;
  cpuProfile: CpuProfile | null;
  profileFile: string;
}> {
  const profileFile = profileDir === '' ? '' : join(profileDir, `${label.replace(/\W+/g, '-')}.cpuprofile`);
  const stopProfile = profileFile === '' ? null : await profileSelf(profileFile);
  timing.reset();
  const started = performance.now();
  const outcome = await replay(db, null, {
    batchSize,
    shouldStop: () => false,
    log: (line) => note(`${label}: ${line}`),
    progress: new Progress(label),
  });
  const seconds = (performance.now() - started) / 1000;
  const stats = timing.snapshot();
  const cpuProfile = stopProfile ? await stopProfile() : null;
  if (!outcome.switched) throw new Error(`${label} did not finish: ${JSON.stringify(outcome)}`);
  return { seconds, outcome, stats, cpuProfile, profileFile };
}

interface LogBytes {
  partitions: number;
  ids: number;
  streams: number;
  summaries: number;
  total: number;
}

/** What the log holds on disk: its attached and detached partitions, side tables and summaries. */
async function logBytes(db: DataSource): Promise<LogBytes> {
  const partitions = (await readLogPartitions(db)).reduce((n, p) => n + p.bytes, 0);
  const side = await readLogSideTables(db);
  const [{ bytes }]: { bytes: string }[] = await db.query(
    `SELECT (pg_total_relation_size('log_summary') + pg_total_relation_size('log_summary_set'))::text AS bytes`,
  );
  const summaries = Number(bytes);
  return {
    partitions,
    ids: side.ids.bytes,
    streams: side.streams.bytes,
    summaries,
    total: partitions + side.ids.bytes + side.streams.bytes + summaries,
  };
}

/** `ops log compact --before DATE --drop`, the compiled command line in its own process. */
function runCompaction(
  env: Record<string, string>,
  before: string,
): { pid: number; done: Promise<{ code: number | null; seconds: number; output: string }> } {
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [
      '-r',
      join(ROOT, 'scripts', 'register-paths.js'),
      join(ROOT, 'dist', 'apps', 'ops', 'src', 'main.js'),
      'log',
      'compact',
      '--before',
      before,
      '--drop',
    ],
    { cwd: ROOT, env: { ...process.env, ...env, CI: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return {
    pid: child.pid!,
    done: new Promise((resolve) =>
      child.once('exit', (code) => resolve({ code, seconds: (performance.now() - started) / 1000, output })),
    ),
  };
}

/**
 * The writer's append path (ConnectionStreams.record) fed call events, one batch after the other, in
 * bursts: a burst's events and seconds count, the pauses between them do not.
 */
class Ingest {
  total = 0;
  private offset = 0;
  private readonly rnd = seededRandom(99);

  constructor(
    private readonly streams: ConnectionStreams,
    private readonly orgs: number,
    private readonly batch: number,
  ) {}

  /** Bursts of `burstMs`, `pauseMs` apart (the first at once), until `done(bursts so far)`. */
  async bursts(
    label: string,
    burstMs: number,
    pauseMs: number,
    done: (bursts: number) => boolean,
    extra: () => string = () => '',
  ): Promise<{ seconds: number; events: number; rate: number; bursts: number }> {
    let events = 0;
    let busy = 0;
    let bursts = 0;
    const ticker = new Ticker(
      () =>
        `${label}: ${bursts} bursts, ${fmtInt(events)} events (${fmtInt(events / Math.max(busy, 1e-3))}/s)${extra()}`,
    ).start();
    while (!done(bursts)) {
      const started = performance.now();
      // A burst ends early when `done` turns true (the compaction ended): only time beside it counts.
      while (performance.now() - started < burstMs && !done(bursts)) {
        const outcome = await this.streams.record(this.nextBatch());
        events += outcome.appended;
      }
      busy += (performance.now() - started) / 1000;
      bursts++;
      const pauseUntil = performance.now() + pauseMs;
      while (!done(bursts) && performance.now() < pauseUntil) await new Promise((r) => setTimeout(r, 50));
    }
    ticker.stop();
    this.total += events;
    return { seconds: busy, events, rate: events / busy, bursts };
  }

  private nextBatch(): SourcedEvent[] {
    const now = Date.now();
    const out: SourcedEvent[] = [];
    for (let i = 0; i < this.batch; i++) {
      const fail = this.rnd() < 0.1;
      out.push({
        event: {
          eventId: randomUUID(),
          type: 'psp.call.completed',
          orgId: `org_${Math.floor(this.rnd() * this.orgs)}`,
          connectionId: `conn.${Math.floor(this.rnd() * PER_ORG)}:x`,
          occurredAt: now - Math.floor(this.rnd() * 60_000),
          data: fail
            ? { outcome: 'failure', latency_ms: Math.floor(this.rnd() * 5000), error_code: 'timeout' }
            : { outcome: 'success', latency_ms: Math.floor(this.rnd() * 4000) },
        },
        source: { topic: 'bench', partition: 0, offset: String(this.offset++) },
      });
    }
    return out;
  }
}
