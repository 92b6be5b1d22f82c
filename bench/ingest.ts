/**
 * npm run bench:ingest [-- --events N] [--connections 200] [--orgs 10] [--partitions 6] [--batch 5000]
 *                      [--acks -1] [--inflight 4] [--profile] [--what-if logged-ids-join]
 *                      [--writer-node-options=--max-old-space-size=96]
 *
 * Kafka → writer → event_log throughput, against a bare kafkajs consumer, in one isolated run (own
 * database, topics, consumer groups, Redis prefix).
 *
 * The messages: before any timing starts, the bench builds every message once, deterministically
 * (seededRandom(42) for the choices, a second seeded generator for the v4-style event_id UUIDs):
 * `connections` connection.configured events (one send to the connections topic), then N
 * psp.call.completed events over those connections (10% failures), key `org:conn`, values as Buffers.
 * One produce function sends them in every phase that produces: the configured events first (sends of 1,000), then
 * the calls in batches of --batch with --inflight sends in flight, acks --acks, no compression. So every
 * phase produces the very same bytes the very same way.
 *
 * A. WRITER, END TO END (the figure): starts the COMPILED writer (dist/apps/writer/src/main.js)
 *    and waits until its group is stable; then produces to the run's topics and times from the first
 *    produce to the last durable append (polls max(position) of event_log every 50 ms, then checks
 *    count(*) and that there are no duplicate event ids). Also: the drain after the producer finished,
 *    the writer's RSS (VmRSS samples; VmHWM at the end), the CPU of the writer, PostgreSQL, Kafka and
 *    this process, the timing hook's table and the append transactions.
 * B. CEILING, END TO END (like for like with A): a second set of intake topics (`<topic>.ceiling`, same
 *    partition count); a bare kafkajs consumer in its own process (as the writer is; new group, the
 *    writer's fetch settings: 2 MB per partition, 100 ms max wait) that only JSON.parses every message,
 *    subscribed and with its partitions assigned (group stable) BEFORE the first produce; then the same
 *    messages are produced with the same produce function to those topics; timed from the first produce
 *    to the last message parsed. CPU table as in A.
 * C. CEILING, BACKLOG (the comparison of earlier runs): the same bare consumer in a new group over phase
 *    A's topics (all messages already there), timed from its first batch to its last (group join not
 *    counted).
 * D. WRITER, BACKLOG: a second compiled writer (same options and hooks as A) with a new consumer group
 *    (WRITER_GROUP_ID = <A's group>.backlog) over phase A's topics, appending to a fresh event log: a
 *    second database, created and migrated the same way as the run's own (IsolatedRun), dropped at
 *    cleanup. Timed from when its group is stable (as in A) to the last durable append of all events;
 *    count and duplicate ids checked as in A; RSS and CPU reported.
 * Results: A vs B (end to end, the definition) gets the ≥ 1/3 verdict; D vs C (backlog) is a
 * second, informational row. ≥ 20,000 events/s is A's rate; RSS < 300 MB is the max of A's and D's.
 *
 * The writers always run with bench/support/timing-hook preloaded (wall time of every PostgreSQL query
 * and kafkajs fetch/batch/commit, memory peaks; reported for A). With --profile, A's writer also runs a
 * V8 CPU profiler (bench/support/cpu-profile-hook) and the breakdown is printed. --what-if NAME runs the
 * writers with one of the hook's named SQL rewrites (REWRITES in support/timing-hook; the app's source is
 * unchanged) to measure what a one-query change would give; the results then say so. Everything
 * (processes, topics, groups, databases, Redis keys) is deleted at the end, also on an error and on Ctrl-C.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompressionTypes, Kafka, logLevel, Message, Producer } from 'kafkajs';
import { DataSource } from 'typeorm';
import { loadSettings } from '@psp/config';
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
  serviceNodeOptions,
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

/** This file also runs as the bare consumer's process (phases B and C) when this variable says so. */
const ROLE_ENV = 'BENCH_INGEST_ROLE';

/** The same heap bound as `npm run start:writer` (package.json): the writer as it is deployed. */
export const WRITER_NODE_OPTIONS = serviceNodeOptions('start:writer');
/** The same heap bound as `npm run start:projector` (package.json). */
export const PROJECTOR_NODE_OPTIONS = serviceNodeOptions('start:projector');

// Run as a program (npm run bench:ingest, or the bare consumer's process); bench/scale.ts imports the
// workload, produce and append-watching helpers below without running anything.
if (require.main === module) {
  if (process.env[ROLE_ENV] === 'bare-consumer') void bareConsumerProcess();
  else runBench('bench:ingest', ingest);
}

