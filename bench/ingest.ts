/**
 * npm run bench:ingest [-- --events N] [--connections 200] [--orgs 10] [--partitions 6] [--batch 5000]
 *                      [--acks -1] [--inflight 4] [--profile] [--what-if logged-ids-join]
 *                      [--writer-node-options=--max-old-space-size=96]
 *
 * Kafka → writer → event_log throughput. In one isolated run (own database, topics, group, Redis prefix):
 *   1. starts the COMPILED writer (dist/apps/writer/src/main.js) and waits until its group is stable;
 *   2. produces `connections` connection.configured events, then N psp.call.completed events over those
 *      connections to the run's calls topic, as fast as possible (batches of --batch, --inflight sends
 *      in flight, acks --acks);
 *   3. times from the first produce to the last durable append (polls max(position) of event_log every
 *      50 ms, then checks count(*)), sampling the writer's RSS (VmRSS; VmHWM at the end) and the CPU of
 *      the writer, PostgreSQL, Kafka and this process;
 *   4. ceiling, same run, same topics: a bare kafkajs consumer (new group, the writer's fetch settings)
 *      that only JSON.parses every message; its rate is timed from its first batch to its last.
 * The writer always runs with bench/support/timing-hook preloaded (wall time of every PostgreSQL query
 * and kafkajs fetch/batch/commit, memory peaks). With --profile it also runs a V8 CPU profiler
 * (bench/support/cpu-profile-hook) and the breakdown is printed. --what-if NAME runs the writer with
 * one of the hook's named SQL rewrites (REWRITES in support/timing-hook; the app's source is unchanged)
 * to measure what a one-query change would give; the results then say so. Everything is deleted at the end (also on Ctrl-C).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompressionTypes, Message } from 'kafkajs';
import { seededRandom } from '../test/support/seed';
import {
  args,
  BenchChild,
  codeVersion,
  CpuAccount,
  fmt,
  fmtInt,
  fmtMb,
  IsolatedRun,
  kafkaBrokerPid,
  machine,
  memoryBytes,
  note,
  ROOT,
  runBench,
  say,
  sleep,
  table,
  Ticker,
  useServers,
} from './support/harness';
import { collectChildProfile, summariseProfile } from './support/profile';
import { collectTiming, memoryLine, timingRows } from './support/timing';

const TARGET_RATE = 20000;
const TARGET_CEILING_SHARE = 1 / 3;
const TARGET_RSS = 300 * 1024 * 1024;

runBench('bench:ingest', async (register) => {
  const a = args();
  const events = a.num('events', 1_000_000);
  const connections = a.num('connections', 200);
  const orgs = Math.min(a.num('orgs', 10), connections);
  const partitions = a.num('partitions', 6);
  const batchSize = a.num('batch', 5000);
  const acks = a.num('acks', -1) as -1 | 1;
  const inflight = Math.max(1, a.num('inflight', 4));
  const profile = a.flag('profile');
  const whatIf = a.str('what-if', '');
  // The same heap bound as `npm run start:writer` (package.json): the writer as it is deployed.
  const WRITER_NODE_OPTIONS = '--max-old-space-size=128';
  const writerNodeOptions = a.str('writer-node-options', WRITER_NODE_OPTIONS);
  const total = events + connections;

  await useServers();
  const run = new IsolatedRun('benchingest', { TOPIC_PARTITIONS: String(partitions), LOG_LEVEL: 'log' });
  register(run);
  const s = run.settings;
  const db = await run.openDatabase();
  say(
    `bench:ingest — ${fmtInt(events)} psp.call.completed + ${connections} connection.configured events, ${partitions} partitions`,
  );
  say();
  table([['machine', ''], ...(await machine(db, s.redisUrl))], { alignNumbers: false });
  say();

  await run.createTopics(partitions);
  const ceilingGroup = `${s.writerGroupId}.ceiling`;
  run.deleteGroupsAtCleanup([s.writerGroupId, ceilingGroup]);

  // 1. The writer, compiled, with the run's environment; the timing hook (and the profiler) preloaded.
  const outDir = mkdtempSync(join(tmpdir(), 'psp-bench-ingest-'));
  const profileFile = join(outDir, 'writer.cpuprofile');
  const timingFile = join(outDir, 'writer-timing.json');
  const hooks = ['timing-hook', ...(profile ? ['cpu-profile-hook'] : [])];
  const writer = run.startCompiled('writer', 'apps/writer/src/main.js', {
    env: {
      BENCH_TIMING: timingFile,
      ...(profile ? { BENCH_CPU_PROFILE: profileFile } : {}),
      ...(whatIf ? { BENCH_SQL_REWRITE: whatIf } : {}),
      ...(writerNodeOptions ? { NODE_OPTIONS: writerNodeOptions } : {}),
    },
    nodeArgs: hooks.flatMap((h) => ['-r', join(ROOT, 'dist', 'bench', 'support', `${h}.js`)]),
  });
  note(`writer started (pid ${writer.pid}); waiting for its consumer group to be stable`);
  await writer.waitFor(/consuming .* as group/, 60000);
  await waitForStableGroup(run, s.writerGroupId, 60000);

  // Sampling: writer RSS every 100 ms; CPU of the processes involved.
  let peakSampledRss = 0;
  const rssTimer = setInterval(() => {
    const rss = memoryBytes(writer.pid, 'VmRSS');
    if (rss !== null && rss > peakSampledRss) peakSampledRss = rss;
  }, 100);
  const cpu = new CpuAccount(db, run.databaseName);
  cpu.track('writer (node, compiled)', writer.pid);
  cpu.track('Kafka broker (JVM)', kafkaBrokerPid());

  // 2. Produce, while polling the log.
  const producer = run.kafkaClient().producer({ allowAutoTopicCreation: false });
  await producer.connect();
  run.onCleanup('disconnect producer', () => producer.disconnect());
  let produced = 0;
  let appended = 0;
  let lastProgressAt = Date.now();
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  let producedAt = 0;
  let appendedAtProduceEnd = 0;
  const ticker = new Ticker(() => {
    const t = elapsed();
    const rss = memoryBytes(writer.pid, 'VmRSS') ?? 0;
    return `ingest ${fmt(t, 1)} s: produced ${fmtInt(produced)}/${fmtInt(total)} (${fmtInt(produced / Math.max(t, 0.001))}/s), appended ${fmtInt(appended)} (${fmtInt(appended / Math.max(t, 0.001))}/s), writer RSS ${fmtMb(rss)}`;
  });
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const rows: { n: string }[] = await db.query(`SELECT coalesce(max(position), 0)::text AS n FROM event_log`);
      const n = Number(rows[0].n);
      if (n > appended) {
        appended = n;
        lastProgressAt = Date.now();
      }
      if (appended >= total) return performance.now();
      await sleep(50);
    }
    return performance.now();
  })();
  poller.catch(() => undefined); // awaited below; keeps an early failure from being an unhandled rejection

  writer.send({ bench: 'reset' });
  await cpu.start();
  ticker.start();
  const started = performance.now();
  const rnd = seededRandom(42);
  const base = Date.now() - 2 * 3600_000;
  const conns = Array.from({ length: connections }, (_, i) => ({ org: `org_${i % orgs}`, conn: `conn_${i}` }));
  await producer.send({
    topic: s.topics.connections,
    acks,
    messages: conns.map(({ org, conn }, i) => ({
      key: `${org}:${conn}`,
      value: JSON.stringify({
        event_id: randomUUID(),
        type: 'connection.configured',
        schema_version: 1,
        org_id: org,
        connection_id: conn,
        occurred_at: new Date(base - 60_000 + i).toISOString(),
        data: {
          provider: 'paystack',
          mode: 'live',
          status: 'active',
          labels: ['ghana', i % 2 ? 'primary' : 'backup'],
          fee_structure: { percentage: 1.5 },
        },
      }),
    })),
  });
  produced += connections;
  const pending = new Set<Promise<unknown>>();
  const span = 2 * 3600_000 - 60_000;
  for (let from = 0; from < events; from += batchSize) {
    const messages: Message[] = [];
    for (let i = from; i < Math.min(events, from + batchSize); i++) {
      const c = conns[Math.floor(rnd() * connections)];
      const fail = rnd() < 0.1;
      messages.push({
        key: `${c.org}:${c.conn}`,
        value: JSON.stringify({
          event_id: randomUUID(),
          type: 'psp.call.completed',
          schema_version: 1,
          org_id: c.org,
          connection_id: c.conn,
          occurred_at: new Date(base + Math.floor((i * span) / events)).toISOString(),
          data: fail
            ? {
                outcome: 'failure',
                latency_ms: Math.floor(rnd() * 5000),
                error_code: rnd() < 0.5 ? 'timeout' : 'card_declined',
              }
            : { outcome: 'success', latency_ms: Math.floor(rnd() * 1500) },
        }),
      });
    }
    const p = producer.send({ topic: s.topics.calls, acks, compression: CompressionTypes.None, messages }).then(() => {
      produced += messages.length;
      pending.delete(p);
    });
    pending.add(p);
    if (pending.size >= inflight) await Promise.race(pending);
    if (writer.exited) throw new Error(`the writer exited (code ${writer.exitCode}):\n${writer.tail()}`);
  }
  await Promise.all(pending);
  producedAt = performance.now();
  appendedAtProduceEnd = appended;

  // 3. Wait for the last durable append.
  for (;;) {
    if (appended >= total) break;
    if (writer.exited) throw new Error(`the writer exited (code ${writer.exitCode}):\n${writer.tail()}`);
    if (Date.now() - lastProgressAt > 60000)
      throw new Error(`no append progress for 60 s (appended ${appended}/${total}):\n${writer.tail()}`);
    await sleep(50);
  }
  let doneAt = await poller;
  polling = false;
  let counted = Number(((await db.query(`SELECT count(*)::text AS n FROM event_log`)) as { n: string }[])[0].n);
  while (counted < total) {
    // max(position) can run ahead of count(*) only if a transaction rolled back; wait for the real count.
    if (Date.now() - lastProgressAt > 60000) throw new Error(`event_log holds ${counted} of ${total} events`);
    await sleep(50);
    const n = Number(((await db.query(`SELECT count(*)::text AS n FROM event_log`)) as { n: string }[])[0].n);
    if (n > counted) lastProgressAt = Date.now();
    counted = n;
    doneAt = performance.now();
  }
  ticker.stop();
  await cpu.stop();
  clearInterval(rssTimer);
  const peakRss = memoryBytes(writer.pid, 'VmHWM') ?? peakSampledRss;
  const seconds = (doneAt - started) / 1000;
  const produceSeconds = (producedAt - started) / 1000;
  const drainSeconds = (doneAt - producedAt) / 1000;
  const rate = total / seconds;
  const drainRate = drainSeconds > 0 ? (total - appendedAtProduceEnd) / drainSeconds : NaN;

  const txStats: { txs: string; avg: string; max: string; min: string; insert_s: string; snapshots: string }[] =
    await db.query(
      `SELECT count(*)::text AS txs, round(avg(n))::text AS avg, max(n)::text AS max, min(n)::text AS min,
            round(sum(extract(epoch FROM last - first))::numeric, 1)::text AS insert_s,
            (SELECT count(*) FROM connection_snapshot)::text AS snapshots
       FROM (SELECT transaction_id, count(*) AS n, min(recorded_at) AS first, max(recorded_at) AS last FROM event_log GROUP BY transaction_id) t`,
    );
  const dup = (await db.query(`SELECT count(*) - count(DISTINCT event_id) AS d FROM event_log`)) as { d: string }[];
  if (Number(dup[0].d) !== 0) throw new Error(`event_log holds duplicate event ids (${dup[0].d})`);

  const timing = await collectTiming(writer, timingFile);
  let writerProfile = null;
  if (profile) writerProfile = await collectChildProfile(writer, profileFile);
  await writer.stop();
  const totals = writerTotals(writer);

  // 4. The ceiling: a bare kafkajs consumer that only parses.
  note('ceiling: a bare kafkajs consumer (new group) reading the same topics, JSON.parse only');
  const ceiling = await bareConsumer(run, ceilingGroup, total);

  say();
  say(
    `results (${fmtInt(total)} events = ${fmtInt(events)} calls + ${connections} configured; ${partitions} partitions; producer batches of ${fmtInt(batchSize)}, acks ${acks}; code ${codeVersion()})`,
  );
  if (writerNodeOptions) say(`the writer ran with NODE_OPTIONS="${writerNodeOptions}"`);
  if (whatIf)
    say(
      `WHAT-IF RUN: the writer ran with the SQL rewrite "${whatIf}" (bench/support/timing-hook REWRITES), not as written`,
    );
  say();
  table([
    ['measure', 'value'],
    [
      'produce (bench → Kafka, concurrent with the writer)',
      `${fmt(produceSeconds, 1)} s, ${fmtInt(total / produceSeconds)} events/s`,
    ],
    ['WRITER: first produce → last durable append', `${fmt(seconds, 1)} s, ${fmtInt(rate)} events/s`],
    [
      'writer drain after the producer finished',
      `${fmtInt(total - appendedAtProduceEnd)} events in ${fmt(drainSeconds, 1)} s, ${fmtInt(drainRate)} events/s`,
    ],
    [
      'CEILING: bare kafkajs consumer, JSON.parse only',
      `${fmt(ceiling.seconds, 1)} s, ${fmtInt(ceiling.rate)} events/s (group join not counted: ${fmt(ceiling.joinSeconds, 1)} s)`,
    ],
    ['writer / ceiling', `${fmt(rate / ceiling.rate, 2)} (target ≥ 0.33)`],
    ['writer peak RSS (VmHWM)', `${fmtMb(peakRss)} (sampled max VmRSS ${fmtMb(peakSampledRss)})`],
    ['writer memory peaks (process.memoryUsage, 100 ms samples)', memoryLine(timing)],
    [
      'append transactions (writer batches)',
      `${fmtInt(Number(txStats[0].txs))}; events per transaction avg ${txStats[0].avg}, min ${txStats[0].min}, max ${txStats[0].max}`,
    ],
    ['time inside INSERTs (Σ last−first recorded_at per tx)', `${txStats[0].insert_s} s of ${fmt(seconds, 1)} s`],
    ['snapshots stored', txStats[0].snapshots],
    ['writer totals (its last log line)', totals ?? 'n/a'],
  ]);
  say();
  say(`CPU during the writer's run (${fmt(cpu.seconds, 1)} s wall):`);
  table(cpu.rows('bench: producer + poller'));
  say();
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');
  table([
    ['target', 'got', ''],
    ['≥ 20,000 events/s appended', `${fmtInt(rate)} events/s`, verdict(rate >= TARGET_RATE)],
    [
      '≥ 1/3 of the ceiling',
      `${fmt((100 * rate) / ceiling.rate, 1)}% of ${fmtInt(ceiling.rate)} events/s`,
      verdict(rate >= TARGET_CEILING_SHARE * ceiling.rate),
    ],
    ['writer RSS < 300 MB', fmtMb(peakRss), verdict(peakRss < TARGET_RSS)],
  ]);
  say();
  say(
    `where the writer's wall time goes (timing hook: pg Client#query and kafkajs, ${fmt(timing.seconds, 1)} s from the first produce to the dump):`,
  );
  table(timingRows(timing));
  if (writerProfile) {
    summariseProfile(writerProfile, { title: `writer CPU profile (${profileFile})` });
  }
});

async function waitForStableGroup(run: IsolatedRun, groupId: string, timeoutMs: number): Promise<void> {
  const admin = run.kafkaClient().admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { groups } = await admin.describeGroups([groupId]);
      if (groups[0]?.state === 'Stable' && groups[0].members.length > 0) return;
      if (Date.now() > deadline)
        throw new Error(`consumer group ${groupId} not stable after ${timeoutMs} ms (state ${groups[0]?.state})`);
      await sleep(200);
    }
  } finally {
    await admin.disconnect();
  }
}

function writerTotals(writer: BenchChild): string | null {
  // The writer logs its totals every 10 s and at shutdown; take the newest line.
  const line = [...writer.output].reverse().find((l) => /consumed \d+: appended/.test(l));
  return line ? line.replace(/.*(consumed \d+:)/, '$1') : null;
}

/** A bare kafkajs consumer with the writer's fetch settings that only JSON.parses each message. */
async function bareConsumer(
  run: IsolatedRun,
  groupId: string,
  expected: number,
): Promise<{ seconds: number; rate: number; joinSeconds: number }> {
  const s = run.settings;
  const consumer = run.kafkaClient().consumer({
    groupId,
    allowAutoTopicCreation: false,
    sessionTimeout: 30000,
    heartbeatInterval: 3000,
    maxBytesPerPartition: 2 * 1024 * 1024,
    maxWaitTimeInMs: 100,
  });
  await consumer.connect();
  let count = 0;
  let first = 0;
  let last = 0;
  let parsed = 0;
  const joinStart = performance.now();
  const ticker = new Ticker(
    () =>
      `ceiling: parsed ${fmtInt(count)}/${fmtInt(expected)}${first ? ` (${fmtInt(count / Math.max(0.001, (performance.now() - first) / 1000))}/s)` : ''}`,
  ).start();
  const done = new Promise<void>((resolve) => {
    void consumer
      .subscribe({ topics: [s.topics.calls, s.topics.validations, s.topics.connections], fromBeginning: true })
      .then(() =>
        consumer.run({
          eachBatch: async ({ batch }) => {
            if (first === 0) first = performance.now();
            for (const m of batch.messages) {
              const v = JSON.parse(m.value!.toString());
              if (v.event_id) parsed++;
            }
            count += batch.messages.length;
            if (count >= expected) {
              last = performance.now();
              resolve();
            }
          },
        }),
      );
  });
  await done;
  ticker.stop();
  await consumer.disconnect();
  if (parsed < expected) throw new Error(`ceiling parsed ${parsed} of ${expected} messages`);
  const seconds = (last - first) / 1000;
  return { seconds, rate: count / seconds, joinSeconds: (first - joinStart) / 1000 };
}
