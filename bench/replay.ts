/**
 * npm run bench:replay [-- --events N] [--orgs 10] [--connections 20] [--batch 50000 (as npm run ops -- replay)] [--profile] [--what-if]
 *
 * Event log → read model rebuild speed. In one isolated run (own database and Redis prefix):
 *   1. seeds event_log with N events (test/support/seed.ts mixedEvents: orgs × connections streams,
 *      ~85% calls, validations, status/label changes; deletions left out, see eventChunks) by COPY FROM STDIN, in transactions of
 *      5000 rows as the writer's batches would be, with consecutive stream versions; then VACUUM ANALYZE
 *      (what autovacuum would have done to a log that old);
 *   2. ceiling: PostgreSQL reading the same events out in log order,
 *      COPY (SELECT <the columns readLogAfter reads> FROM event_log ORDER BY transaction_id, position) TO STDOUT
 *      (twice; the faster counts);
 *   3. reference: the projection's own read path alone (readLogAfter in batches, parsed, no projecting);
 *   4. replay() of libs/read-model/src/replay.ts, compiled, into a new generation (Redis included, as
 *      `npm run ops -- replay` does), timed end to end, with every query's wall time by statement;
 *   5. what-if (only with --what-if): steps 3 and 4 again with readLogAfter's ORDER BY qualified
 *      (event_log.transaction_id), the SQL rewritten at run time in this process (see orderFix): what
 *      the one-line fix would give. The app's source is not changed. Since 9f0de9d readLogAfter has
 *      that fix, so the rewrite no longer matches and the what-if is off by default (it would re-run
 *      the same SQL under a what-if label); it refuses to run if the rewrite changes nothing.
 * --profile records V8 CPU profiles of the replays and prints the breakdowns. Cleans up at the end.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Client } from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { ConnectionEvent } from '@psp/domain';
import { createRedis, RedisReadModel, replay } from '@psp/read-model';
import { createDataSource, LOG_START, LogPosition, readLogAfter } from '@psp/storage';
import { mixedEvents } from '../test/support/seed';
import { Progress } from '../apps/ops/src/progress';
import { DataSource } from 'typeorm';
import {
  args,
  codeVersion,
  CpuAccount,
  fmt,
  fmtInt,
  fmtMb,
  IsolatedRun,
  machine,
  note,
  redisServerPid,
  runBench,
  say,
  table,
  Ticker,
  useServers,
} from './support/harness';
import { installTiming, REWRITES } from './support/timing-hook';
import { timingRows } from './support/timing';
import { profileSelf, summariseProfile } from './support/profile';

const TARGET_RATE = 100000;
const COPY_TX_ROWS = 5000;
const READ_COLUMNS = 'transaction_id, position, event_id, org_id, connection_id, type, occurred_at, data';

runBench('bench:replay', async (register) => {
  const a = args();
  const events = a.num('events', 1_000_000);
  const orgs = a.num('orgs', 10);
  const connections = a.num('connections', 20);
  const batchSize = a.num('batch', 50000);
  const profile = a.flag('profile');
  const whatIf = a.flag('what-if');
  if (whatIf && orderFix(readLogSqlProbe()) === readLogSqlProbe())
    throw new Error(
      '--what-if: the log-order rewrite no longer matches readLogAfter (fixed in 9f0de9d); nothing to compare',
    );

  await useServers();
  const run = new IsolatedRun('benchreplay');
  register(run);
  const s = run.settings;
  const db = await run.openDatabase();
  say(
    `bench:replay — ${fmtInt(events)} events over ${orgs} orgs × ${connections} connections (${fmtInt(orgs * connections)} streams), projection batch ${fmtInt(batchSize)}`,
  );
  say();
  table([['machine', ''], ...(await machine(db, s.redisUrl))], { alignNumbers: false });
  say();

  // 1. Seed by COPY.
  const client = new Client({ connectionString: s.databaseUrl, application_name: 'psp-bench-seed' });
  await client.connect();
  run.onCleanup('close seed connection', () => client.end());
  const seedStarted = performance.now();
  let seeded = 0;
  const seedTicker = new Ticker(
    () =>
      `seed: ${fmtInt(seeded)}/${fmtInt(events)} events (${fmtInt(seeded / ((performance.now() - seedStarted) / 1000))}/s)`,
  ).start();
  const versions = new Map<string, number>();
  const start = Math.floor((Date.now() - 4 * 3600_000) / 60000) * 60000;
  for (const chunk of eventChunks(events, orgs, connections, 50000, start)) {
    for (let i = 0; i < chunk.length; i += COPY_TX_ROWS) {
      const rows = chunk.slice(i, i + COPY_TX_ROWS);
      let text = '';
      for (const e of rows) {
        const key = `${e.orgId}:${e.connectionId}`;
        const v = (versions.get(key) ?? 0) + 1;
        versions.set(key, v);
        text += `${copyText(e.eventId)}\t${copyText(e.orgId)}\t${copyText(e.connectionId)}\t${v}\t${e.type}\t${new Date(e.occurredAt).toISOString()}\t${copyText(JSON.stringify(e.data))}\tseed\t0\t${seeded}\n`;
        seeded++;
      }
      await pipeline(
        Readable.from([text]),
        client.query(
          copyFrom(
            `COPY event_log (event_id, org_id, connection_id, stream_version, type, occurred_at, data, source_topic, source_partition, source_offset) FROM STDIN`,
          ),
        ),
      );
    }
  }
  seedTicker.stop();
  const seedSeconds = (performance.now() - seedStarted) / 1000;
  note('VACUUM ANALYZE event_log');
  await client.query('VACUUM ANALYZE event_log');
  const sizes: { log: string; txs: string }[] = await db.query(
    `SELECT pg_total_relation_size('event_log')::text AS log, (SELECT count(DISTINCT transaction_id) FROM event_log)::text AS txs`,
  );

  // The projection reads only below the cluster's xmin: wait (untimed) until no transaction older than
  // the seed's last one is open anywhere on the server, so neither the read-path reference nor the
  // replay is timed waiting for others (and the reference does not stop early).
  const xminWaitStarted = performance.now();
  for (;;) {
    const r: { ok: boolean }[] = await db.query(
      `SELECT (SELECT max(transaction_id) FROM event_log) < pg_snapshot_xmin(pg_current_snapshot()) AS ok`,
    );
    if (r[0].ok) break;
    if (performance.now() - xminWaitStarted > 120000)
      throw new Error(
        'a transaction elsewhere on the PostgreSQL server stayed open for 2 minutes; the replay cannot read the log below it',
      );
    await new Promise((res) => setTimeout(res, 50));
  }
  const xminWait = (performance.now() - xminWaitStarted) / 1000;

  // 2. Ceiling: COPY TO STDOUT, twice.
  const copies: { seconds: number; bytes: number; rows: number }[] = [];
  for (let i = 0; i < 2; i++) {
    let bytes = 0;
    let rows = 0;
    const t = performance.now();
    const ticker = new Ticker(() => `ceiling COPY TO STDOUT #${i + 1}: ${fmtInt(rows)} rows, ${fmtMb(bytes)}`).start();
    const stream = client.query(
      copyTo(`COPY (SELECT ${READ_COLUMNS} FROM event_log ORDER BY transaction_id, position) TO STDOUT`),
    );
    for await (const buf of stream as AsyncIterable<Buffer>) {
      bytes += buf.length;
      for (let j = buf.indexOf(10); j >= 0; j = buf.indexOf(10, j + 1)) rows++;
    }
    ticker.stop();
    copies.push({ seconds: (performance.now() - t) / 1000, bytes, rows });
    if (rows !== events) throw new Error(`COPY returned ${rows} rows, expected ${events}`);
  }
  const copy = copies.reduce((best, c) => (c.seconds < best.seconds ? c : best));

  // 3. Reference: the projection's read path alone (as written, and with the ORDER BY fix as a what-if).
  const timing = installTiming();
  const readAsIs = await readLoop(db, batchSize, events, 'log read only, readLogAfter as written');
  timing.setRewrite(orderFix);
  const readFixed = whatIf
    ? await readLoop(db, batchSize, events, 'log read only, WHAT-IF ORDER BY event_log.transaction_id')
    : null;
  timing.setRewrite(null);

  // 4. The replay, as `npm run ops -- replay` runs it (its own pool of 3, Redis on); then the what-if.
  const replayDb = await createDataSource(s.databaseUrl, {
    poolSize: 3,
    applicationName: 'psp-connections-ops',
  }).initialize();
  run.onCleanup('close replay pool', () => replayDb.destroy());
  const redis = createRedis(s, 'bench-replay');
  run.onCleanup('disconnect redis', async () => redis.disconnect());
  const redisPid = await redisServerPid(s.redisUrl);
  const profileDir = profile ? mkdtempSync(join(tmpdir(), 'psp-bench-replay-')) : '';

  const runReplay = async (label: string, rewrite: ((sql: string) => string) | null) => {
    const cpu = new CpuAccount(db, run.databaseName);
    cpu.track('Redis server', redisPid);
    await cpu.start();
    const profileFile = join(profileDir, `${label}.cpuprofile`);
    const stopProfile = profile ? await profileSelf(profileFile) : null;
    timing.setRewrite(rewrite);
    timing.reset();
    const started = performance.now();
    const outcome = await replay(replayDb, new RedisReadModel(redis, s.redisKeyPrefix), {
      batchSize,
      shouldStop: () => false,
      log: () => undefined,
      progress: new Progress(`replay (${label})`),
    });
    const seconds = (performance.now() - started) / 1000;
    const stats = timing.snapshot();
    timing.setRewrite(null);
    const cpuProfile = stopProfile ? await stopProfile() : null;
    await cpu.stop();
    if (!outcome.switched || outcome.eventsApplied !== events)
      throw new Error(`replay (${label}) did not finish: ${JSON.stringify(outcome)}`);
    const model: { rows: string; listed: string; state: string; doc: string }[] = await db.query(
      `SELECT count(*)::text AS rows, count(*) FILTER (WHERE listed)::text AS listed,
              round(avg(coalesce(length(packed_state), length(state::text))))::text AS state, round(avg(length(document)))::text AS doc
         FROM connection_read_model WHERE generation = $1`,
      [outcome.generation],
    );
    return { label, seconds, outcome, cpu, stats, cpuProfile, profileFile, model: model[0] };
  };
  const asIs = await runReplay('as written', null);
  const fixed = whatIf ? await runReplay('WHAT-IF ORDER BY fix', orderFix) : null;

  const rate = events / asIs.seconds;
  const copyRate = copy.rows / copy.seconds;
  const row = (label: string, seconds: number) => [
    label,
    fmt(seconds, 1),
    fmtInt(events / seconds),
    fmt(events / seconds / copyRate, 3),
  ];
  say();
  say(
    `results (${fmtInt(events)} events, ${fmtInt(orgs * connections)} streams, projection batch ${fmtInt(batchSize)}; code ${codeVersion()})`,
  );
  say();
  table([
    ['measure', 'seconds', 'events/s', 'vs ceiling'],
    ['seed: COPY FROM STDIN in 5000-row transactions (setup)', fmt(seedSeconds, 1), fmtInt(events / seedSeconds), ''],
    [
      `CEILING: COPY (SELECT … ORDER BY transaction_id, position) TO STDOUT (best of ${copies.map((c) => fmt(c.seconds, 2)).join(' / ')} s)`,
      fmt(copy.seconds, 2),
      fmtInt(copyRate),
      '1.000',
    ],
    row(`log read only: readLogAfter loop as written, batches of ${batchSize}`, readAsIs),
    ...(readFixed === null
      ? []
      : [row('log read only, WHAT-IF: ORDER BY event_log.transaction_id, event_log.position', readFixed)]),
    row('REPLAY: replay() into a new generation, Redis on (as written)', asIs.seconds),
    ...(fixed === null
      ? []
      : [row('replay, WHAT-IF: same with the ORDER BY fix (SQL rewritten at run time)', fixed.seconds)]),
  ]);
  say();
  table([
    ['detail', 'value'],
    [
      'event_log size (table + indexes)',
      `${fmtMb(Number(sizes[0].log))}, ${fmtInt(Number(sizes[0].txs))} writing transactions`,
    ],
    ['COPY output', `${fmtMb(copy.bytes)}, ${fmtInt(copy.rows)} rows`],
    [
      'read model written',
      `generation ${asIs.outcome.generation}: ${asIs.model.rows} connections (${asIs.model.listed} listed)`,
    ],
    [
      'per connection row (rewritten on every step that touches it)',
      `state JSON ${fmtInt(Number(asIs.model.state))} chars, document ${fmtInt(Number(asIs.model.doc))} chars (averages)`,
    ],
    ['projection steps', `${fmtInt(Math.ceil(events / batchSize) + 1)} per replay (one transaction each)`],
    ['untimed wait before the timed phases for the cluster xmin to pass the seed', `${fmt(xminWait, 1)} s`],
  ]);
  for (const r of [asIs, fixed]) {
    if (!r) continue;
    say();
    say(`replay (${r.label}): CPU (${fmt(r.cpu.seconds, 1)} s wall):`);
    table(r.cpu.rows('bench: replay() + Projection'));
    say();
    say(`replay (${r.label}): where the wall time goes (pg Client#query wall time by statement):`);
    table(timingRows(r.stats));
  }
  say();
  table([
    ['target', 'got', ''],
    [
      'replay ≥ 100,000 events/s',
      `${fmtInt(rate)} events/s (${fmt((100 * rate) / copyRate, 1)}% of the COPY ceiling)`,
      rate >= TARGET_RATE ? 'PASS' : 'MISS',
    ],
    ...(fixed
      ? [
          [
            '(what-if, with the ORDER BY fix)',
            `${fmtInt(events / fixed.seconds)} events/s`,
            events / fixed.seconds >= TARGET_RATE ? 'would PASS' : 'would still MISS',
          ],
        ]
      : []),
  ]);
  for (const r of [asIs, fixed])
    if (r?.cpuProfile)
      summariseProfile(r.cpuProfile, { title: `replay (${r.label}) CPU profile (${r.profileFile})`, top: 12 });
});

/** The one-line what-if (see REWRITES in support/timing-hook): readLogAfter's ORDER BY qualified. */
function orderFix(sql: string): string {
  return REWRITES['log-order'](sql);
}
/** readLogAfter's SQL shape as of 9f0de9d, to check whether the what-if rewrite still applies. */
function readLogSqlProbe(): string {
  return `SELECT e.transaction_id::text AS tx, e.position FROM event_log e
      WHERE (e.transaction_id, e.position) > ($1::xid8, $2::bigint)
      ORDER BY e.transaction_id, e.position LIMIT $3`;
}

