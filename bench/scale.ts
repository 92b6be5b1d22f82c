/**
 * npm run bench:scale [-- --points 200,10000,100000,1000000] [--events 1000000] [--rate 5000]
 *                        [--freshness-seconds 0] [--query-orgs 20000] [--query-duration 10] [--query-rounds 2]
 *                        [--clients 50] [--phases ingest,backlog,replay,freshness,query] [--profile]
 *                        [--out dist/bench-results] [--svg PATH] [--render RESULTS.json] [--help]
 *
 * The scale curve: at each point, N connections in orgs of 5 (org_<i mod N/5>, conn_<i>), the same
 * benches measured at N, each point on its own isolated databases, topics, consumer groups and Redis
 * prefix (bench/support/harness IsolatedRun, test/support/isolated-stack), dropped when the point is done.
 *
 * Per point, in order:
 *  ingest    bench:ingest's phase A: the COMPILED writer (--max-old-space-size=128 as `npm run
 *            start:writer`, timing hook preloaded), group stable, then N connection.configured + EVENTS
 *            psp.call.completed messages (bench/ingest.ts buildWorkload: seeded, uniform over the N
 *            connections) produced by bench/ingest.ts produce(); first produce → last durable append;
 *            writer peak RSS (VmHWM).
 *  backlog   bench:ingest's phase D: a second writer, new group and fresh database, over the same
 *            topics (all messages already there): group stable → last durable append (the writer's own
 *            speed, without the producer on the same cores). Its database is dropped at once.
 *  replay    `ops replay` (the compiled ops command line, its own process, batch 50,000 as shipped) over
 *            phase ingest's event log: the replay's own seconds (from its "replay done" line), its peak
 *            RSS (VmHWM), its read model checked (N connections in the new generation).
 *  projection the projectors on a backlog: a new empty generation made live over phase ingest's whole
 *            log, then 1 (and, again from empty, 2) compiled projector processes started together;
 *            start → every shard caught up; events/s against the writer's ingest of the same run, CPU per
 *            event of each projector and of PostgreSQL's backends, peak RSS of each.
 *  freshness a stack of the compiled writer, projector and API (service defaults), N connections
 *            configured through Kafka and projected first; then bench:freshness's probes
 *            (bench/support/freshness-probes.ts: a probe every 100 ms, polled every 5 ms) while RATE
 *            call events/s go to connections drawn uniformly from the N, occurred_at = wall clock, so
 *            stream time crosses minute boundaries. By default the load runs until two minute boundaries
 *            have passed (+5 s); probes sent from 1 s before to 10 s after a boundary are also reported
 *            apart. A 10 s idle baseline first.
 *  trickle   on the same stack, the same probes with 50 call events/s of other traffic (spread over
 *            the N connections) for TRICKLE-SECONDS: what a change costs to show when the stack holds
 *            N connections but is almost idle.
 *  query     on the same stack (its API), bench:query's autocannon (CLIENTS connections, 2 s warm-up,
 *            QUERY-DURATION s per run, QUERY-ROUNDS rounds), GET /v1/connections with requests spread
 *            uniformly over min(QUERY-ORGS, N/5) orgs, each with its own key, against the same load on
 *            1 org, alternating; API peak RSS (VmHWM). Every org is read once before the timed runs (Redis
 *            holds an org only after a read), so they measure the steady state; that pass is timed apart.
 *
 * Prints the curve and the targets (PASS/MISS) and writes the numbers as JSON and an SVG chart (events/s
 * against connections, log x) to --out (dist/ is gitignored); --svg PATH writes the chart there too.
 * --render FILE prints the tables and targets and writes the chart again from a saved JSON, measuring
 * nothing. --profile records V8 CPU profiles (writer during ingest, the replay, the projector during the freshness load, the API during the
 * many-org query runs) into --out and prints their breakdowns.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DataSource } from 'typeorm';
import { ApiKeyStore } from '@psp/api-keys';
import { createBuildingGeneration, DEFAULT_FOLD_PARALLELISM, switchLiveGeneration } from '@psp/read-model';
import { seededRandom } from '../test/support/seed';
import {
  args,
  codeVersion,
  cpuSeconds,
  CpuAccount,
  fmt,
  fmtInt,
  fmtMb,
  IsolatedRun,
  kafkaBrokerPid,
  machine,
  memoryBytes,
  note,
  redisServerPid,
  ROOT,
  runBench,
  safeRead,
  say,
  sleep,
  table,
  Ticker,
  useServers,
} from './support/harness';
import {
  AppendWatcher,
  buildWorkload,
  checkNoDuplicates,
  connectProducer,
  produce,
  waitForStableGroup,
  Workload,
  PROJECTOR_NODE_OPTIONS,
  WRITER_NODE_OPTIONS,
  writerTotals,
} from './ingest';
import { AutocannonResult, freePort, load, waitForHttp } from './query';
import {
  envelope,
  latencies,
  percentile,
  PROBE_ORG,
  ProbeRun,
  ProbeStack,
  runProbes,
} from './support/freshness-probes';
import { collectChildProfile, CpuProfile, summariseProfile } from './support/profile';
import { collectTiming, Timing, timingRows } from './support/timing';
import { lineChartSvg, short } from './support/svg-chart';

const CONNECTIONS_PER_ORG = 5;
const PARTITIONS = 6;
const REPLAY_BATCH = 50000;
const PHASES = ['ingest', 'backlog', 'replay', 'projection', 'freshness', 'trickle', 'query'] as const;
/** Call events/s of other traffic during the trickle probes (issue 23: a stack that is almost idle). */
const TRICKLE_RATE = 50;
type Phase = (typeof PHASES)[number];

/** The CPU-table row of the service's own PostgreSQL backends (application_name psp-connections[-ops]). */
const PG_SERVICE = 'PostgreSQL backends on the bench db: "psp-connections';

const TARGETS = {
  ingestAt100k: 0.7,
  ingestAt1M: 0.5,
  writerRss: 256 * 1024 * 1024,
  replayAt100k: 150000,
  replayShareAt100k: 0.6,
  /** "Bounded memory" for the replay at 1,000,000 connections, as this bench checks it. */
  replayRss: 512 * 1024 * 1024,
  freshnessP99: 500,
  freshnessBoundaries: 2,
  trickleP50At100k: 100,
  apiShare: 0.5,
  apiOrgs: 20000,
  apiRss: 512 * 1024 * 1024,
};

const HELP = `npm run bench:scale [-- options]

Measures ingest, replay, freshness and the query API at several numbers of connections (orgs of 5),
each point on its own isolated databases, topics, groups and Redis prefix (dropped when done). Prints
the curve and PASS/MISS per target, writes JSON + an SVG chart to --out.

  --points LIST            connections per point, comma-separated; N:EVENTS gives one point its own
                           number of events (default 200,10000,100000,1000000)
  --events N               call events per point, besides one connection.configured per connection
                           (default 1,000,000)
  --phases LIST            any of ingest,backlog,replay,projection,freshness,trickle,query (default all; backlog,
                           replay and projection need ingest; projection: 1 then 2 projector processes on
                           the whole log as a backlog)
  --rate N                 freshness: call events/s spread over the connections (default 5,000)
  --freshness-seconds S    freshness load duration; 0 = until two minute boundaries have passed, +5 s
  --trickle-seconds S      trickle: seconds of probes with 50 call events/s of other traffic (default 30)
                           (65-125 s; default 0)
  --projectors N           projector processes on the freshness/query stack, sharing the 16 shards (default 1)
  --backlog-projectors LIST projection: one run per value, that many projector processes on the same backlog
                           (default 1,2)
  --replay-parallel LIST   replay: one ops replay per value of --parallel (shards folded at once), over the
                           same log, in this order (default 2, as shipped)
  --query-orgs N           query: spread requests over this many orgs, each its own key (default 20,000;
                           fewer when the point has fewer orgs)
  --query-duration S       query: seconds per autocannon run after a 2 s warm-up (default 10)
  --query-rounds N         query: rounds of (1 org, many orgs) (default 2)
  --clients N              query: autocannon connections (default 50)
  --profile                V8 CPU profiles of the writer (ingest), the replay, the projector (freshness load)
                           and the API (many-org runs)
  --out DIR                where the JSON, the chart and profiles go (default dist/bench-results; gitignored)
  --svg PATH               also write the chart to PATH (e.g. bench-scale.svg beside BENCHMARKS.md)
  --render FILE            print tables and targets and write the chart from a saved JSON; measures nothing
  --help                   this text

Quick run:  npm run bench:scale -- --points 200,10000 --events 100000 --freshness-seconds 30
Full curve: npm run bench:scale        (≈ 5-10 min per point on 2 cores; the 1M point longest)`;

// ---------------------------------------------------------------------------------------------------
// Results (the JSON file)

interface CpuSummary {
  seconds: number;
  /** Cores used by everything that is not this bench's processes or servers (other sessions, the OS). */
  otherCores: number;
  machineCores: number;
  rows: string[][];
}

interface TimingTop {
  seconds: number;
  rows: string[][];
}

interface IngestResult {
  messages: number;
  seconds: number;
  rate: number;
  produceSeconds: number;
  drainSeconds: number;
  peakRss: number;
  heapPeak: number;
  writerTotals: string | null;
  cpu: CpuSummary;
  timing: TimingTop;
  loadAvgStart: number[];
  profileFile?: string;
}

interface BacklogResult {
  messages: number;
  seconds: number;
  rate: number;
  peakRss: number;
  cpu: CpuSummary;
}

interface ReplayResult {
  /** Shards folded at once (`ops replay --parallel`); absent in results from before it existed. */
  parallel?: number;
  events: number;
  seconds: number;
  rate: number;
  wallSeconds: number;
  peakRss: number;
  generation: number;
  connectionsInModel: number;
  /** Average characters per connection row of the state JSON and of the stored document (rewritten whenever touched). */
  stateChars?: number;
  documentChars?: number;
  cpu: CpuSummary;
  timing?: TimingTop;
  profileFile?: string;
}

/** Percentiles over all probes sent; null when it falls on a probe that never became visible (or there are none). */
interface LatencySummary {
  probes: number;
  visible: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
}

interface FreshnessResult {
  setupSeconds: number;
  projectSeconds: number;
  rate: number;
  sentRate: number;
  seconds: number;
  baseline: LatencySummary;
  load: LatencySummary;
  boundaries: string[];
  nearBoundary: LatencySummary;
  awayFromBoundary: LatencySummary;
  /** Events the projector applied per second during the load (load events are `sentRate`). */
  projectorRate: number;
  /** Produced events not yet applied by the projector when the load ended. */
  lagAtLoadEnd: number;
  /** Seconds from the end of the load until the projector had applied everything. */
  catchUpSeconds: number;
  writerRss: number;
  projectorRss: number;
  cpu: CpuSummary;
  projectorTiming: TimingTop;
  shortened: boolean;
}