async function ingest(register: (run: IsolatedRun) => void): Promise<void> {
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
  const writerNodeOptions = a.str('writer-node-options', WRITER_NODE_OPTIONS);
  const total = events + connections;
  const sendOptions = { acks, inflight };

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

  // Topics: phase A's (the service's, also read by C and D) and phase B's own copies of the intake topics.
  await run.createTopics(partitions);
  const runTopics = { calls: s.topics.calls, connections: s.topics.connections };
  const intake = [s.topics.calls, s.topics.validations, s.topics.connections];
  const ceilingIntake = intake.map((t) => `${t}.ceiling`);
  const ceilingTopics = { calls: `${s.topics.calls}.ceiling`, connections: `${s.topics.connections}.ceiling` };
  await run.createTopics(partitions, ceilingIntake);
  const e2eGroup = `${s.writerGroupId}.ceiling-e2e`;
  const backlogCeilingGroup = `${s.writerGroupId}.ceiling-backlog`;
  const backlogWriterGroup = `${s.writerGroupId}.backlog`;
  run.deleteGroupsAtCleanup([s.writerGroupId, e2eGroup, backlogCeilingGroup]);

  // All messages, before any timing.
  note(`building ${fmtInt(total)} messages (seeded, identical in every phase)`);
  const builtAt = performance.now();
  const workload = buildWorkload({ events, connections, orgs, batchSize });
  note(
    `built ${fmtInt(total)} messages, ${fmtMb(workload.bytes)} of values, in ${fmt((performance.now() - builtAt) / 1000, 1)} s`,
  );

  const outDir = mkdtempSync(join(tmpdir(), 'psp-bench-ingest-'));
  const writerEnv = (timingFile: string, extra: Record<string, string> = {}) => ({
    env: {
      BENCH_TIMING: timingFile,
      ...extra,
      ...(whatIf ? { BENCH_SQL_REWRITE: whatIf } : {}),
      ...(writerNodeOptions ? { NODE_OPTIONS: writerNodeOptions } : {}),
    },
    nodeArgs: ['timing-hook', ...(extra.BENCH_CPU_PROFILE ? ['cpu-profile-hook'] : [])].flatMap((h) => [
      '-r',
      join(ROOT, 'dist', 'bench', 'support', `${h}.js`),
    ]),
  });

  // ---- A. The writer, compiled, with the run's environment; the timing hook (and the profiler) preloaded.
  say('A. writer, end to end: first produce → last durable append');
  const profileFile = join(outDir, 'writer.cpuprofile');
  const timingFile = join(outDir, 'writer-timing.json');
  const writer = run.startCompiled(
    'writer',
    'apps/writer/src/main.js',
    writerEnv(timingFile, profile ? { BENCH_CPU_PROFILE: profileFile } : {}),
  );
  note(`A: writer started (pid ${writer.pid}); waiting for its consumer group to be stable`);
  await writer.waitFor(/consuming .* as group/, 60000);
  await waitForStableGroup(run, s.writerGroupId, 60000);

  const rssA = new RssSampler(writer.pid);
  const cpu = new CpuAccount(db, run.databaseName);
  cpu.track('writer (node, compiled)', writer.pid);
  cpu.track('Kafka broker (JVM)', kafkaBrokerPid());

  const producerA = await connectProducer(run);
  const producedA = { produced: 0 };
  const watcherA = new AppendWatcher(db, total);
  let started = performance.now();
  const elapsedA = () => (performance.now() - started) / 1000;
  const tickerA = new Ticker(() => {
    const t = elapsedA();
    const rss = memoryBytes(writer.pid, 'VmRSS') ?? 0;
    return `A ${fmt(t, 1)} s: produced ${fmtInt(producedA.produced)}/${fmtInt(total)} (${fmtInt(producedA.produced / Math.max(t, 0.001))}/s), appended ${fmtInt(watcherA.appended)} (${fmtInt(watcherA.appended / Math.max(t, 0.001))}/s), writer RSS ${fmtMb(rss)}`;
  });
  run.onCleanup('stop the progress line', async () => tickerA.stop());
  watcherA.start();
  writer.send({ bench: 'reset' });
  await cpu.start();
  tickerA.start();
  started = performance.now();
  await produce(producerA, runTopics, workload, sendOptions, producedA, () => {
    if (writer.exited) throw new Error(`the writer exited (code ${writer.exitCode}):\n${writer.tail()}`);
  });
  const producedAt = performance.now();
  const appendedAtProduceEnd = watcherA.appended;
  const doneAt = await watcherA.done(writer);
  tickerA.stop();
  await cpu.stop();
  rssA.stop();
  await producerA.disconnect();
  const peakRss = memoryBytes(writer.pid, 'VmHWM') ?? rssA.peak;
  const seconds = (doneAt - started) / 1000;
  const produceSeconds = (producedAt - started) / 1000;
  const drainSeconds = (doneAt - producedAt) / 1000;
  const rate = total / seconds;
  const drainRate = drainSeconds > 0 ? (total - appendedAtProduceEnd) / drainSeconds : NaN;
  const txStats = await appendStats(db);
  await checkNoDuplicates(db);

  const timing = await collectTiming(writer, timingFile);
  let writerProfile = null;
  if (profile) writerProfile = await collectChildProfile(writer, profileFile);
  await writer.stop();
  const totals = writerTotals(writer);

  // ---- B. Ceiling, end to end: the bare consumer ready first, then the same produce to its own topics.
  say('B. bare consumer, end to end: first produce → last parse (same producer, same messages, own topics)');
  const bareB = startBareConsumer(run, 'bare consumer (end to end)', e2eGroup, ceilingIntake, total);
  note(`B: bare consumer started (pid ${bareB.child.pid}); waiting for its partitions and a stable group`);
  await withTimeout(bareB.joined, 60000, 'the bare consumer (end to end) joining its group');
  await waitForStableGroup(run, e2eGroup, 60000);
  const cpuB = new CpuAccount(db, run.databaseName);
  cpuB.track('bare consumer (node, own process)', bareB.child.pid);
  cpuB.track('Kafka broker (JVM)', kafkaBrokerPid());
  const producerB = await connectProducer(run);
  const producedB = { produced: 0 };
  let startedB = epochMs();
  const tickerB = new Ticker(() => {
    const t = (epochMs() - startedB) / 1000;
    return `B ${fmt(t, 1)} s: produced ${fmtInt(producedB.produced)}/${fmtInt(total)} (${fmtInt(producedB.produced / Math.max(t, 0.001))}/s), parsed ${fmtInt(bareB.count())} (${fmtInt(bareB.count() / Math.max(t, 0.001))}/s)`;
  });
  run.onCleanup('stop the progress line', async () => tickerB.stop());
  await cpuB.start();
  tickerB.start();
  startedB = epochMs();
  await produce(producerB, ceilingTopics, workload, sendOptions, producedB, () => {
    if (bareB.child.exited) throw new Error(`the bare consumer exited:\n${bareB.child.tail()}`);
  });
  const producedAtB = epochMs();
  const resultB = await waitBare(bareB);
  await cpuB.stop();
  tickerB.stop();
  await bareB.child.stop();
  await producerB.disconnect();
  const secondsB = (resultB.last - startedB) / 1000;
  const rateB = total / secondsB;
  const produceSecondsB = (producedAtB - startedB) / 1000;

  // ---- C. Ceiling on a backlog: the bare consumer, new group, over phase A's topics.
  say('C. bare consumer, backlog: first batch → last batch (phase A topics)');
  const bareC = startBareConsumer(run, 'bare consumer (backlog)', backlogCeilingGroup, intake, total);
  note(`C: bare consumer started (pid ${bareC.child.pid}) over phase A's topics`);
  const tickerC = new Ticker(() => `C: parsed ${fmtInt(bareC.count())}/${fmtInt(total)}`).start();
  run.onCleanup('stop the progress line', async () => tickerC.stop());
  const resultC = await waitBare(bareC);
  tickerC.stop();
  await bareC.child.stop();
  const secondsC = (resultC.last - resultC.first) / 1000;
  const rateC = resultC.count / secondsC;
  const joinSecondsC = (resultC.first - resultC.joinStart) / 1000;

  // ---- D. A second writer, new group, fresh database, over phase A's topics.
  say('D. writer, backlog: group stable → last durable append (new group, fresh database, phase A topics)');
  const runD = new IsolatedRun('benchingestd', {
    TOPIC_PARTITIONS: String(partitions),
    LOG_LEVEL: 'log',
    TOPIC_CALLS: s.topics.calls,
    TOPIC_VALIDATIONS: s.topics.validations,
    TOPIC_CONNECTIONS: s.topics.connections,
    TOPIC_DLQ: s.topics.dlq,
    WRITER_GROUP_ID: backlogWriterGroup,
  });
  // Cleaned up inside the run's cleanup, first (registered last): writer D stopped, its group deleted and
  // its database dropped before the run deletes the topics it read.
  run.onCleanup('phase D: writer, group, database', () => runD.cleanup());
  runD.deleteGroupsAtCleanup([backlogWriterGroup]);
  const dbD = await runD.openDatabase();
  const timingFileD = join(outDir, 'writer-backlog-timing.json');
  const writerD = runD.startCompiled('writer (backlog)', 'apps/writer/src/main.js', writerEnv(timingFileD));
  note(`D: writer started (pid ${writerD.pid}, database ${runD.databaseName}); waiting for its group to be stable`);
  const rssD = new RssSampler(writerD.pid);
  const cpuD = new CpuAccount(dbD, runD.databaseName);
  cpuD.track('writer (node, compiled)', writerD.pid);
  cpuD.track('Kafka broker (JVM)', kafkaBrokerPid());
  await writerD.waitFor(/consuming .* as group/, 60000);
  await waitForStableGroup(runD, backlogWriterGroup, 60000);
  const startedD = performance.now();
  const watcherD = new AppendWatcher(dbD, total);
  watcherD.start();
  await cpuD.start();
  const tickerD = new Ticker(() => {
    const t = (performance.now() - startedD) / 1000;
    return `D ${fmt(t, 1)} s: appended ${fmtInt(watcherD.appended)}/${fmtInt(total)} (${fmtInt(watcherD.appended / Math.max(t, 0.001))}/s), writer RSS ${fmtMb(memoryBytes(writerD.pid, 'VmRSS') ?? 0)}`;
  }).start();
  run.onCleanup('stop the progress line', async () => tickerD.stop());
  const appendedAtStableD = await maxPosition(dbD);
  const doneAtD = await watcherD.done(writerD);
  tickerD.stop();
  await cpuD.stop();
  rssD.stop();
  const peakRssD = memoryBytes(writerD.pid, 'VmHWM') ?? rssD.peak;
  const secondsD = (doneAtD - startedD) / 1000;
  const rateD = total / secondsD;
  const txStatsD = await appendStats(dbD);
  await checkNoDuplicates(dbD);
  await writerD.stop();
  const totalsD = writerTotals(writerD);

  // ---- Results.
  say();
  say(
    `results (${fmtInt(total)} events = ${fmtInt(events)} calls + ${connections} configured; ${partitions} partitions; producer batches of ${fmtInt(batchSize)}, ${inflight} in flight, acks ${acks}; code ${codeVersion()})`,
  );
  if (writerNodeOptions) say(`the writers ran with NODE_OPTIONS="${writerNodeOptions}"`);
  if (whatIf)
    say(
      `WHAT-IF RUN: the writers ran with the SQL rewrite "${whatIf}" (bench/support/timing-hook REWRITES), not as written`,
    );
  say();
  const eps = (n: number, secs: number) => `${fmt(secs, 1)} s, ${fmtInt(n / secs)} events/s`;
  table([
    ['measure', 'value'],
    ['A. produce (bench → Kafka, concurrent with the writer)', eps(total, produceSeconds)],
    ['A. WRITER: first produce → last durable append', eps(total, seconds)],
    [
      'A. writer drain after the producer finished',
      `${fmtInt(total - appendedAtProduceEnd)} events in ${fmt(drainSeconds, 1)} s, ${fmtInt(drainRate)} events/s`,
    ],
    ['B. produce (bench → Kafka, concurrent with the bare consumer)', eps(total, produceSecondsB)],
    ['B. BARE CONSUMER: first produce → last parse', eps(total, secondsB)],
    [
      'B. bare consumer lag: last produce acked → last parse',
      `${fmt((resultB.last - producedAtB) / 1000, 2)} s (first batch ${fmt((resultB.first - startedB) / 1000, 2)} s after the first produce)`,
    ],
    [
      'C. BARE CONSUMER (backlog): first batch → last batch',
      `${eps(resultC.count, secondsC)} (group join not counted: ${fmt(joinSecondsC, 1)} s)`,
    ],
    [
      'D. WRITER (backlog): group stable → last durable append',
      `${eps(total, secondsD)} (${fmtInt(appendedAtStableD)} already appended when the group was seen stable)`,
    ],
    ['A. writer peak RSS (VmHWM)', `${fmtMb(peakRss)} (sampled max VmRSS ${fmtMb(rssA.peak)})`],
    ['D. writer peak RSS (VmHWM)', `${fmtMb(peakRssD)} (sampled max VmRSS ${fmtMb(rssD.peak)})`],
    ['A. writer memory peaks (process.memoryUsage, 100 ms samples)', memoryLine(timing)],
    ['A. append transactions (writer batches)', txLine(txStats)],
    ['D. append transactions (writer batches)', txLine(txStatsD)],
    ['A. time inside INSERTs (Σ last−first recorded_at per tx)', `${txStats.insert_s} s of ${fmt(seconds, 1)} s`],
    ['A. writer totals (its last log line)', totals ?? 'n/a'],
    ['D. writer totals (its last log line)', totalsD ?? 'n/a'],
    ['events in each event log (count(*); no duplicate event ids)', `A ${fmtInt(total)}, D ${fmtInt(total)}`],
  ]);
  say();
  const share = (w: number, c: number) => fmt(w / c, 3);
  table([
    ['comparison', 'writer', 'bare kafkajs consumer (JSON.parse only)', 'writer / bare'],
    [
      "end to end (the issue's definition)",
      `${fmtInt(rate)} events/s: writer first produce → last durable append (A)`,
      `${fmtInt(rateB)} events/s: bare consumer first produce → last parse (same producer, same messages) (B)`,
      share(rate, rateB),
    ],
    [
      "backlog (not the issue's definition)",
      `${fmtInt(rateD)} events/s: writer from group stable → last durable append (D)`,
      `${fmtInt(rateC)} events/s: bare consumer first batch → last batch (C)`,
      share(rateD, rateC),
    ],
  ]);
  say();
  say(`A. CPU during the writer's end-to-end run (${fmt(cpu.seconds, 1)} s wall):`);
  table(cpu.rows('bench: producer + poller'));
  say();
  say(`B. CPU during the bare consumer's end-to-end run (${fmt(cpuB.seconds, 1)} s wall):`);
  table(cpuB.rows('bench: producer'));
  say();
  say(`D. CPU during the writer's backlog run (${fmt(cpuD.seconds, 1)} s wall):`);
  table(cpuD.rows('bench: poller'));
  say();
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');
  const peakRssMax = Math.max(peakRss, peakRssD);
  table([
    ['target', 'got', ''],
    [
      '≥ 20,000 events/s appended (A: first produce → last durable append)',
      `${fmtInt(rate)} events/s`,
      verdict(rate >= TARGET_RATE),
    ],
    [
      "≥ 1/3 of the ceiling, end to end (the issue's definition: A / B)",
      `${fmt((100 * rate) / rateB, 1)}% of ${fmtInt(rateB)} events/s`,
      verdict(rate >= TARGET_CEILING_SHARE * rateB),
    ],
    [
      "≥ 1/3 of the ceiling, backlog (not the issue's definition: D / C)",
      `${fmt((100 * rateD) / rateC, 1)}% of ${fmtInt(rateC)} events/s`,
      verdict(rateD >= TARGET_CEILING_SHARE * rateC),
    ],
    ['writer RSS < 300 MB (max of A and D)', fmtMb(peakRssMax), verdict(peakRssMax < TARGET_RSS)],
  ]);
  say();
  say(
    `A. where the writer's wall time goes (timing hook: pg Client#query and kafkajs, ${fmt(timing.seconds, 1)} s from the first produce to the dump):`,
  );
  table(timingRows(timing));
  if (writerProfile) {
    summariseProfile(writerProfile, { title: `A. writer CPU profile (${profileFile})` });
  }
}