/** Reads the whole log with readLogAfter in batches (no projecting); returns the seconds. */
async function readLoop(db: DataSource, batchSize: number, expected: number, label: string): Promise<number> {
  let read = 0;
  const started = performance.now();
  const ticker = new Ticker(
    () => `${label}: ${fmtInt(read)}/${fmtInt(expected)} (${fmtInt(read / ((performance.now() - started) / 1000))}/s)`,
  ).start();
  let at: LogPosition = LOG_START;
  for (;;) {
    const batch = await readLogAfter(db, at, batchSize);
    if (batch.length === 0) break;
    read += batch.length;
    at = batch[batch.length - 1].at;
  }
  ticker.stop();
  if (read !== expected)
    throw new Error(`${label}: read ${read} of ${expected} events (a transaction elsewhere held back the xmin?)`);
  return (performance.now() - started) / 1000;
}

/**
 * mixedEvents in chunks of about `chunk` (bounded memory): the configured events once, then the rest.
 * connection.deleted is left out: at ~1% of a large log it would delete nearly every stream for good
 * (LWW), and a read model of unlisted connections renders no documents, which would flatter the replay.
 */
function* eventChunks(
  total: number,
  orgs: number,
  connections: number,
  chunk: number,
  start: number,
): Generator<ConnectionEvent[]> {
  const configured = orgs * connections;
  let produced = 0;
  for (let k = 0; produced < total; k++) {
    const want = Math.ceil(Math.min(chunk, total - produced) * 1.02) + 10;
    const batch = (
      k === 0
        ? mixedEvents({ orgs, connections, events: want, seed: 1000 + k, start })
        : mixedEvents({ orgs, connections, events: want + configured, seed: 1000 + k, start }).slice(configured)
    ).filter((e) => e.type !== 'connection.deleted');
    const out = batch.slice(0, Math.min(chunk, total - produced));
    produced += out.length;
    yield out;
  }
}

/** A value in COPY's text format. */
function copyText(value: string): string {
  return /[\\\t\n\r]/.test(value)
    ? value.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'))
    : value;
}