/** The freshness probes with TRICKLE_RATE call events/s of other traffic. */
interface TrickleResult {
  sentRate: number;
  seconds: number;
  latency: LatencySummary;
}

interface QueryRun {
  label: string;
  orgs: number;
  round: number;
  rps: number;
  p50: number;
  p99: number;
  apiCores: number;
  cpuUsPerRequest: number;
  timing: TimingTop;
}

interface QueryResult {
  orgs: number;
  keysSeconds: number;
  /** Before the timed runs, every org read once (Redis is filled on read, so these come from PostgreSQL). */
  primeSeconds?: number;
  oneOrgRps: number;
  manyOrgsRps: number;
  ratio: number;
  runs: QueryRun[];
  apiRss: number;
  profileFile?: string;
}

interface ProjectionBacklogResult {
  projectors: number;
  events: number;
  /** Projectors started → every event applied. */
  seconds: number;
  rate: number;
  /** `rate` over the writer's ingest rate of the same run. */
  ingestRatio: number | null;
  /** CPU µs per event: each projector process, and PostgreSQL's backends on the bench database. */
  projectorUsPerEvent: number[];
  postgresUsPerEvent: number;
  peakRss: number[];
  cpu: CpuSummary;
  /** The first projector's timing hook (queries and steps), absent in results from before it. */
  timing?: TimingTop;
}

interface PointResult {
  /** With --render of several files: the start of the run the point comes from. */
  run?: string;
  connections: number;
  orgs: number;
  events: number;
  startedAt: string;
  busyAtStart: string[];
  ingest?: IngestResult;
  backlog?: BacklogResult;
  /** The replay with the shipped --parallel (or the first measured); every one measured in `replays`. */
  replay?: ReplayResult;
  /** One replay per --replay-parallel value, in the order run, over the same log. */
  replays?: ReplayResult[];
  /** The projectors on a backlog: the ingest phase's whole log, 1 and then 2 projector processes. */
  projection?: ProjectionBacklogResult[];
  freshness?: FreshnessResult;
  trickle?: TrickleResult;
  query?: QueryResult;
  errors: { phase: string; message: string }[];
}

interface ScaleResults {
  bench: 'bench:scale';
  startedAt: string;
  finishedAt?: string;
  command: string;
  code: string;
  machine: [string, string][];
  options: Options;
  points: PointResult[];
}

interface Options {
  points: { connections: number; events: number }[];
  phases: Phase[];
  rate: number;
  freshnessSeconds: number;
  trickleSeconds: number;
  /** Projector processes on the freshness/query stack (they share the 16 shards). */
  projectors: number;
  /** `ops replay --parallel` values, one replay each over the same log. */
  replayParallel: number[];
  /** Projector processes in the projection phase, one run per value over the same backlog. */
  backlogProjectors: number[];
  queryOrgs: number;
  queryDuration: number;
  queryRounds: number;
  clients: number;
  profile: boolean;
  out: string;
  svg: string | null;
}

// ---------------------------------------------------------------------------------------------------
// Entry

if (require.main === module) main();

function main(): void {
  let a: ReturnType<typeof args>;
  try {
    a = args();
  } catch (error) {
    process.stderr.write(`bench:scale: ${(error as Error).message}\n\n${HELP}\n`);
    process.exit(2);
  }
  if (a.flag('help')) {
    process.stdout.write(`${HELP}\n`);
    process.exit(0);
  }
  let options: Options;
  try {
    options = parseOptions(a);
  } catch (error) {
    process.stderr.write(`bench:scale: ${(error as Error).message} (add --help for usage)\n`);
    process.exit(2);
  }
  const render = a.str('render', '');
  if (render) {
    const files = render.split(',');
    const results = mergeResults(files.map((f) => JSON.parse(readFileSync(resolve(f), 'utf8')) as ScaleResults));
    report(results, options.svg ? [options.svg] : [], files[files.length - 1].replace(/\.json$/, '.svg'));
    process.exit(0);
  }
  runBench('bench:scale', (register) => scale(register, options));
}

/**
 * Several saved runs as one (--render a.json,b.json): a point measured in a later file replaces the same
 * number of connections of an earlier one; each point keeps the start of its run, and the targets say
 * when a ratio compares points of different runs.
 */
function mergeResults(runs: ScaleResults[]): ScaleResults {
  if (runs.length === 1) return runs[0];
  const points = new Map<number, PointResult>();
  // Runs before the phases were guarded one by one recorded 'ingest/backlog/replay' for all three.
  const phaseOf = (e: { phase: string; message: string }) =>
    e.phase === 'ingest/backlog/replay' ? (/writer \(backlog\)/.test(e.message) ? 'backlog' : 'ingest') : e.phase;
  for (const r of runs)
    for (const p of r.points) {
      const before = points.get(p.connections);
      const measured = PHASES.filter((ph) => p[ph] !== undefined);
      const errors = p.errors.map((e) => ({ ...e, phase: phaseOf(e) }));
      if (!before) {
        points.set(p.connections, { ...p, errors, run: r.startedAt });
        continue;
      }
      // Phase by phase: what the later run measured (or failed at) replaces the earlier run's.
      const redone = new Set<string>([...measured, ...errors.map((e) => e.phase)]);
      const merged: PointResult = {
        ...before,
        // The number of call events matters to the log phases only (the stack phases configure the connections).
        events: measured.some((ph) => ph === 'ingest' || ph === 'backlog' || ph === 'replay')
          ? p.events
          : before.events,
        run: r.startedAt,
        errors: [...before.errors.filter((e) => !redone.has(e.phase)), ...errors],
      };
      for (const ph of measured) (merged as unknown as Record<string, unknown>)[ph] = p[ph];
      points.set(p.connections, merged);
    }
  const codes = [...new Set(runs.map((r) => r.code))];
  return {
    ...runs[0],
    startedAt: runs[0].startedAt,
    finishedAt: runs[runs.length - 1].finishedAt,
    command: runs.map((r) => r.command).join('  +  '),
    code: codes.join(' / '),
    points: [...points.values()].sort((a, b) => a.connections - b.connections),
  };
}

function parseOptions(a: ReturnType<typeof args>): Options {
  const events = a.num('events', 1_000_000);
  const points = a
    .str('points', '200,10000,100000,1000000')
    .split(',')
    .map((p) => {
      const [c, e] = p.split(':').map((x) => Number(x.replace(/_/g, '')));
      if (!Number.isInteger(c) || c < CONNECTIONS_PER_ORG)
        throw new Error(`--points: ${p} is not a number of connections ≥ ${CONNECTIONS_PER_ORG}`);
      if (e !== undefined && !(Number.isInteger(e) && e >= 0)) throw new Error(`--points: bad events in ${p}`);
      return { connections: c, events: e ?? events };
    });
  const phases = a
    .str('phases', PHASES.join(','))
    .split(',')
    .map((p) => p.trim()) as Phase[];
  for (const p of phases) if (!PHASES.includes(p)) throw new Error(`--phases: unknown phase ${p}`);
  if (
    (phases.includes('backlog') || phases.includes('replay') || phases.includes('projection')) &&
    !phases.includes('ingest')
  )
    throw new Error('--phases: backlog, replay and projection run on what ingest produced; add ingest');
  const svg = a.str('svg', '');
  return {
    points,
    phases,
    rate: a.num('rate', 5000),
    freshnessSeconds: a.num('freshness-seconds', 0),
    trickleSeconds: a.num('trickle-seconds', 30),
    projectors: a.num('projectors', 1),
    backlogProjectors: countList(a, 'backlog-projectors', '1,2'),
    replayParallel: countList(a, 'replay-parallel', String(DEFAULT_FOLD_PARALLELISM)),
    queryOrgs: a.num('query-orgs', TARGETS.apiOrgs),
    queryDuration: a.num('query-duration', 10),
    queryRounds: Math.max(1, a.num('query-rounds', 2)),
    clients: a.num('clients', 50),
    profile: a.flag('profile'),
    out: resolve(ROOT, a.str('out', join('dist', 'bench-results'))),
    svg: svg ? resolve(svg) : null,
  };
}

/** A comma-separated list of process or shard counts, each 1-16 (there are 16 shards). */
function countList(a: ReturnType<typeof args>, name: string, fallback: string): number[] {
  return a
    .str(name, fallback)
    .split(',')
    .map((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 16) throw new Error(`--${name}: ${v} is not 1-16`);
      return n;
    });
}