// ---------------------------------------------------------------------------------------------------
// The messages and the one produce function

export interface Workload {
  /** connection.configured events, sent first (sends of 1,000). */
  connections: Message[];
  /** psp.call.completed events in batches of --batch. */
  calls: Message[][];
  /** Bytes of all values. */
  bytes: number;
}

/** A v4-style UUID from 16 bytes of a seeded generator (mulberry32 yields 32 bits per call). */
function seededUuid(rnd: () => number): string {
  const b = Buffer.allocUnsafe(16);
  for (let i = 0; i < 16; i += 4) b.writeUInt32BE(Math.floor(rnd() * 0x100000000) >>> 0, i);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Every message of the run, built once: seededRandom(42) for the choices (the same sequence of draws as
 * before the event ids were seeded), seededRandom(4242) for the event ids. Keys are shared Buffers (one
 * per connection), values Buffers.
 */
export function buildWorkload(o: { events: number; connections: number; orgs: number; batchSize: number }): Workload {
  const rnd = seededRandom(42);
  const ids = seededRandom(4242);
  const seen = new Set<string>();
  const eventId = () => {
    const id = seededUuid(ids);
    if (seen.has(id)) throw new Error(`seeded event ids repeat (${id})`);
    seen.add(id);
    return id;
  };
  let bytes = 0;
  const value = (v: unknown) => {
    const b = Buffer.from(JSON.stringify(v));
    bytes += b.length;
    return b;
  };
  const base = Date.now() - 2 * 3600_000;
  const conns = Array.from({ length: o.connections }, (_, i) => {
    const org = `org_${i % o.orgs}`;
    const conn = `conn_${i}`;
    return { org, conn, key: Buffer.from(`${org}:${conn}`) };
  });
  const connections: Message[] = conns.map(({ org, conn, key }, i) => ({
    key,
    value: value({
      event_id: eventId(),
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
  }));
  const calls: Message[][] = [];
  const span = 2 * 3600_000 - 60_000;
  for (let from = 0; from < o.events; from += o.batchSize) {
    const messages: Message[] = [];
    for (let i = from; i < Math.min(o.events, from + o.batchSize); i++) {
      const c = conns[Math.floor(rnd() * o.connections)];
      const fail = rnd() < 0.1;
      messages.push({
        key: c.key,
        value: value({
          event_id: eventId(),
          type: 'psp.call.completed',
          schema_version: 1,
          org_id: c.org,
          connection_id: c.conn,
          occurred_at: new Date(base + Math.floor((i * span) / o.events)).toISOString(),
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
    calls.push(messages);
  }
  return { connections, calls, bytes };
}

/**
 * The one produce function of every phase that produces: the configured events first (sends of 1,000), then the
 * call batches with `inflight` sends in flight; acks as given, no compression. `progress.produced`
 * counts acknowledged messages; `check` runs after every send is issued (to stop when a consumer died).
 */
export async function produce(
  producer: Producer,
  topics: { connections: string; calls: string },
  workload: Workload,
  o: { acks: -1 | 1; inflight: number },
  progress: { produced: number },
  check: () => void,
): Promise<void> {
  // The configured events first, all acknowledged before any call (in sends of 1,000: a broker refuses
  // a request over its message size limit, and --connections may be large).
  for (let i = 0; i < workload.connections.length; i += 1000) {
    const messages = workload.connections.slice(i, i + 1000);
    await producer.send({ topic: topics.connections, acks: o.acks, compression: CompressionTypes.None, messages });
    progress.produced += messages.length;
  }
  const pending = new Set<Promise<unknown>>();
  for (const messages of workload.calls) {
    const p: Promise<unknown> = producer
      .send({ topic: topics.calls, acks: o.acks, compression: CompressionTypes.None, messages })
      .then(() => {
        progress.produced += messages.length;
        pending.delete(p);
      });
    p.catch(() => undefined); // rejections surface through Promise.race / Promise.all below
    pending.add(p);
    if (pending.size >= o.inflight) await Promise.race(pending);
    check();
  }
  await Promise.all(pending);
}

/** A connected producer of the bench (disconnected at cleanup if the phase does not get to it). */
export async function connectProducer(run: IsolatedRun): Promise<Producer> {
  const producer = run.kafkaClient().producer({ allowAutoTopicCreation: false });
  await producer.connect();
  run.onCleanup('disconnect producer', () => producer.disconnect());
  return producer;
}

// ---------------------------------------------------------------------------------------------------
// The writer's side: appends, RSS

export async function maxPosition(db: DataSource): Promise<number> {
  const rows: { n: string }[] = await db.query(`SELECT coalesce(max(position), 0)::text AS n FROM event_log`);
  return Number(rows[0].n);
}

async function countLog(db: DataSource): Promise<number> {
  return Number(((await db.query(`SELECT count(*)::text AS n FROM event_log`)) as { n: string }[])[0].n);
}

/** Polls max(position) of event_log every 50 ms; done() waits for the last durable append of `total`. */
export class AppendWatcher {
  appended = 0;
  private lastProgressAt = Date.now();
  private polling = true;
  private loop: Promise<number> = Promise.resolve(0);

  constructor(
    private readonly db: DataSource,
    private readonly total: number,
  ) {}

  start(): this {
    this.lastProgressAt = Date.now();
    this.loop = (async () => {
      while (this.polling) {
        const n = await maxPosition(this.db);
        if (n > this.appended) {
          this.appended = n;
          this.lastProgressAt = Date.now();
        }
        if (this.appended >= this.total) return performance.now();
        await sleep(50);
      }
      return performance.now();
    })();
    this.loop.catch(() => undefined); // awaited in done(); keeps an early failure from being an unhandled rejection
    return this;
  }

  /** The time (performance.now()) of the last durable append: max(position) reached, then count(*) too. */
  async done(writer: BenchChild): Promise<number> {
    for (;;) {
      if (this.appended >= this.total) break;
      if (writer.exited) throw new Error(`${writer.name} exited (code ${writer.exitCode}):\n${writer.tail()}`);
      if (Date.now() - this.lastProgressAt > 60000)
        throw new Error(`no append progress for 60 s (appended ${this.appended}/${this.total}):\n${writer.tail()}`);
      await sleep(50);
    }
    let doneAt = await this.loop;
    this.polling = false;
    let counted = await countLog(this.db);
    while (counted < this.total) {
      // max(position) can run ahead of count(*) only if a transaction rolled back; wait for the real count.
      if (Date.now() - this.lastProgressAt > 60000)
        throw new Error(`event_log holds ${counted} of ${this.total} events`);
      await sleep(50);
      const n = await countLog(this.db);
      if (n > counted) this.lastProgressAt = Date.now();
      counted = n;
      doneAt = performance.now();
    }
    if (counted > this.total) throw new Error(`event_log holds ${counted} events, ${this.total} expected`);
    return doneAt;
  }
}

export type TxStats = { txs: string; avg: string; max: string; min: string; insert_s: string };

export async function appendStats(db: DataSource): Promise<TxStats> {
  const rows: TxStats[] = await db.query(
    `SELECT count(*)::text AS txs, round(avg(n))::text AS avg, max(n)::text AS max, min(n)::text AS min,
            round(sum(extract(epoch FROM last - first))::numeric, 1)::text AS insert_s
       FROM (SELECT transaction_id, count(*) AS n, min(recorded_at) AS first, max(recorded_at) AS last FROM event_log GROUP BY transaction_id) t`,
  );
  return rows[0];
}

export function txLine(t: TxStats): string {
  return `${fmtInt(Number(t.txs))}; events per transaction avg ${t.avg}, min ${t.min}, max ${t.max}`;
}

export async function checkNoDuplicates(db: DataSource): Promise<void> {
  const dup = (await db.query(`SELECT count(*) - count(DISTINCT event_id) AS d FROM event_log`)) as { d: string }[];
  if (Number(dup[0].d) !== 0) throw new Error(`event_log holds duplicate event ids (${dup[0].d})`);
}

/** The max of a process's VmRSS, sampled every 100 ms until stop(). */
export class RssSampler {
  peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(pid: number) {
    this.timer = setInterval(() => {
      const rss = memoryBytes(pid, 'VmRSS');
      if (rss !== null && rss > this.peak) this.peak = rss;
    }, 100);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

export async function waitForStableGroup(run: IsolatedRun, groupId: string, timeoutMs: number): Promise<void> {
  const admin = run.kafkaClient().admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { groups } = await admin.describeGroups([groupId]);
      if (groups[0]?.state === 'Stable' && groups[0].members.length > 0) return;
      if (Date.now() > deadline)
        throw new Error(`consumer group ${groupId} not stable after ${timeoutMs} ms (state ${groups[0]?.state})`);
      await sleep(50);
    }
  } finally {
    await admin.disconnect();
  }
}

/** Colour codes in the writer's log lines (ESC [ ... m). */
const ANSI_COLOUR = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');

export function writerTotals(writer: BenchChild): string | null {
  // The writer logs its totals every 10 s and at shutdown; take the newest line.
  const line = [...writer.output].reverse().find((l) => /consumed \d+: appended/.test(l));
  return line ? line.replace(/.*(consumed \d+:)/, '$1').replace(ANSI_COLOUR, '') : null;
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------------
// The bare consumer (phases B and C): its own process, like the writer

/** Wall-clock milliseconds with sub-millisecond resolution, comparable between this process and its children. */
function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Times are epochMs() in the bare consumer's process. */
interface BareResult {
  joinStart: number;
  first: number;
  last: number;
  count: number;
  parsed: number;
}

type BareMessage =
  | { kind: 'joined'; at: number }
  | { kind: 'progress'; count: number }
  | ({ kind: 'done' } & BareResult)
  | { kind: 'error'; message: string };

interface BareConsumer {
  child: BenchChild;
  /** Resolves when the consumer has joined its group (partitions assigned). */
  joined: Promise<void>;
  /** Resolves when it has parsed `expected` messages. */
  done: Promise<BareResult>;
  count(): number;
  lastProgressAt(): number;
}

/** Starts this file as a bare kafkajs consumer process (the run's environment; a new group). */
function startBareConsumer(
  run: IsolatedRun,
  name: string,
  groupId: string,
  topics: string[],
  expected: number,
): BareConsumer {
  const child = run.startCompiled(name, 'bench/ingest.js', {
    env: {
      [ROLE_ENV]: 'bare-consumer',
      BENCH_BARE_GROUP: groupId,
      BENCH_BARE_TOPICS: topics.join(','),
      BENCH_BARE_EXPECTED: String(expected),
    },
  });
  let count = 0;
  let progressAt = Date.now();
  let onJoined: () => void = () => undefined;
  let failJoined: (e: Error) => void = () => undefined;
  const joined = new Promise<void>((resolve, reject) => {
    onJoined = resolve;
    failJoined = reject;
  });
  const done = new Promise<BareResult>((resolve, reject) => {
    const fail = (error: Error) => {
      failJoined(error);
      reject(error);
    };
    child.process.on('message', (m: BareMessage) => {
      if (m.kind === 'joined') onJoined();
      else if (m.kind === 'progress') {
        if (m.count > count) progressAt = Date.now();
        count = m.count;
      } else if (m.kind === 'done') {
        count = m.count;
        resolve(m);
      } else if (m.kind === 'error') fail(new Error(`${name} failed: ${m.message}\n${child.tail()}`));
    });
    child.process.once('exit', (code) =>
      fail(new Error(`${name} exited (code ${code}) before it was done:\n${child.tail()}`)),
    );
  });
  joined.catch(() => undefined);
  done.catch(() => undefined);
  return { child, joined, done, count: () => count, lastProgressAt: () => progressAt };
}

/** Waits until the bare consumer has parsed everything (fails after 60 s without progress). */
async function waitBare(bare: BareConsumer): Promise<BareResult> {
  let result: BareResult | undefined;
  void bare.done.then((r) => (result = r)).catch(() => undefined);
  while (!result) {
    await Promise.race([bare.done, sleep(1000)]);
    if (!result && Date.now() - bare.lastProgressAt() > 60000)
      throw new Error(`${bare.child.name}: no progress for 60 s (parsed ${bare.count()}):\n${bare.child.tail()}`);
  }
  if (result.parsed < result.count) throw new Error(`${bare.child.name} parsed ${result.parsed} of ${result.count}`);
  return result;
}

/**
 * The bare consumer's process: a kafkajs consumer with the writer's fetch settings that only
 * JSON.parses each message. Reports joined / progress / done over IPC; after done it stays in its group
 * until SIGTERM (or SIGINT), then leaves it (so the group can be deleted) and exits.
 */
async function bareConsumerProcess(): Promise<void> {
  const send = (m: BareMessage) =>
    new Promise<void>((resolve) => {
      if (!process.send) return resolve();
      process.send(m, undefined, {}, () => resolve());
    });
  try {
    const settings = loadSettings(process.env);
    const groupId = process.env.BENCH_BARE_GROUP!;
    const topics = process.env.BENCH_BARE_TOPICS!.split(',');
    const expected = Number(process.env.BENCH_BARE_EXPECTED);
    const kafka = new Kafka({
      clientId: `${settings.kafkaClientId}-bare`,
      brokers: settings.kafkaBrokers,
      logLevel: logLevel.ERROR,
    });
    const consumer = kafka.consumer({
      groupId,
      allowAutoTopicCreation: false,
      sessionTimeout: 30000,
      heartbeatInterval: 3000,
      maxBytesPerPartition: 2 * 1024 * 1024,
      maxWaitTimeInMs: 100,
    });
    let leaving = false;
    const leave = () => {
      if (leaving) return;
      leaving = true;
      void consumer
        .disconnect()
        .catch(() => undefined)
        .finally(() => process.exit(0));
    };
    process.on('SIGTERM', leave);
    process.on('SIGINT', leave);
    await consumer.connect();
    consumer.on(consumer.events.GROUP_JOIN, () => void send({ kind: 'joined', at: epochMs() }));
    let count = 0;
    let parsed = 0;
    let first = 0;
    let last = 0;
    const joinStart = epochMs();
    const progress = setInterval(() => void send({ kind: 'progress', count }), 500);
    await new Promise<void>((resolve, reject) => {
      consumer
        .subscribe({ topics, fromBeginning: true })
        .then(() =>
          consumer.run({
            eachBatch: async ({ batch }) => {
              if (first === 0) first = epochMs();
              for (const m of batch.messages) {
                const v = JSON.parse(m.value!.toString());
                if (v.event_id) parsed++;
              }
              count += batch.messages.length;
              if (count >= expected && last === 0) {
                last = epochMs();
                resolve();
              }
            },
          }),
        )
        .catch(reject);
    });
    clearInterval(progress);
    await send({ kind: 'done', joinStart, first, last, count, parsed });
  } catch (error) {
    await send({ kind: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.exit(1);
  }
}