async function scale(register: (run: IsolatedRun) => void, o: Options): Promise<void> {
  const servers = await useServers();
  mkdirSync(o.out, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const jsonFile = join(o.out, `scale-${stamp}.json`);
  const svgFile = join(o.out, `scale-${stamp}.svg`);
  const admin = await new DataSource({ type: 'postgres', url: servers.databaseUrl }).initialize();
  const results: ScaleResults = {
    bench: 'bench:scale',
    startedAt: new Date().toISOString(),
    command: `npm run bench:scale -- ${process.argv.slice(2).join(' ')}`.trim(),
    code: codeVersion(),
    machine: await machine(admin, servers.redisUrl),
    options: o,
    points: [],
  };
  await admin.destroy();
  const save = () => writeFileSync(jsonFile, `${JSON.stringify(results, null, 2)}\n`);
  say(
    `bench:scale — points ${o.points.map((p) => `${fmtInt(p.connections)} connections / ${fmtInt(p.events)} events`).join('; ')}; phases ${o.phases.join(', ')}`,
  );
  say();
  table([['machine', ''], ...results.machine], { alignNumbers: false });
  say();
  note(`results: ${jsonFile} (written after every phase)`);

  for (const spec of o.points) {
    const point: PointResult = {
      connections: spec.connections,
      orgs: Math.ceil(spec.connections / CONNECTIONS_PER_ORG),
      events: spec.events,
      startedAt: new Date().toISOString(),
      busyAtStart: await busyProcesses(),
      errors: [],
    };
    results.points.push(point);
    save();
    const free = statfsSync('/').bavail * statfsSync('/').bsize;
    note(
      `point ${fmtInt(spec.connections)} connections (${fmtInt(point.orgs)} orgs), ${fmtInt(spec.events)} events; disk free ${fmtMb(free)}; load average ${loadAvg().join(' / ')}`,
    );
    if (point.busyAtStart.length > 0) note(`busy at start (other than idle servers): ${point.busyAtStart.join('; ')}`);
    say();
    say(`==== ${fmtInt(spec.connections)} connections (${fmtInt(point.orgs)} orgs of ${CONNECTIONS_PER_ORG}) ====`);
    if (o.phases.includes('ingest')) await guarded(point, 'ingest', save, () => ingestPoint(register, o, point, save));
    if (o.phases.includes('freshness') || o.phases.includes('trickle') || o.phases.includes('query'))
      await guarded(point, 'freshness/query', save, () => stackPoint(register, o, point, save));
    save();
  }
  results.finishedAt = new Date().toISOString();
  save();
  say();
  report(results, o.svg ? [o.svg] : [], svgFile);
  note(`results: ${jsonFile}; chart: ${svgFile}${o.svg ? ` and ${o.svg}` : ''}`);
}

/** Runs a point's phase group; an error is recorded and reported, and the next phases still run. */
async function guarded(point: PointResult, phase: string, save: () => void, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    point.errors.push({ phase, message });
    save();
    note(`${phase} at ${fmtInt(point.connections)} connections FAILED (recorded, going on): ${message}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// ingest, backlog, replay

let scratchDir: string | null = null;

/** A file for the hooks' timing dumps, in a temporary folder removed when the bench exits. */
function scratch(name: string): string {
  if (!scratchDir) {
    const dir = mkdtempSync(join(tmpdir(), 'psp-bench-scale-'));
    scratchDir = dir;
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return join(scratchDir, name);
}

function hooks(names: string[]): string[] {
  return names.flatMap((h) => ['-r', join(ROOT, 'dist', 'bench', 'support', `${h}.js`)]);
}

async function ingestPoint(
  register: (run: IsolatedRun) => void,
  o: Options,
  point: PointResult,
  save: () => void,
): Promise<void> {
  const N = point.connections;
  const run = new IsolatedRun(`scale${N}`, { TOPIC_PARTITIONS: String(PARTITIONS), LOG_LEVEL: 'log' });
  register(run);
  try {
    const s = run.settings;
    const db = await run.openDatabase();
    await run.createTopics(PARTITIONS);
    const backlogGroup = `${s.writerGroupId}.backlog`;
    run.deleteGroupsAtCleanup([s.writerGroupId]);
    note(`building ${fmtInt(N + point.events)} messages`);
    let workload: Workload | null = buildWorkload({
      events: point.events,
      connections: N,
      orgs: point.orgs,
      batchSize: 5000,
    });
    const total = N + point.events;

    // ---- ingest: bench:ingest's phase A.
    const timingFile = scratch('writer-timing.json');
    const profileFile = join(o.out, `scale-${N}-writer.cpuprofile`);
    const writer = run.startCompiled('writer', 'apps/writer/src/main.js', {
      env: {
        NODE_OPTIONS: WRITER_NODE_OPTIONS,
        BENCH_TIMING: timingFile,
        ...(o.profile ? { BENCH_CPU_PROFILE: profileFile, BENCH_CPU_PROFILE_RESETS: '1' } : {}),
      },
      nodeArgs: hooks(o.profile ? ['timing-hook', 'cpu-profile-hook'] : ['timing-hook']),
    });
    await writer.waitFor(/consuming .* as group/, 60000);
    await waitForStableGroup(run, s.writerGroupId, 60000);
    const rss = new PeakMemory(writer.pid);
    const cpu = new CpuAccount(db, run.databaseName);
    cpu.track('writer (node, compiled)', writer.pid);
    cpu.track('Kafka broker (JVM)', kafkaBrokerPid());
    const producer = await connectProducer(run);
    const progress = { produced: 0 };
    const watcher = new AppendWatcher(db, total);
    const loadAvgStart = loadAvg();
    let started = performance.now();
    const ticker = new Ticker(() => {
      const t = (performance.now() - started) / 1000;
      return `ingest ${fmtInt(N)}: ${fmt(t, 1)} s, produced ${fmtInt(progress.produced)}/${fmtInt(total)}, appended ${fmtInt(watcher.appended)} (${fmtInt(watcher.appended / Math.max(t, 0.001))}/s), writer RSS ${fmtMb(memoryBytes(writer.pid, 'VmRSS') ?? 0)}`;
    });
    run.onCleanup('stop the progress line', async () => ticker.stop());
    watcher.start();
    writer.send({ bench: 'reset' });
    await cpu.start();
    ticker.start();
    started = performance.now();
    await produce(
      producer,
      { calls: s.topics.calls, connections: s.topics.connections },
      workload,
      { acks: -1, inflight: 4 },
      progress,
      () => {
        if (writer.exited) throw new Error(`the writer exited (code ${writer.exitCode}):\n${writer.tail()}`);
      },
    );
    const producedAt = performance.now();
    const doneAt = await watcher.done(writer);
    ticker.stop();
    await cpu.stop();
    workload = null; // the messages are in Kafka now; free them before the next phases
    await producer.disconnect();
    const timing = await collectTiming(writer, timingFile);
    let profile: CpuProfile | null = null;
    if (o.profile) profile = await collectChildProfile(writer, profileFile);
    const peakRss = rss.stop();
    await writer.stop();
    await checkNoDuplicates(db);
    const seconds = (doneAt - started) / 1000;
    point.ingest = {
      messages: total,
      seconds,
      rate: total / seconds,
      produceSeconds: (producedAt - started) / 1000,
      drainSeconds: (doneAt - producedAt) / 1000,
      peakRss,
      heapPeak: timing.memory?.heapUsed ?? 0,
      writerTotals: writerTotals(writer),
      cpu: cpuSummary(cpu, 'bench: producer + poller'),
      timing: timingTop(timing),
      loadAvgStart,
      ...(o.profile ? { profileFile } : {}),
    };
    save();
    say();
    say(
      `ingest at ${fmtInt(N)} connections: ${fmtInt(total)} messages, first produce → last durable append ${fmt(seconds, 1)} s = ${fmtInt(total / seconds)} events/s (produce ${fmt(point.ingest.produceSeconds, 1)} s, drain after ${fmt(point.ingest.drainSeconds, 1)} s); writer peak RSS ${fmtMb(peakRss)}, heap used peak ${fmtMb(point.ingest.heapPeak)}`,
    );
    table(point.ingest.cpu.rows);
    say();
    table(point.ingest.timing.rows);
    if (profile)
      summariseProfile(profile, { title: `writer CPU profile at ${fmtInt(N)} connections (${profileFile})`, top: 10 });

    // ---- backlog: bench:ingest's phase D (own database, dropped at once). Its failure does not stop the replay.
    if (o.phases.includes('backlog'))
      await guarded(point, 'backlog', save, async () => {
        const runD = new IsolatedRun(`scale${N}d`, {
          TOPIC_PARTITIONS: String(PARTITIONS),
          LOG_LEVEL: 'log',
          TOPIC_CALLS: s.topics.calls,
          TOPIC_VALIDATIONS: s.topics.validations,
          TOPIC_CONNECTIONS: s.topics.connections,
          TOPIC_DLQ: s.topics.dlq,
          WRITER_GROUP_ID: backlogGroup,
        });
        register(runD);
        try {
          runD.deleteGroupsAtCleanup([backlogGroup]);
          const dbD = await runD.openDatabase();
          const writerD = runD.startCompiled('writer (backlog)', 'apps/writer/src/main.js', {
            env: { NODE_OPTIONS: WRITER_NODE_OPTIONS },
          });
          const rssD = new PeakMemory(writerD.pid);
          await writerD.waitFor(/consuming .* as group/, 60000);
          await waitForStableGroup(runD, backlogGroup, 60000);
          const cpuD = new CpuAccount(dbD, runD.databaseName);
          cpuD.track('writer (node, compiled)', writerD.pid); // from here: its start-up is not counted
          cpuD.track('Kafka broker (JVM)', kafkaBrokerPid());
          const startedD = performance.now();
          const watcherD = new AppendWatcher(dbD, total).start();
          await cpuD.start();
          const tickerD = new Ticker(() => {
            const t = (performance.now() - startedD) / 1000;
            return `backlog ${fmtInt(N)}: ${fmt(t, 1)} s, appended ${fmtInt(watcherD.appended)}/${fmtInt(total)} (${fmtInt(watcherD.appended / Math.max(t, 0.001))}/s), writer RSS ${fmtMb(memoryBytes(writerD.pid, 'VmRSS') ?? 0)}`;
          }).start();
          runD.onCleanup('stop the progress line', async () => tickerD.stop());
          const doneD = await watcherD.done(writerD);
          tickerD.stop();
          await cpuD.stop();
          const peakD = rssD.stop();
          await writerD.stop();
          const secondsD = (doneD - startedD) / 1000;
          point.backlog = {
            messages: total,
            seconds: secondsD,
            rate: total / secondsD,
            peakRss: peakD,
            cpu: cpuSummary(cpuD, 'bench: poller'),
          };
          save();
          say();
          say(
            `writer on a backlog at ${fmtInt(N)} connections: group stable → last durable append ${fmt(secondsD, 1)} s = ${fmtInt(total / secondsD)} events/s; writer peak RSS ${fmtMb(peakD)}`,
          );
          table(point.backlog.cpu.rows);
        } finally {
          await runD.cleanup();
        }
      });

    // ---- replay: `ops replay` over the ingest phase's log, in its own process.
    for (const parallel of o.phases.includes('replay') ? o.replayParallel : [])
      await guarded(point, 'replay', save, async () => {
        const replayTiming = scratch('replay-timing.json');
        rmSync(replayTiming, { force: true }); // written by the replay's process when it exits
        const replayProfile = join(o.out, `scale-${N}-replay-p${parallel}.cpuprofile`);
        await db.query('VACUUM ANALYZE event_log'); // what autovacuum does to a log this size; not timed
        const cpuR = new CpuAccount(db, run.databaseName);
        cpuR.track('Redis server', await redisServerPid(s.redisUrl));
        await cpuR.start();
        const wallStart = performance.now();
        const ops = run.startCompiled('ops replay', 'apps/ops/src/main.js', {
          args: ['replay', '--batch', String(REPLAY_BATCH), '--parallel', String(parallel)],
          env: {
            BENCH_TIMING: replayTiming,
            BENCH_TIMING_AT_EXIT: '1',
            ...(o.profile ? { BENCH_CPU_PROFILE: replayProfile, BENCH_CPU_PROFILE_AT_EXIT: '1' } : {}),
          },
          nodeArgs: hooks(o.profile ? ['timing-hook', 'cpu-profile-hook'] : ['timing-hook']),
        });
        cpuR.track('ops replay (node, compiled)', ops.pid);
        const rssR = new PeakMemory(ops.pid);
        const tickerR = new Ticker(
          () =>
            `replay ${fmtInt(N)} (--parallel ${parallel}): ${fmt((performance.now() - wallStart) / 1000, 1)} s, RSS ${fmtMb(memoryBytes(ops.pid, 'VmRSS') ?? 0)}; ${[...ops.output].reverse().find((l) => /replay/.test(l)) ?? ''}`,
        ).start();
        run.onCleanup('stop the progress line', async () => tickerR.stop());
        while (!ops.exited) {
          await sleep(50);
          await cpuR.sample().catch(() => undefined);
        }
        const wallSeconds = (performance.now() - wallStart) / 1000;
        tickerR.stop();
        await cpuR.stop();
        const peakR = rssR.stop();
        if (ops.exitCode !== 0) throw new Error(`ops replay exited with code ${ops.exitCode}:\n${ops.tail()}`);
        const done = ops.output
          .map((l) => /replay done: generation (\d+) live with (\d+) events in ([\d.]+) s \((\d+) events\/s\)/.exec(l))
          .find(Boolean);
        if (!done) throw new Error(`ops replay printed no "replay done" line:\n${ops.tail()}`);
        // Its seconds are printed to 0.1 s; its rate comes from the unrounded seconds, so take those from it.
        const [generation, applied, printedRate] = [Number(done[1]), Number(done[2]), Number(done[4])];
        const replaySeconds = printedRate > 0 ? applied / printedRate : Number(done[3]);
        if (applied !== total) throw new Error(`ops replay applied ${applied} events, ${total} expected`);
        const rows: { n: string; state: string; doc: string }[] = await db.query(
          `SELECT count(*)::text AS n, coalesce(round(avg(coalesce(length(packed_state), length(state::text)))), 0)::text AS state,
                coalesce(round(avg(length(document))), 0)::text AS doc
           FROM connection_read_model WHERE generation = $1`,
          [generation],
        );
        if (Number(rows[0].n) !== N)
          throw new Error(`the replayed read model holds ${rows[0].n} connections, ${N} expected`);
        const timingR = existsSync(replayTiming) ? (JSON.parse(readFileSync(replayTiming, 'utf8')) as Timing) : null;
        const measured: ReplayResult = {
          parallel,
          events: applied,
          seconds: replaySeconds,
          rate: applied / replaySeconds,
          wallSeconds,
          peakRss: peakR,
          generation,
          connectionsInModel: Number(rows[0].n),
          stateChars: Number(rows[0].state),
          documentChars: Number(rows[0].doc),
          cpu: cpuSummary(cpuR, 'bench: poller'),
          ...(timingR ? { timing: timingTop(timingR) } : {}),
          ...(o.profile ? { profileFile: replayProfile } : {}),
        };
        point.replays = [...(point.replays ?? []), measured];
        if (!point.replay || parallel === DEFAULT_FOLD_PARALLELISM) point.replay = measured;
        save();
        say();
        say(
          `replay at ${fmtInt(N)} connections, --parallel ${parallel}: ${fmtInt(applied)} events in ${fmt(replaySeconds, 1)} s (its own figure) = ${fmtInt(applied / replaySeconds)} events/s; process wall ${fmt(wallSeconds, 1)} s; peak RSS ${fmtMb(peakR)}; read model ${fmtInt(N)} connections, per row state JSON ${fmtInt(Number(rows[0].state))} chars and document ${fmtInt(Number(rows[0].doc))} chars on average`,
        );
        table(measured.cpu.rows);
        if (measured.timing) {
          say();
          table(measured.timing.rows);
        }
        if (o.profile && existsSync(replayProfile))
          summariseProfile(JSON.parse(readFileSync(replayProfile, 'utf8')) as CpuProfile, {
            title: `replay CPU profile at ${fmtInt(N)} connections (${replayProfile})`,
            top: 10,
          });
      });
    // ---- projection: the projectors on a backlog (the ingest phase's whole log), 1 then 2 processes.
    if (o.phases.includes('projection'))
      await guarded(point, 'projection', save, async () => {
        point.projection = [];
        for (const k of o.backlogProjectors) {
          point.projection.push(await projectionBacklog(run, db, point, k, total, o.profile ? o.out : null));
          save();
        }
      });
  } finally {
    await run.cleanup();
  }
}

/**
 * The backlog a projector meets after an outage: a new empty generation made live over the whole
 * log (as if every event arrived while no projector ran), then `k` compiled projector processes
 * started together; events/s from their start until every shard has caught up, and the CPU per event
 * of each process and of PostgreSQL.
 */
async function projectionBacklog(
  run: IsolatedRun,
  db: DataSource,
  point: PointResult,
  k: number,
  total: number,
  /** With --profile: where the first projector's CPU profile goes. */
  profileDir: string | null,
): Promise<ProjectionBacklogResult> {
  const generation = await createBuildingGeneration(db);
  await switchLiveGeneration(db, generation);
  await db.query('VACUUM ANALYZE event_log');
  const cpu = new CpuAccount(db, run.databaseName);
  await cpu.start();
  const started = performance.now();
  // The first projector carries the timing hook: what its time goes to (queries, steps).
  const timingFile = scratch(`projection-${k}-timing.json`);
  const profileFile = profileDir ? join(profileDir, `scale-${point.connections}-projection-${k}.cpuprofile`) : null;
  const projectors = Array.from({ length: k }, (_, i) =>
    run.startCompiled(`projector ${i + 1} of ${k}`, 'apps/projector/src/main.js', {
      env: {
        NODE_OPTIONS: PROJECTOR_NODE_OPTIONS,
        METRICS_PORT: '0',
        PROJECTOR_REBALANCE_MS: '200',
        ...(i === 0 ? { BENCH_TIMING: timingFile } : {}),
        ...(i === 0 && profileFile ? { BENCH_CPU_PROFILE: profileFile } : {}),
      },
      nodeArgs: i === 0 ? hooks(profileFile ? ['timing-hook', 'cpu-profile-hook'] : ['timing-hook']) : [],
    }),
  );
  projectors.forEach((p, i) => cpu.track(`projector ${i + 1} of ${k} (node, compiled)`, p.pid));
  const rss = projectors.map((p) => new PeakMemory(p.pid));
  let applied = 0;
  const ticker = new Ticker(() => {
    const t = (performance.now() - started) / 1000;
    return `projection backlog ${fmtInt(point.connections)}, ${k} projector(s): ${fmt(t, 1)} s, applied ${fmtInt(applied)}/${fmtInt(total)} (${fmtInt(applied / Math.max(t, 0.001))}/s), RSS ${projectors.map((p) => fmtMb(memoryBytes(p.pid, 'VmRSS') ?? 0)).join(' + ')}`;
  }).start();
  run.onCleanup('stop the progress line', async () => ticker.stop());
  try {
    for (;;) {
      const rows: { n: string }[] = await db.query(
        `SELECT events_applied::text AS n FROM projection_progress WHERE generation = $1`,
        [generation],
      );
      applied = Number(rows[0].n);
      if (applied >= total) break;
      for (const p of projectors)
        if (p.exited) throw new Error(`a projector exited with code ${p.exitCode}:\n${p.tail()}`);
      await sleep(50);
    }
  } finally {
    ticker.stop();
  }
  const seconds = (performance.now() - started) / 1000;
  await cpu.stop();
  const peakRss = rss.map((r) => r.stop());
  // The profile first: its 'dump' message stops the profiler (the timing hook answers it too).
  if (profileFile)
    summariseProfile(await collectChildProfile(projectors[0], profileFile), {
      title: `projector 1 of ${k} CPU profile on the backlog at ${fmtInt(point.connections)} connections (${profileFile})`,
      top: 15,
    });
  const timing = timingTop(await collectTiming(projectors[0], timingFile));
  await Promise.all(projectors.map((p) => p.stop()));
  // Each projector's own account of its work (steps, connections written: how much a write carried).
  const work = projectors.map((p) => p.output.filter((l) => /stopped: applied/.test(l)).pop() ?? '');
  const rows = cpu.rows('bench: poller');
  const cpuOfRow = (prefix: string) =>
    rows.filter((r) => r[0].startsWith(prefix)).reduce((a, r) => a + Number(r[1].replace(/,/g, '')), 0);
  const result: ProjectionBacklogResult = {
    projectors: k,
    events: total,
    seconds,
    rate: total / seconds,
    ingestRatio: point.ingest ? total / seconds / point.ingest.rate : null,
    projectorUsPerEvent: projectors.map((_, i) => (cpuOfRow(`projector ${i + 1} of ${k}`) / total) * 1e6),
    postgresUsPerEvent: (cpuOfRow('PostgreSQL backends on the bench db') / total) * 1e6,
    peakRss,
    cpu: cpuSummary(cpu, 'bench: poller'),
    timing,
  };
  say();
  say(
    `projection backlog at ${fmtInt(point.connections)} connections, ${k} projector(s): ${fmtInt(total)} events in ${fmt(seconds, 1)} s = ${fmtInt(result.rate)} events/s` +
      (result.ingestRatio === null ? '' : ` (${fmt(result.ingestRatio, 2)}x the writer's ingest of this run)`) +
      `; CPU per event: projector(s) ${result.projectorUsPerEvent.map((u) => `${fmt(u, 0)} µs`).join(' + ')}, PostgreSQL ${fmt(result.postgresUsPerEvent, 0)} µs; peak RSS ${peakRss.map(fmtMb).join(' + ')}`,
  );
  table(result.cpu.rows);
  for (const [i, line] of work.entries()) {
    const said = /stopped: ([^"]*)/.exec(line);
    if (said) say(`projector ${i + 1} of ${k}: ${said[1]}`);
  }
  say();
  say(`projector 1 of ${k} (timing hook):`);
  table(timing.rows);
  return result;
}

// ---------------------------------------------------------------------------------------------------
// freshness and query, on one stack (writer, projector, API)

async function stackPoint(
  register: (run: IsolatedRun) => void,
  o: Options,
  point: PointResult,
  save: () => void,
): Promise<void> {
  const N = point.connections;
  const port = await freePort();
  // The service's defaults where isolatedEnv sets test values (PROJECTOR_IDLE_MS 20, API_KEY_CACHE_MS 1000).
  const run = new IsolatedRun(`scale${N}s`, {
    TOPIC_PARTITIONS: String(PARTITIONS),
    LOG_LEVEL: 'warn',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(port),
    PROJECTOR_IDLE_MS: '50',
    API_KEY_CACHE_MS: '2000',
  });
  register(run);
  try {
    const s = run.settings;
    const setupStart = performance.now();
    const db = await run.openDatabase();
    await run.createTopics(PARTITIONS);
    run.deleteGroupsAtCleanup([s.writerGroupId]);
    const files = {
      writer: scratch('stack-writer-timing.json'),
      projector: scratch('stack-projector-timing.json'),
      api: scratch('stack-api-timing.json'),
      apiProfile: join(o.out, `scale-${N}-api.cpuprofile`),
      projectorProfile: join(o.out, `scale-${N}-projector.cpuprofile`),
    };
    const writer = run.startCompiled('writer', 'apps/writer/src/main.js', {
      env: { NODE_OPTIONS: WRITER_NODE_OPTIONS, BENCH_TIMING: files.writer, LOG_LEVEL: 'log' },
      nodeArgs: hooks(['timing-hook']),
    });
    const profileProjector = o.profile && o.phases.includes('freshness');
    const projector = run.startCompiled('projector', 'apps/projector/src/main.js', {
      env: {
        NODE_OPTIONS: PROJECTOR_NODE_OPTIONS,
        BENCH_TIMING: files.projector,
        ...(profileProjector ? { BENCH_CPU_PROFILE: files.projectorProfile, BENCH_CPU_PROFILE_RESETS: '1' } : {}),
      },
      nodeArgs: hooks(profileProjector ? ['timing-hook', 'cpu-profile-hook'] : ['timing-hook']),
    });
    // More projectors share the shards (PostgreSQL advisory locks); the first one carries the hooks.
    const moreProjectors = Array.from({ length: Math.max(0, o.projectors - 1) }, (_, i) =>
      run.startCompiled(`projector ${i + 2}`, 'apps/projector/src/main.js', {
        env: { NODE_OPTIONS: PROJECTOR_NODE_OPTIONS },
      }),
    );
    const profileApi = o.profile && o.phases.includes('query');
    const api = run.startCompiled('api', 'apps/api/src/main.js', {
      env: {
        BENCH_TIMING: files.api,
        ...(profileApi ? { BENCH_CPU_PROFILE: files.apiProfile, BENCH_CPU_PROFILE_RESETS: '1' } : {}),
      },
      nodeArgs: hooks(profileApi ? ['timing-hook', 'cpu-profile-hook'] : ['timing-hook']),
    });
    const rss = {
      writer: new PeakMemory(writer.pid),
      projector: new PeakMemory(projector.pid),
      api: new PeakMemory(api.pid),
    };
    const apiUrl = `http://127.0.0.1:${port}`;
    await waitForHttp(api, `${apiUrl}/healthz`);
    await writer.waitFor(/consuming .* as group/, 60000);
    await waitForStableGroup(run, s.writerGroupId, 60000);
    const alive = () => {
      for (const c of [writer, projector, api])
        if (c.exited) throw new Error(`${c.name} exited (code ${c.exitCode}):\n${c.tail()}`);
    };

    // N connections (and the probe's) configured through Kafka, projected before anything is measured.
    const producer = await connectProducer(run);
    const configured = buildWorkload({ events: 0, connections: N, orgs: point.orgs, batchSize: 5000 });
    configured.connections.push({
      key: Buffer.from(`${PROBE_ORG}:probe`),
      value: Buffer.from(envelope('connection.configured', PROBE_ORG, 'probe', { provider: 'paystack' })),
    });
    const expected = N + 1;
    const produced = { produced: 0 };
    const projectStart = performance.now();
    let applied = 0;
    const tickerS = new Ticker(
      () =>
        `setup ${fmtInt(N)}: produced ${fmtInt(produced.produced)}/${fmtInt(expected)} connection.configured, projected ${fmtInt(applied)} (${fmtInt(applied / Math.max(0.001, (performance.now() - projectStart) / 1000))}/s)`,
    ).start();
    run.onCleanup('stop the progress line', async () => tickerS.stop());
    const producing = produce(
      producer,
      { calls: s.topics.calls, connections: s.topics.connections },
      configured,
      { acks: -1, inflight: 4 },
      produced,
      alive,
    );
    await waitForProjection(db, expected, alive, `setup ${fmtInt(N)}: projector`, (n) => (applied = n));
    await producing;
    tickerS.stop();
    const projectSeconds = (performance.now() - projectStart) / 1000;
    note(`${fmtInt(expected)} connections configured and projected in ${fmt(projectSeconds, 1)} s`);

    // Keys: one per org the query spreads over (org_0 .. org_{k-1}); org_0's is the probes' too.
    const k = Math.min(o.queryOrgs, point.orgs);
    const keysStart = performance.now();
    const keys = await createKeys(db, k);
    const keysSeconds = (performance.now() - keysStart) / 1000;
    const stack: ProbeStack = {
      producer,
      settings: s,
      apiKey: keys[0],
      async get(path, org, key) {
        const res = await fetch(`${apiUrl}${path}`, { headers: { 'x-org-id': org, 'x-reevit-key': key } });
        return { status: res.status, body: await res.text() };
      },
    };
    for (let t = Date.now(); (await stack.get('/v1/connections/probe', PROBE_ORG, keys[0])).status !== 200; ) {
      if (Date.now() - t > 60000) throw new Error('the probe connection is not visible in the API after 60 s');
      await sleep(50);
    }
    const setupSeconds = (performance.now() - setupStart) / 1000;

    // Load events go to connections drawn uniformly from the N.
    const rnd = seededRandom(99);
    const traffic = () => {
      const i = Math.floor(rnd() * N);
      return { org: `org_${i % point.orgs}`, conn: `conn_${i}` };
    };

    // ---- freshness
    if (o.phases.includes('freshness')) {
      const baselineRun = await runProbes(stack, {
        seconds: 10,
        rate: 0,
        connections: N,
        label: `freshness ${fmtInt(N)} baseline (no traffic)`,
        tag: 'idle',
        report: note,
      });
      const now = Date.now();
      const auto = (Math.ceil(now / 60000) * 60000 + 60000 - now) / 1000 + 5;
      const seconds = o.freshnessSeconds > 0 ? o.freshnessSeconds : auto;
      const cpu = new CpuAccount(db, run.databaseName);
      cpu.track('writer', writer.pid);
      cpu.track('projector', projector.pid);
      moreProjectors.forEach((p, i) => cpu.track(`projector ${i + 2}`, p.pid));
      cpu.track('API', api.pid);
      cpu.track('Kafka broker (JVM)', kafkaBrokerPid());
      cpu.track('Redis server', await redisServerPid(s.redisUrl));
      for (const c of [writer, projector, api]) c.send({ bench: 'reset' });
      await cpu.start();
      note(
        `freshness ${fmtInt(N)}: ${fmtInt(o.rate)} events/s for ${fmt(seconds, 0)} s${o.freshnessSeconds > 0 ? '' : ' (until two minute boundaries have passed)'}`,
      );
      const appliedBefore = await eventsApplied(db);
      let appliedAtEnd = appliedBefore;
      let projectorTiming: Timing | null = null;
      const loadRun = await runProbes(stack, {
        seconds,
        rate: o.rate,
        connections: N,
        label: `freshness ${fmtInt(N)} at ${fmtInt(o.rate)} events/s`,
        tag: 'load',
        traffic,
        report: note,
        settleMs: 120000,
        onLoadEnd: async () => {
          appliedAtEnd = await eventsApplied(db);
          await cpu.stop();
          projectorTiming = await collectTiming(projector, files.projector);
          if (profileProjector)
            summariseProfile(await collectChildProfile(projector, files.projectorProfile), {
              title: `projector CPU profile during the load at ${fmtInt(N)} connections (${files.projectorProfile})`,
              top: 12,
            });
        },
      });
      // Everything produced so far: the configured events, the baseline's probes, the load and its probes.
      const producedTotal = expected + baselineRun.probes.length + loadRun.sent + loadRun.probes.length;
      const catchUp = await waitForProjection(
        db,
        producedTotal,
        alive,
        `freshness ${fmtInt(N)}: projector catching up`,
      );
      const catchUpSeconds = Math.max(0, (catchUp - loadRun.endedAt) / 1000);
      const boundaries: number[] = [];
      for (let b = Math.ceil(loadRun.startedAt / 60000) * 60000; b <= loadRun.endedAt; b += 60000) boundaries.push(b);
      const near = (t: number) => boundaries.some((b) => t >= b - 1000 && t <= b + 10000);
      const nearRun: ProbeRun = { ...loadRun, probes: loadRun.probes.filter((p) => near(p.sentAt)) };
      const awayRun: ProbeRun = { ...loadRun, probes: loadRun.probes.filter((p) => !near(p.sentAt)) };
      point.freshness = {
        setupSeconds,
        projectSeconds,
        rate: o.rate,
        sentRate: loadRun.sent / loadRun.seconds,
        seconds: loadRun.seconds,
        baseline: summarise(baselineRun),
        load: summarise(loadRun),
        boundaries: boundaries.map((b) => new Date(b).toISOString()),
        nearBoundary: summarise(nearRun),
        awayFromBoundary: summarise(awayRun),
        projectorRate: (appliedAtEnd - appliedBefore) / loadRun.seconds,
        lagAtLoadEnd: Math.max(0, producedTotal - appliedAtEnd),
        catchUpSeconds,
        writerRss: memoryBytes(writer.pid, 'VmHWM') ?? rss.writer.peak,
        projectorRss: memoryBytes(projector.pid, 'VmHWM') ?? rss.projector.peak,
        cpu: cpuSummary(cpu, 'bench: producer + probes'),
        projectorTiming: timingTop(projectorTiming!),
        shortened: o.freshnessSeconds > 0 && boundaries.length < TARGETS.freshnessBoundaries,
      };
      save();
      const f = point.freshness;
      say();
      say(
        `freshness at ${fmtInt(N)} connections, ${fmtInt(f.sentRate)} events/s for ${fmt(f.seconds, 0)} s, ${boundaries.length} minute boundaries crossed (${f.boundaries.map((b) => b.slice(11, 19)).join(', ')}):`,
      );
      table([
        ['probes', 'n', 'visible', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
        latencyRow('baseline, no traffic (10 s)', f.baseline),
        latencyRow('under load, all', f.load),
        latencyRow('under load, sent 1 s before to 10 s after a minute boundary', f.nearBoundary),
        latencyRow('under load, the others', f.awayFromBoundary),
      ]);
      say(
        `${o.projectors === 1 ? 'projector' : `${o.projectors} projectors`}: ${fmtInt(f.projectorRate)} events/s applied during the load (${fmtInt(f.sentRate)}/s produced), ${fmtInt(f.lagAtLoadEnd)} events behind when the load ended, caught up ${fmt(f.catchUpSeconds, 1)} s after it; writer peak RSS ${fmtMb(f.writerRss)}, projector ${fmtMb(f.projectorRss)}; setup (configure + project ${fmtInt(expected)} connections) ${fmt(projectSeconds, 1)} s`,
      );
      table(f.cpu.rows);
      say();
      say('projector during the load (timing hook):');
      table(f.projectorTiming.rows);
    }

    // ---- trickle: the same probes on a stack that holds N connections but is almost idle
    if (o.phases.includes('trickle')) {
      const trickleRun = await runProbes(stack, {
        seconds: o.trickleSeconds,
        rate: TRICKLE_RATE,
        connections: N,
        label: `trickle ${fmtInt(N)} at ${TRICKLE_RATE} events/s`,
        tag: 'trickle',
        traffic,
        report: note,
      });
      point.trickle = {
        sentRate: trickleRun.sent / trickleRun.seconds,
        seconds: trickleRun.seconds,
        latency: summarise(trickleRun),
      };
      save();
      say();
      say(
        `trickle at ${fmtInt(N)} connections: ${fmt(point.trickle.sentRate, 0)} events/s of other traffic for ${fmt(point.trickle.seconds, 0)} s`,
      );
      table([
        ['probes', 'n', 'visible', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
        latencyRow(`with ${TRICKLE_RATE} events/s of other traffic`, point.trickle.latency),
      ]);
    }

    // ---- query
    if (o.phases.includes('query')) {
      const orgs = Array.from({ length: k }, (_, i) => `org_${i}`);
      const rnd = seededRandom(7);
      type Req = { headers: Record<string, string> };
      const oneOrg = (req: Req) => {
        req.headers = { ...req.headers, 'x-org-id': orgs[0], 'x-reevit-key': keys[0] };
        return req;
      };
      const manyOrgs = (req: Req) => {
        const i = Math.floor(rnd() * k);
        req.headers = { ...req.headers, 'x-org-id': orgs[i], 'x-reevit-key': keys[i] };
        return req;
      };
      const url = `${apiUrl}/v1/connections`;
      const runs: QueryRun[] = [];
      let profile: CpuProfile | null = null;
      // Redis holds an org only once it has been read (the projector updates only orgs Redis already
      // holds): read every org once first, so that the timed runs measure the steady state, not the
      // first read of each org from PostgreSQL. Its rate is reported apart.
      const primeStart = performance.now();
      let primed = 0;
      const primeTicker = new Ticker(
        () => `query ${fmtInt(N)}: priming ${fmtInt(Math.min(primed, k))}/${fmtInt(k)} orgs`,
      ).start();
      await Promise.all(
        Array.from({ length: o.clients }, async () => {
          for (let i = primed++; i < k; i = primed++) {
            const res = await fetch(url, { headers: { 'x-org-id': orgs[i], 'x-reevit-key': keys[i] } });
            await res.arrayBuffer();
            if (res.status !== 200)
              throw new Error(`priming: GET /v1/connections for ${orgs[i]} answered ${res.status}`);
          }
        }),
      );
      primeTicker.stop();
      const primeSeconds = (performance.now() - primeStart) / 1000;
      note(`query ${fmtInt(N)}: every org read once in ${fmt(primeSeconds, 1)} s (${fmtInt(k / primeSeconds)} orgs/s)`);
      for (let round = 1; round <= o.queryRounds; round++) {
        for (const [label, setup, n] of [
          ['1 org', oneOrg, 1],
          [`${fmtInt(k)} orgs`, manyOrgs, k],
        ] as const) {
          const name = `query ${fmtInt(N)} round ${round}/${o.queryRounds} ${label}`;
          await load(url, {}, o.clients, 2, `${name} warm-up`, setup);
          api.send({ bench: 'reset' });
          const before = cpuSeconds(api.pid) ?? 0;
          const r: AutocannonResult = await load(url, {}, o.clients, o.queryDuration, name, setup);
          const cores = ((cpuSeconds(api.pid) ?? 0) - before) / r.duration;
          if (r.non2xx > 0 || r.errors > 0) throw new Error(`${name}: ${r.non2xx} non-2xx answers, ${r.errors} errors`);
          const timing = await collectTiming(api, files.api);
          if (profileApi && n > 1 && round === o.queryRounds)
            profile = await collectChildProfile(api, files.apiProfile);
          runs.push({
            label,
            orgs: n,
            round,
            rps: r.requests.average,
            p50: r.latency.p50,
            p99: r.latency.p99,
            apiCores: cores,
            cpuUsPerRequest: (cores * 1e6) / r.requests.average,
            timing: timingTop(timing, r.requests.total),
          });
        }
      }
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const one = mean(runs.filter((r) => r.orgs === 1).map((r) => r.rps));
      const many = mean(runs.filter((r) => r.orgs === k).map((r) => r.rps));
      point.query = {
        orgs: k,
        keysSeconds,
        primeSeconds,
        oneOrgRps: one,
        manyOrgsRps: many,
        ratio: many / one,
        runs,
        apiRss: memoryBytes(api.pid, 'VmHWM') ?? rss.api.peak,
        ...(profile ? { profileFile: files.apiProfile } : {}),
      };
      save();
      say();
      say(
        `query at ${fmtInt(N)} connections: GET /v1/connections, autocannon ${o.clients} connections × ${o.queryDuration} s; ${fmtInt(k)} orgs each with its own key (keys made in ${fmt(keysSeconds, 1)} s)`,
      );
      table([
        ['run', 'round', 'req/s', 'p50 ms', 'p99 ms', 'API cores', 'API CPU µs/req'],
        ...runs.map((r) => [
          r.label,
          String(r.round),
          fmtInt(r.rps),
          fmt(r.p50, 0),
          fmt(r.p99, 0),
          fmt(r.apiCores, 2),
          fmtInt(r.cpuUsPerRequest),
        ]),
      ]);
      say(
        `mean req/s: 1 org ${fmtInt(one)}, ${fmtInt(k)} orgs ${fmtInt(many)} (ratio ${fmt(many / one, 2)}); API peak RSS ${fmtMb(point.query.apiRss)}; before the runs every org was read once in ${fmt(primeSeconds, 1)} s (${fmtInt(k / primeSeconds)} first reads/s)`,
      );
      const last = runs[runs.length - 1];
      say();
      say(`API during the last ${last.label} run (timing hook; items column = calls per request):`);
      table(last.timing.rows);
      if (profile)
        summariseProfile(profile, { title: `API CPU profile, last ${last.label} run (${files.apiProfile})`, top: 10 });
    }
    for (const c of [writer, projector, api]) await c.stop();
    for (const r of Object.values(rss)) r.stop();
  } finally {
    await run.cleanup();
  }
}

async function eventsApplied(db: DataSource): Promise<number> {
  const r: { n: string }[] = await db.query(
    `SELECT events_applied::text AS n FROM projection_progress WHERE status = 'live'`,
  );
  return Number(r[0].n);
}

/** Waits until the live projection has applied `expected` events; returns when (epoch ms). */
async function waitForProjection(
  db: DataSource,
  expected: number,
  alive: () => void,
  label: string,
  onProgress: (applied: number) => void = () => undefined,
): Promise<number> {
  let applied = 0;
  let lastProgress = Date.now();
  for (;;) {
    const n = await eventsApplied(db);
    if (n > applied) lastProgress = Date.now();
    applied = n;
    onProgress(n);
    if (applied >= expected) return Date.now();
    alive();
    if (Date.now() - lastProgress > 120000)
      throw new Error(`${label}: no projection progress for 120 s (${applied}/${expected} events applied)`);
    await sleep(250);
  }
}

async function createKeys(db: DataSource, n: number): Promise<string[]> {
  const store = new ApiKeyStore(db);
  const keys: string[] = new Array(n);
  let next = 0;
  const ticker = new Ticker(() => `creating API keys: ${fmtInt(Math.min(next, n))}/${fmtInt(n)}`).start();
  try {
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = next++; i < n; i = next++)
          keys[i] = (await store.create(`org_${i}`, ['connections:read'], 'test')).key;
      }),
    );
  } finally {
    ticker.stop();
  }
  return keys;
}

// ---------------------------------------------------------------------------------------------------
// Measuring helpers

/** The peak RSS (VmHWM) of a process, sampled every 100 ms while it lives (so also for one that exits). */
class PeakMemory {
  peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    this.timer = setInterval(() => this.sample(), 100);
    this.sample();
  }

  private sample(): void {
    const v = memoryBytes(this.pid, 'VmHWM');
    if (v !== null && v > this.peak) this.peak = v;
  }

  stop(): number {
    this.sample();
    clearInterval(this.timer);
    return this.peak;
  }
}

function loadAvg(): number[] {
  return safeRead('/proc/loadavg').split(' ').slice(0, 3).map(Number);
}

/** Processes that used more than 5% of a core over one second (what else is running), by name. */
async function busyProcesses(): Promise<string[]> {
  const sample = () => {
    const m = new Map<number, { cpu: number; name: string }>();
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      const stat = safeRead(`/proc/${e}/stat`);
      if (!stat) continue;
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = safeRead(`/proc/${e}/cmdline`).replace(/\0/g, ' ').trim();
      m.set(Number(e), {
        cpu: (Number(f[11]) + Number(f[12])) / 100,
        name: cmd.slice(0, 90) || stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
      });
    }
    return m;
  };
  const a = sample();
  await sleep(1000);
  const b = sample();
  const out: string[] = [];
  for (const [pid, v] of b) {
    const used = v.cpu - (a.get(pid)?.cpu ?? v.cpu);
    if (used >= 0.05 && pid !== process.pid) out.push(`${v.name} (pid ${pid}, ${fmt(used, 2)} cores)`);
  }
  return out;
}

/** CPU seconds of the row of a CPU table whose name starts with `prefix` (null when there is none). */
function cpuOf(cpu: CpuSummary, prefix: string): number | null {
  const row = cpu.rows.find((r) => r[0].startsWith(prefix) && !r[0].startsWith(`${prefix}-`));
  return row ? Number(row[1].replace(/,/g, '')) : null;
}

function cpuSummary(cpu: CpuAccount, selfName: string): CpuSummary {
  const rows = cpu.rows(selfName);
  const num = (prefix: string) => Number((rows.find((r) => r[0].startsWith(prefix))?.[2] ?? 'NaN').replace(/,/g, ''));
  return { seconds: cpu.seconds, otherCores: num('everything else'), machineCores: num('whole machine'), rows };
}

/** The timing hook's table, top 10 rows; with `requests`, the items column is calls per request. */
function timingTop(timing: Timing, requests?: number): TimingTop {
  const rows = timingRows(timing);
  if (requests)
    for (const [i, [key]] of Object.entries(timing.stats)
      .sort((x, y) => y[1].totalMs - x[1].totalMs)
      .entries())
      rows[i + 1][6] = fmt(timing.stats[key].count / requests, 3);
  if (requests) rows[0][6] = 'calls/request';
  return { seconds: timing.seconds, rows: rows.slice(0, 11) };
}

function summarise(run: ProbeRun): LatencySummary {
  // A probe that never became visible counts as infinitely late, so it is never left out of a percentile.
  const all = run.probes.map((p) => (p.visibleAt === null ? Infinity : p.visibleAt - p.sentAt)).sort((a, b) => a - b);
  const finite = (x: number) => (Number.isFinite(x) ? x : null);
  return {
    probes: all.length,
    visible: latencies(run).length,
    p50: finite(percentile(all, 50)),
    p90: finite(percentile(all, 90)),
    p99: finite(percentile(all, 99)),
    max: finite(all.length ? all[all.length - 1] : NaN),
  };
}

function latencyRow(name: string, l: LatencySummary): string[] {
  const v = (x: number | null) => (l.probes === 0 ? '–' : x === null ? 'never' : fmtInt(x));
  return [name, fmtInt(l.probes), fmtInt(l.visible), v(l.p50), v(l.p90), v(l.p99), v(l.max)];
}

// ---------------------------------------------------------------------------------------------------
// The report: tables, targets, chart (also from a saved JSON with --render)

function report(results: ScaleResults, extraSvg: string[], svgFile: string): void {
  const pts = [...results.points].sort((a, b) => a.connections - b.connections);
  const mb = (b?: number) => (b ? fmtMb(b) : '–');
  const rate = (r?: number) => (r ? fmtInt(r) : '–');
  const maxOf = (...xs: (number | undefined)[]) => Math.max(0, ...xs.filter((x): x is number => x !== undefined));
  say(
    `bench:scale — code ${results.code}; started ${results.startedAt}${results.finishedAt ? `, finished ${results.finishedAt}` : ' (unfinished)'}`,
  );
  say(`command: ${results.command}`);
  say();
  say('ingest and replay (events/s over all messages: one connection.configured per connection + the call events)');
  table([
    [
      'connections',
      'orgs',
      'messages',
      'ingest end to end',
      'writer on a backlog',
      'writer peak RSS',
      'replay',
      'replay peak RSS',
      'other load (cores)',
    ],
    ...pts.map((p) => [
      fmtInt(p.connections),
      fmtInt(p.orgs),
      fmtInt(p.connections + p.events),
      rate(p.ingest?.rate),
      rate(p.backlog?.rate),
      mb(maxOf(p.ingest?.peakRss, p.backlog?.peakRss, p.freshness?.writerRss)),
      rate(p.replay?.rate),
      mb(p.replay?.peakRss),
      [p.ingest?.cpu.otherCores, p.backlog?.cpu.otherCores, p.replay?.cpu.otherCores]
        .map((x) => (x === undefined ? '–' : fmt(x, 2)))
        .join(' / '),
    ]),
  ]);
  if (pts.some((p) => (p.replays?.length ?? 0) > 1)) {
    say();
    say('replays by shards folded at once (ops replay --parallel), over the same log, in the order run');
    const cpuPerEvent = (cpu: CpuSummary, row: string, events: number) => {
      const secs = cpuOf(cpu, row);
      return secs === null ? '–' : fmt((secs * 1e6) / events, 1);
    };
    table([
      ['connections', '--parallel', 'events/s', '× the first', 'ops CPU µs/event', 'PostgreSQL µs/event', 'peak RSS'],
      ...pts.flatMap((p) =>
        (p.replays ?? []).map((r) => [
          fmtInt(p.connections),
          String(r.parallel ?? '?'),
          rate(r.rate),
          fmt(r.rate / p.replays![0].rate, 2),
          cpuPerEvent(r.cpu, 'ops replay', r.events),
          cpuPerEvent(r.cpu, `${PG_SERVICE}-ops"`, r.events),
          mb(r.peakRss),
        ]),
      ),
    ]);
  }
  if (pts.some((p) => p.projection)) {
    say();
    say(
      'projectors on a backlog (the whole log, a new live generation; 1 then 2 projector processes; 16 shards shared through PostgreSQL)',
    );
    table([
      [
        'connections',
        'projectors',
        'events/s',
        '× ingest',
        'projector CPU µs/event (each)',
        'PostgreSQL µs/event',
        'peak RSS',
        'other load (cores)',
      ],
      ...pts.flatMap((p) =>
        (p.projection ?? []).map((r) => [
          fmtInt(p.connections),
          String(r.projectors),
          fmtInt(r.rate),
          r.ingestRatio === null ? '–' : fmt(r.ingestRatio, 2),
          r.projectorUsPerEvent.map((u) => fmt(u, 0)).join(' + '),
          fmt(r.postgresUsPerEvent, 0),
          r.peakRss.map(fmtMb).join(' + '),
          fmt(r.cpu.otherCores, 2),
        ]),
      ),
    ]);
  }
  say();
  say(
    'CPU per event, µs (CPU seconds of the process and of its PostgreSQL backends over the events it handled; what the other load on the machine does not change)',
  );
  const us = (cpu: CpuSummary | undefined, row: string, events: number | undefined) => {
    const secs = cpu && events ? cpuOf(cpu, row) : null;
    return secs === null || !events ? '–' : fmt((secs * 1e6) / events, 1);
  };
  table([
    [
      'connections',
      'ingest: writer',
      'ingest: PG',
      'backlog: writer',
      'backlog: PG',
      'replay: ops',
      'replay: PG',
      'freshness: projector',
      'freshness: PG (all)',
    ],
    ...pts.map((p) => {
      const applied = p.freshness ? p.freshness.projectorRate * p.freshness.seconds : undefined;
      return [
        fmtInt(p.connections),
        us(p.ingest?.cpu, 'writer (node', p.ingest?.messages),
        us(p.ingest?.cpu, `${PG_SERVICE}"`, p.ingest?.messages),
        us(p.backlog?.cpu, 'writer (node', p.backlog?.messages),
        us(p.backlog?.cpu, `${PG_SERVICE}"`, p.backlog?.messages),
        us(p.replay?.cpu, 'ops replay', p.replay?.events),
        us(p.replay?.cpu, `${PG_SERVICE}-ops"`, p.replay?.events),
        us(p.freshness?.cpu, 'projector', applied),
        us(p.freshness?.cpu, `${PG_SERVICE}"`, applied),
      ];
    }),
  ]);
  say();
  say('freshness (produce → visible in the API) and the query API');
  table([
    [
      'connections',
      'load events/s',
      's',
      'minute boundaries',
      'p50 ms',
      'p99 ms',
      'max ms',
      'p99 near a boundary',
      'API req/s 1 org',
      'API req/s many orgs',
      'orgs',
      'ratio',
      'API peak RSS',
    ],
    ...pts.map((p) => {
      const f = p.freshness;
      const q = p.query;
      const v = (x?: number | null) => (x === undefined ? '–' : x === null ? 'never' : fmtInt(x));
      return [
        fmtInt(p.connections),
        v(f?.sentRate),
        f ? fmt(f.seconds, 0) : '–',
        f ? String(f.boundaries.length) : '–',
        v(f?.load.p50),
        v(f?.load.p99),
        v(f?.load.max),
        f && f.nearBoundary.probes > 0 ? v(f.nearBoundary.p99) : '–',
        v(q?.oneOrgRps),
        v(q?.manyOrgsRps),
        v(q?.orgs),
        q ? fmt(q.ratio, 2) : '–',
        mb(q?.apiRss),
      ];
    }),
  ]);
  for (const p of pts)
    for (const e of p.errors)
      say(`ERROR at ${fmtInt(p.connections)} connections, ${e.phase}: ${e.message.split('\n')[0]}`);
  say();
  const t = targets(results);
  table([['target', 'got', 'verdict'], ...t], { alignNumbers: false });
  const svg = chart(results);
  for (const file of [svgFile, ...extraSvg]) writeFileSync(file, svg);
}

function targets(results: ScaleResults): string[][] {
  const at = (n: number) => results.points.find((p) => p.connections === n);
  const base = at(200);
  const otherRun = (p: PointResult) => (p.run && base?.run && p.run !== base.run ? ' (200 from another run)' : '');
  const rows: string[][] = [];
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');
  const none = 'not measured';
  for (const [n, share] of [
    [100000, TARGETS.ingestAt100k],
    [1000000, TARGETS.ingestAt1M],
  ] as const) {
    const p = at(n);
    const name = `ingest at ${short(n)} connections ≥ ${share}× the 200-connection figure (end to end)`;
    if (!p?.ingest || !base?.ingest) rows.push([name, none, '–']);
    else {
      const r = p.ingest.rate / base.ingest.rate;
      rows.push([
        name,
        `${fmtInt(p.ingest.rate)} vs ${fmtInt(base.ingest.rate)} = ${fmt(r, 2)}×${otherRun(p)}`,
        verdict(r >= share),
      ]);
      const cpu = (q: PointResult) =>
        (cpuOf(q.ingest!.cpu, 'writer (node') ?? NaN) + (cpuOf(q.ingest!.cpu, `${PG_SERVICE}"`) ?? NaN);
      const [c0, c1] = [(cpu(base) * 1e6) / base.ingest.messages, (cpu(p) * 1e6) / p.ingest.messages];
      if (Number.isFinite(c0) && Number.isFinite(c1))
        rows.push([
          '  (the same by CPU per event, writer + its PostgreSQL backend; informational)',
          `${fmt(c0, 1)} → ${fmt(c1, 1)} µs per event = ${fmt(c0 / c1, 2)}×`,
          c0 / c1 >= share ? '(pass)' : '(miss)',
        ]);
      if (p.backlog && base.backlog) {
        const rb = p.backlog.rate / base.backlog.rate;
        rows.push([
          `  (writer on a backlog, same ratio; informational)`,
          `${fmtInt(p.backlog.rate)} vs ${fmtInt(base.backlog.rate)} = ${fmt(rb, 2)}×${otherRun(p)}`,
          rb >= share ? '(pass)' : '(miss)',
        ]);
      }
    }
  }
  const writerPeaks = results.points
    .map((p) => ({
      n: p.connections,
      peak: Math.max(p.ingest?.peakRss ?? 0, p.backlog?.peakRss ?? 0, p.freshness?.writerRss ?? 0),
    }))
    .filter((x) => x.peak > 0);
  const worst = writerPeaks.reduce((a, b) => (b.peak > a.peak ? b : a), { n: 0, peak: 0 });
  // A writer that ran out of its heap (--max-old-space-size) failed its phase: its peak is not a pass.
  const outOfHeap = results.points.flatMap((p) =>
    p.errors
      .filter((e) => /writer.*exited[\s\S]*heap out of memory/.test(e.message))
      .map((e) => `${short(p.connections)} ${e.phase}`),
  );
  rows.push([
    'writer peak RSS ≤ 256 MB at every point (ingest, backlog and freshness writers)',
    writerPeaks.length
      ? `max ${fmtMb(worst.peak)} (at ${short(worst.n)}); ${writerPeaks.map((x) => `${short(x.n)}: ${fmtMb(x.peak)}`).join(', ')}${outOfHeap.length ? `; writer out of heap: ${outOfHeap.join(', ')}` : ''}`
      : none,
    writerPeaks.length ? verdict(worst.peak <= TARGETS.writerRss && outOfHeap.length === 0) : '–',
  ]);
  const r100 = at(100000)?.replay;
  rows.push(
    r100
      ? [
          'replay at 100k connections ≥ 150,000 events/s',
          `${fmtInt(r100.rate)} events/s`,
          verdict(r100.rate >= TARGETS.replayAt100k),
        ]
      : ['replay at 100k connections ≥ 150,000 events/s', none, '–'],
  );
  rows.push(
    r100 && base?.replay
      ? [
          'replay at 100k connections ≥ 0.6× the 200-connection figure',
          `${fmtInt(r100.rate)} vs ${fmtInt(base.replay.rate)} = ${fmt(r100.rate / base.replay.rate, 2)}×${otherRun(at(100000)!)}`,
          verdict(r100.rate / base.replay.rate >= TARGETS.replayShareAt100k),
        ]
      : ['replay at 100k connections ≥ 0.6× the 200-connection figure', none, '–'],
  );
  const r200 = base?.replay;
  if (r100 && r200) {
    const cpu = (r: ReplayResult) =>
      (((cpuOf(r.cpu, 'ops replay') ?? NaN) + (cpuOf(r.cpu, `${PG_SERVICE}-ops"`) ?? NaN)) * 1e6) / r.events;
    rows.push([
      '  (the same by CPU per event, ops replay + its PostgreSQL backend; informational)',
      `${fmt(cpu(r200), 1)} → ${fmt(cpu(r100), 1)} µs per event = ${fmt(cpu(r200) / cpu(r100), 2)}×; on one core of its own ≈ ${fmtInt(1e6 / cpu(r100))} events/s`,
      cpu(r200) / cpu(r100) >= TARGETS.replayShareAt100k ? '(pass)' : '(miss)',
    ]);
  }
  const p1m = at(1000000);
  const replayError1m = p1m?.errors.find((e) => e.phase === 'replay' || e.phase === 'ingest');
  rows.push(
    p1m?.replay
      ? [
          `replay at 1M connections completes within bounded memory (peak RSS ≤ ${fmtMb(TARGETS.replayRss)})`,
          `${fmtInt(p1m.replay.events)} events, ${fmtInt(p1m.replay.connectionsInModel)} connections, peak RSS ${fmtMb(p1m.replay.peakRss)}`,
          verdict(p1m.replay.peakRss <= TARGETS.replayRss),
        ]
      : [
          `replay at 1M connections completes within bounded memory (peak RSS ≤ ${fmtMb(TARGETS.replayRss)})`,
          replayError1m ? `${replayError1m.phase} failed: ${replayError1m.message.split('\n')[0]}` : none,
          replayError1m ? 'MISS' : '–',
        ],
  );
  const f100 = at(100000)?.freshness;
  const ms = (x: number | null) => (x === null ? 'not visible within 120 s of the load' : `${fmtInt(x)} ms`);
  const within = (x: number | null) => x !== null && x <= TARGETS.freshnessP99;
  rows.push(
    f100
      ? [
          'freshness at 100k connections, 5,000 events/s: p99 ≤ 500 ms, minute boundaries included',
          `p99 ${ms(f100.load.p99)} (near boundaries ${ms(f100.nearBoundary.p99)}); p50 ${ms(f100.load.p50)}; ${fmtInt(f100.load.visible)} of ${fmtInt(f100.load.probes)} probes visible; ${fmtInt(f100.sentRate)} events/s over ${fmt(f100.seconds, 0)} s, ${f100.boundaries.length} boundaries; projector ${fmtInt(f100.projectorRate)} events/s`,
          f100.boundaries.length < TARGETS.freshnessBoundaries
            ? `${verdict(within(f100.load.p99))} (only ${f100.boundaries.length} boundary)`
            : verdict(within(f100.load.p99) && (f100.nearBoundary.probes === 0 || within(f100.nearBoundary.p99))),
        ]
      : ['freshness at 100k connections, 5,000 events/s: p99 ≤ 500 ms, minute boundaries included', none, '–'],
  );
  const t100 = at(100000)?.trickle;
  rows.push(
    t100
      ? [
          `trickle freshness on a stack holding 100k connections (${TRICKLE_RATE} events/s of other traffic): p50 ≤ ${TARGETS.trickleP50At100k} ms`,
          `p50 ${ms(t100.latency.p50)}, p90 ${ms(t100.latency.p90)}, p99 ${ms(t100.latency.p99)}; ${fmtInt(t100.latency.visible)} of ${fmtInt(t100.latency.probes)} probes visible over ${fmt(t100.seconds, 0)} s`,
          verdict(t100.latency.p50 !== null && t100.latency.p50 <= TARGETS.trickleP50At100k),
        ]
      : [`trickle freshness on a stack holding 100k connections: p50 ≤ ${TARGETS.trickleP50At100k} ms`, none, '–'],
  );
  for (const p of results.points)
    if (p.query && p.query.orgs >= TARGETS.apiOrgs)
      rows.push([
        `API over ${fmtInt(p.query.orgs)} orgs ≥ 0.5× the 1-org req/s (at ${short(p.connections)} connections)`,
        `${fmtInt(p.query.manyOrgsRps)} vs ${fmtInt(p.query.oneOrgRps)} = ${fmt(p.query.ratio, 2)}×`,
        verdict(p.query.ratio >= TARGETS.apiShare),
      ]);
  if (!results.points.some((p) => p.query && p.query.orgs >= TARGETS.apiOrgs))
    rows.push([`API over 20,000 orgs ≥ 0.5× the 1-org req/s`, `not measured (no point with ≥ 20,000 orgs)`, '–']);
  const apiPeaks = results.points.filter((p) => p.query).map((p) => ({ n: p.connections, peak: p.query!.apiRss }));
  const worstApi = apiPeaks.reduce((a, b) => (b.peak > a.peak ? b : a), { n: 0, peak: 0 });
  rows.push([
    'API peak RSS ≤ 512 MB at every point',
    apiPeaks.length
      ? `max ${fmtMb(worstApi.peak)} (at ${short(worstApi.n)}); ${apiPeaks.map((x) => `${short(x.n)}: ${fmtMb(x.peak)}`).join(', ')}`
      : none,
    apiPeaks.length ? verdict(worstApi.peak <= TARGETS.apiRss) : '–',
  ]);
  return rows;
}

function chart(results: ScaleResults): string {
  const pts = [...results.points].sort((a, b) => a.connections - b.connections);
  const series = (name: string, color: string, get: (p: PointResult) => number | undefined, dashed = false) => ({
    name,
    color,
    dashed,
    labelsBelow: name.startsWith('ingest'),
    points: pts.filter((p) => get(p) !== undefined).map((p) => ({ x: p.connections, y: get(p)! })),
  });
  const base = pts.find((p) => p.connections === 200);
  const events = [...new Set(pts.map((p) => p.events))];
  const machineOf = (k: string) => results.machine.find(([n]) => n === k)?.[1] ?? '?';
  const others = pts
    .flatMap((p) => [p.ingest?.cpu, p.backlog?.cpu, p.replay?.cpu])
    .filter((c): c is CpuSummary => c !== undefined)
    .map((c) => c.otherCores)
    .filter(Number.isFinite);
  return lineChartSvg({
    title: 'psp-connections: events/s against connections (orgs of 5)',
    subtitle: `npm run bench:scale, ${results.startedAt.slice(0, 10)}, code ${results.code.split(' ')[0]}; ${machineOf('nproc')} cores, ${machineOf('CPU')}`,
    xLabel: 'connections (log scale)',
    yLabel: 'events/s (log scale)',
    logY: true,
    series: [
      series('ingest, end to end', '#1f77b4', (p) => p.ingest?.rate),
      series('writer on a backlog', '#1f77b4', (p) => p.backlog?.rate, true),
      series('replay (ops replay)', '#d62728', (p) => p.replay?.rate),
    ],
    hlines: [
      { y: TARGETS.replayAt100k, label: 'replay target 150k', color: '#d62728' },
      ...(base?.ingest
        ? [{ y: base.ingest.rate * TARGETS.ingestAt100k, label: 'ingest 0.7× at 200', color: '#1f77b4' }]
        : []),
    ],
    notes: [
      `Each point: its connections' connection.configured events + ${events.length === 1 ? fmtInt(events[0]) : events.map(fmtInt).join(' / ')} call events (${pts.map((p) => `${short(p.connections)}: ${short(p.events)}`).join(', ')}).`,
      'Ingest: compiled writer (--max-old-space-size=128), first produce → last durable append; backlog: a second writer over the full topics.',
      ...(others.length
        ? [
            `Other load on the machine (not this bench) during these phases: ${fmt(Math.min(...others), 2)}–${fmt(Math.max(...others), 2)} of ${machineOf('nproc')} cores.`,
          ]
        : []),
      ...pts.flatMap((p) =>
        p.errors.map(
          (e) =>
            `Not measured: ${short(p.connections)} ${e.phase}: ${/heap out of memory/.test(e.message) ? 'a writer ran out of its heap (JavaScript heap out of memory)' : e.message.split('\n')[0].slice(0, 70)}.`,
        ),
      ),
    ],
  });
}
