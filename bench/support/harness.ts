/**
 * What every benchmark shares: the servers (the local stack, or BENCH_* variables), an isolated run
 * (own database, topics, consumer groups, Redis prefix) that is always cleaned up (also on Ctrl-C),
 * child processes started from the compiled code in dist/, a progress line, result tables, and the
 * machine's description.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import { dirname, join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { loadSettings, Settings } from '@psp/config';
import { intakeTopics, waitForPartitionLeaders } from '@psp/messaging';
import { answers, SERVERS_ENV, TestServers } from '../../test/support/servers';
import { dropIsolated, isolatedEnv, openDatabase } from '../../test/support/isolated-stack';

/** The repository root (the folder holding this project's package.json), from src or from dist. */
export const ROOT = (() => {
  let dir = __dirname;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'psp-connections') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root (package.json of psp-connections)');
    dir = up;
  }
})();

/**
 * The V8 options (`--max-old-space-size` and the like) a service runs with when started as deployed,
 * read from its npm script in package.json (`start:writer`, `start:projector`): benches start the
 * service with the same heap bound, from that one place.
 */
export function serviceNodeOptions(script: string): string {
  const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> })
    .scripts;
  const command = scripts[script];
  if (command === undefined) throw new Error(`package.json has no script ${script}`);
  return command
    .split(/\s+/)
    .filter((word) => /^--max-[a-z-]+=\d+$/.test(word))
    .join(' ');
}


// ---------------------------------------------------------------------------------------------------
// Output

export function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function fmt(n: number, digits = 1): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function fmtMb(bytes: number): string {
  return `${fmt(bytes / 1024 / 1024, 0)} MB`;
}

/** Prints rows as an aligned text table (first row is the header). Numbers-looking cells align right. */
export function table(rows: string[][], options: { alignNumbers?: boolean } = {}): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const numeric = (s: string) => options.alignNumbers !== false && /^[-+]?[\d,.]+(\s?\S+)?$/.test(s) && /\d/.test(s);
  const line = (r: string[]) =>
    r
      .map((c, i) => (i > 0 && numeric(c) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  say(line(rows[0]));
  say(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows.slice(1)) say(line(r));
}

/** A progress line on stderr: redrawn in place on a TTY, a new line every few seconds otherwise. */
export class Ticker {
  private timer?: NodeJS.Timeout;
  private readonly tty = Boolean(process.stderr.isTTY);

  constructor(private readonly render: () => string) {}

  start(): this {
    this.timer = setInterval(() => this.draw(), this.tty ? 500 : 2000);
    return this;
  }

  draw(): void {
    const text = this.render();
    if (this.tty) process.stderr.write(`\r${text}\u001b[K`);
    else process.stderr.write(`${text}\n`);
  }

  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.draw();
    if (this.tty) process.stderr.write('\n');
  }
}

export function note(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

// ---------------------------------------------------------------------------------------------------
// Arguments

/** `--name value` / `--name=value` / `--flag` arguments; numbers accept 1_000_000, 1,000,000 and 1e6. */
export function args(argv = process.argv.slice(2)): {
  num(name: string, fallback: number): number;
  flag(name: string): boolean;
  str(name: string, fallback: string): string;
} {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) values.set(a.slice(2, eq), a.slice(eq + 1));
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) values.set(a.slice(2), argv[++i]);
    else values.set(a.slice(2), 'true');
  }
  return {
    num(name, fallback) {
      const raw = values.get(name);
      if (raw === undefined) return fallback;
      const n = Number(raw.replace(/[_,]/g, ''));
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number (got ${raw})`);
      return n;
    },
    flag: (name) => values.get(name) === 'true',
    str: (name, fallback) => values.get(name) ?? fallback,
  };
}

// ---------------------------------------------------------------------------------------------------
// Servers and the isolated run

/** Points the test helpers at the servers: BENCH_DATABASE_URL / BENCH_REDIS_URL / BENCH_KAFKA_BROKERS, else the local stack. */
export async function useServers(): Promise<TestServers> {
  const servers: TestServers = {
    databaseUrl: process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    redisUrl: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/0',
    kafkaBrokers: process.env.BENCH_KAFKA_BROKERS ?? '127.0.0.1:9092',
  };
  const endpoints: [string, string, number][] = [
    ['PostgreSQL', new URL(servers.databaseUrl).hostname, Number(new URL(servers.databaseUrl).port || 5432)],
    ['Redis', new URL(servers.redisUrl).hostname, Number(new URL(servers.redisUrl).port || 6379)],
    ...servers.kafkaBrokers
      .split(',')
      .map((b): [string, string, number] => [
        'Kafka',
        b.slice(0, b.lastIndexOf(':')),
        Number(b.slice(b.lastIndexOf(':') + 1)),
      ]),
  ];
  const down: string[] = [];
  for (const [name, host, port] of endpoints)
    if (!(await answers(host, port, 2000))) down.push(`${name} (${host}:${port})`);
  if (down.length > 0)
    throw new Error(
      `not reachable: ${down.join(', ')}. Run: npm run stack:up (or set BENCH_DATABASE_URL / BENCH_REDIS_URL / BENCH_KAFKA_BROKERS)`,
    );
  process.env[SERVERS_ENV] = JSON.stringify(servers);
  return servers;
}

type Cleanup = { label: string; run: () => Promise<unknown> };

/**
 * One benchmark's isolated resources. Everything created is registered for cleanup, which runs once,
 * in reverse order, at the end, on an error and on Ctrl-C: child processes are stopped, consumer
 * groups and topics deleted, the database dropped and the Redis keys under the prefix deleted.
 */
export class IsolatedRun {
  readonly env: Record<string, string>;
  readonly settings: Settings;
  readonly databaseName: string;
  private readonly cleanups: Cleanup[] = [];
  private cleaning?: Promise<void>;
  private readonly children = new Set<BenchChild>();
  private kafka?: Kafka;

  constructor(label: string, overrides: Record<string, string> = {}) {
    // The benches measure the service without the per-org rate limit (RATE_LIMIT_PER_MINUTE=0: off).
    this.env = isolatedEnv(label, { RATE_LIMIT_PER_MINUTE: '0', ...overrides });
    this.settings = loadSettings(this.env);
    this.databaseName = new URL(this.settings.databaseUrl).pathname.slice(1);
    // Registered first, so it runs last: the database and the Redis keys (never FLUSHALL).
    this.onCleanup('drop database and Redis keys', () => dropIsolated(this.settings));
  }

  onCleanup(label: string, run: () => Promise<unknown>): void {
    this.cleanups.push({ label, run });
  }

  /** A kafkajs client for the bench itself (quiet). */
  kafkaClient(): Kafka {
    this.kafka ??= new Kafka({
      clientId: `${this.settings.kafkaClientId}-bench`,
      brokers: this.settings.kafkaBrokers,
      logLevel: logLevel.ERROR,
    });
    return this.kafka;
  }

  /** Creates the run's database (migrated) and returns a pool on it, closed at cleanup. */
  async openDatabase(): Promise<DataSource> {
    const db = await openDatabase(this.settings);
    this.onCleanup('close pool', () => db.destroy());
    return db;
  }

  /**
   * Creates topics for this run, deleted at cleanup: by default the service's (intake + DLQ), or the
   * ones given (a bench's own, beside the service's).
   */
  async createTopics(
    partitions: number,
    topics: string[] = [...intakeTopics(this.settings), this.settings.topics.dlq],
  ): Promise<void> {
    this.onCleanup('delete topics', async () => {
      const admin = this.kafkaClient().admin();
      await admin.connect();
      try {
        const existing = new Set(await admin.listTopics());
        const mine = topics.filter((t) => existing.has(t));
        if (mine.length > 0) await admin.deleteTopics({ topics: mine, timeout: 30000 });
      } finally {
        await admin.disconnect();
      }
    });
    const admin = this.kafkaClient().admin();
    await admin.connect();
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: topics.map((topic) => ({ topic, numPartitions: partitions, replicationFactor: 1 })),
      });
      await waitForPartitionLeaders(admin, topics);
    } finally {
      await admin.disconnect();
    }
  }

  /**
   * Deletes these consumer groups at cleanup (before the topics). Retries for up to 45 s: a member
   * that died without leaving (a process killed hard) keeps its group non-empty until its session
   * times out, and the broker refuses to delete a non-empty group.
   */
  deleteGroupsAtCleanup(groups: string[]): void {
    this.onCleanup('delete consumer groups', async () => {
      const admin = this.kafkaClient().admin();
      await admin.connect();
      try {
        const deadline = Date.now() + 45000;
        let told = false;
        for (;;) {
          const existing = new Set((await admin.listGroups()).groups.map((g) => g.groupId));
          const mine = groups.filter((g) => existing.has(g));
          if (mine.length === 0) return;
          try {
            await admin.deleteGroups(mine);
            return;
          } catch (error) {
            if (Date.now() > deadline) throw error;
            if (!told)
              note(
                `consumer groups not deleted yet (${(error as Error).message}); retrying until their members time out`,
              );
            told = true;
            await sleep(3000);
          }
        }
      } finally {
        await admin.disconnect();
      }
    });
  }

  /** Starts a compiled script under dist/ (`node -r scripts/register-paths.js dist/<path> [args]`) with this run's environment. */
  startCompiled(
    name: string,
    distPath: string,
    extra: { env?: Record<string, string>; nodeArgs?: string[]; args?: string[] } = {},
  ): BenchChild {
    const script = join(ROOT, 'dist', distPath);
    if (!existsSync(script))
      throw new Error(
        `${script} is missing: build first (the bench:* npm scripts compile with tsc -p bench/tsconfig.json)`,
      );
    const child = spawn(
      process.execPath,
      [...(extra.nodeArgs ?? []), '-r', join(ROOT, 'scripts', 'register-paths.js'), script, ...(extra.args ?? [])],
      {
        cwd: ROOT,
        env: { ...process.env, ...this.env, ...(extra.env ?? {}) },
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      },
    );
    const bench = new BenchChild(name, child);
    this.children.add(bench);
    return bench;
  }

  /** Runs the cleanups once (later calls wait for the first). Errors are reported, not thrown. */
  cleanup(): Promise<void> {
    this.cleaning ??= (async () => {
      for (const child of this.children) await child.stop();
      for (const c of [...this.cleanups].reverse()) {
        try {
          await c.run();
        } catch (error) {
          note(`cleanup "${c.label}" failed: ${(error as Error).message}`);
        }
      }
      note(
        `cleaned up: database ${this.databaseName} dropped, Redis keys ${this.settings.redisKeyPrefix}* deleted, topics and groups deleted`,
      );
    })();
    return this.cleaning;
  }
}

/** A child process with its output kept (the last ~2000 lines) for diagnostics. */
export class BenchChild {
  readonly output: string[] = [];
  exited = false;
  exitCode: number | null = null;
  private readonly exitPromise: Promise<void>;

  constructor(
    readonly name: string,
    readonly process: ChildProcess,
  ) {
    const keep = (d: Buffer) => {
      for (const l of d.toString().split('\n')) if (l.trim() !== '') this.output.push(l);
      if (this.output.length > 2000) this.output.splice(0, this.output.length - 2000);
    };
    process.stdout?.on('data', keep);
    process.stderr?.on('data', keep);
    this.exitPromise = new Promise((resolve) =>
      process.once('exit', (code) => {
        this.exited = true;
        this.exitCode = code;
        resolve();
      }),
    );
  }

  get pid(): number {
    return this.process.pid!;
  }

  /** A message to the bench hooks preloaded into the child (bench/support/*-hook). */
  send(message: { bench: 'dump' | 'reset' }): void {
    if (this.process.connected) this.process.send(message);
  }

  /** Resolves when a line matching `pattern` appears; fails if the process exits or time runs out. */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const hit = this.output.find((l) => pattern.test(l));
      if (hit) return hit;
      if (this.exited)
        throw new Error(`${this.name} exited (code ${this.exitCode}) before printing ${pattern}:\n${this.tail()}`);
      await sleep(50);
    }
    throw new Error(`${this.name} did not print ${pattern} within ${timeoutMs} ms:\n${this.tail()}`);
  }

  tail(lines = 30): string {
    return this.output
      .slice(-lines)
      .map((l) => `  | ${l}`)
      .join('\n');
  }

  /** SIGTERM (or `signal`), then SIGKILL after 10 s; only this child, by its pid. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.exited) return;
    this.process.kill(signal);
    const killer = setTimeout(() => this.process.kill('SIGKILL'), 10000);
    await this.exitPromise;
    clearTimeout(killer);
  }
}

/**
 * Runs a benchmark: Ctrl-C (or SIGTERM) stops it and cleans up; an error is printed, cleaned up, exit 1.
 */
export function runBench(name: string, body: (register: (run: IsolatedRun) => void) => Promise<void>): void {
  const runs: IsolatedRun[] = [];
  let stopping = false;
  const cleanAll = () => Promise.all(runs.map((r) => r.cleanup()));
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`\n[bench] ${signal} again: exiting without finishing the cleanup\n`);
      process.exit(130);
    }
    stopping = true;
    process.stderr.write(`\n[bench] ${signal}: stopping ${name} and cleaning up (again to abort)\n`);
    void cleanAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  body((run) => runs.push(run))
    .then(async () => {
      await cleanAll();
      process.exit(0);
    })
    .catch(async (error: unknown) => {
      if (stopping) return;
      process.stderr.write(
        `\n[bench] ${name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      await cleanAll();
      process.exit(1);
    });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------------
// The machine and the processes' resources

/** Describes the machine and the servers' versions, for the results' header. */
export async function machine(db: DataSource, redisUrl: string): Promise<[string, string][]> {
  const cpuinfo = safeRead('/proc/cpuinfo');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const pg: { v: string }[] = await db.query(`SELECT current_setting('server_version') AS v`);
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  let redisVersion = 'unknown';
  try {
    await redis.connect();
    redisVersion = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? 'unknown';
  } catch {
    /* reported as unknown */
  } finally {
    redis.disconnect();
  }
  return [
    ['nproc', String(os.availableParallelism())],
    ['memory', `${fmt(os.totalmem() / 1024 ** 3, 1)} GiB`],
    ['CPU', model],
    [
      'load average (1/5/15 min) at start',
      os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' / '),
    ],
    ['Node.js', process.version],
    ['PostgreSQL', pg[0].v],
    ['Kafka', kafkaVersion()],
    ['Redis', redisVersion],
    ['code measured (git)', codeVersion()],
  ];
}

/** The commit measured, and whether the work tree had changes (others may edit it while a bench runs). */
export function codeVersion(): string {
  try {
    const git = (a: string[]) =>
      execFileSync('git', a, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = git(['status', '--porcelain', '--untracked-files=no', '--', 'apps', 'libs']) !== '';
    return `${git(['rev-parse', '--short', 'HEAD'])}${dirty ? ' + uncommitted changes in apps/ or libs/' : ''}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

function kafkaVersion(): string {
  if (process.env.BENCH_KAFKA_VERSION) return process.env.BENCH_KAFKA_VERSION;
  const pom = safeRead(join(ROOT, 'tools', 'kafka', 'pom.xml'));
  const v = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(pom)?.[1];
  const local = kafkaBrokerPid() !== null;
  return v
    ? `${v} (${local ? 'local broker from scripts/kafka-start.sh' : 'version of tools/kafka/pom.xml; broker not started by it'})`
    : 'unknown';
}

export function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

const CLK_TCK = 100; // USER_HZ on Linux x86_64/arm64

/** CPU seconds (user + system) a live process has used, or null when it is not visible. */
export function cpuSeconds(pid: number): number | null {
  const stat = safeRead(`/proc/${pid}/stat`);
  if (!stat) return null;
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** A /proc/<pid>/status memory line in bytes (VmRSS, VmHWM = peak RSS), or null. */
export function memoryBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  const m = new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(safeRead(`/proc/${pid}/status`));
  return m ? Number(m[1]) * 1024 : null;
}

/** Busy and total jiffies of the whole machine (/proc/stat), to tell how busy it was. */
export function machineJiffies(): { busy: number; total: number } {
  const line = safeRead('/proc/stat').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

export function kafkaBrokerPid(): number | null {
  const pid = Number(safeRead(join(ROOT, '.kafka', 'kafka.pid')).trim());
  return pid > 0 && safeRead(`/proc/${pid}/cmdline`).includes('kafka.Kafka') ? pid : null;
}

export async function redisServerPid(redisUrl: string): Promise<number | null> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const pid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]);
    return pid > 0 && safeRead(`/proc/${pid}/comm`).startsWith('redis') ? pid : null;
  } catch {
    return null;
  } finally {
    redis.disconnect();
  }
}

/** PostgreSQL's background processes on this machine (server-wide: WAL writer, checkpointer, ...). */
function postgresBackgroundPids(): number[] {
  const pids: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return pids;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = safeRead(`/proc/${e}/cmdline`);
    if (
      /^postgres: .*(walwriter|checkpointer|background writer|autovacuum|logical replication launcher)/.test(
        cmd.replace(/\0/g, ' '),
      )
    )
      pids.push(Number(e));
  }
  return pids;
}

/**
 * CPU time used during a measurement by: named processes, the PostgreSQL backends of one database
 * (sampled from pg_stat_activity, new backends counted from zero), PostgreSQL's background processes,
 * and the whole machine.
 */
export class CpuAccount {
  private readonly fixed = new Map<string, { pid: number; start: number; last: number }>();
  private readonly backends = new Map<number, { start: number; last: number; label: string }>();
  private readonly background = new Map<number, { start: number; last: number }>();
  private machineStart = machineJiffies();
  private machineEnd = this.machineStart;
  private startedAt = Date.now();
  private endedAt = this.startedAt;
  private selfStart = process.cpuUsage();
  private selfEnd = this.selfStart;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly db: DataSource,
    private readonly databaseName: string,
  ) {}

  /** Adds a process by pid (its CPU from now on). */
  track(name: string, pid: number | null): void {
    if (pid === null) return;
    const now = cpuSeconds(pid);
    if (now !== null) this.fixed.set(name, { pid, start: now, last: now });
  }

  async start(): Promise<void> {
    this.startedAt = Date.now();
    this.machineStart = machineJiffies();
    this.selfStart = process.cpuUsage();
    for (const pid of postgresBackgroundPids()) {
      const s = cpuSeconds(pid);
      if (s !== null) this.background.set(pid, { start: s, last: s });
    }
    await this.sampleBackends(true);
    this.timer = setInterval(() => void this.sample().catch(() => undefined), 500);
  }

  private async sampleBackends(initial: boolean): Promise<void> {
    const rows: { pid: number; backend_type: string; application_name: string }[] = await this.db.query(
      `SELECT pid, backend_type, application_name FROM pg_stat_activity WHERE datname = $1`,
      [this.databaseName],
    );
    for (const { pid, backend_type, application_name } of rows) {
      const s = cpuSeconds(pid);
      if (s === null) continue;
      const known = this.backends.get(pid);
      if (known) known.last = s;
      else
        this.backends.set(pid, {
          start: initial ? s : 0,
          last: s,
          label: backend_type === 'client backend' ? `"${application_name}"` : backend_type,
        });
    }
  }

  async sample(): Promise<void> {
    for (const f of this.fixed.values()) f.last = cpuSeconds(f.pid) ?? f.last;
    for (const [pid, b] of this.background) b.last = cpuSeconds(pid) ?? b.last;
    await this.sampleBackends(false);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.sample();
    this.endedAt = Date.now();
    this.machineEnd = machineJiffies();
    this.selfEnd = process.cpuUsage();
  }

  /** [name, CPU seconds, average cores] rows. */
  rows(selfName: string): string[][] {
    const seconds = (this.endedAt - this.startedAt) / 1000;
    const out: [string, number][] = [];
    for (const [name, f] of this.fixed) out.push([name, f.last - f.start]);
    out.push([
      `${selfName} (this process)`,
      (this.selfEnd.user + this.selfEnd.system - this.selfStart.user - this.selfStart.system) / 1e6,
    ]);
    const byLabel = new Map<string, { seconds: number; n: number }>();
    for (const b of this.backends.values()) {
      const g = byLabel.get(b.label) ?? { seconds: 0, n: 0 };
      g.seconds += b.last - b.start;
      g.n++;
      byLabel.set(b.label, g);
    }
    for (const [label, g] of [...byLabel].sort((x, y) => y[1].seconds - x[1].seconds)) {
      out.push([`PostgreSQL backends on the bench db: ${label} (${g.n})`, g.seconds]);
    }
    if (this.background.size > 0)
      out.push([
        'PostgreSQL background processes (server-wide)',
        [...this.background.values()].reduce((a, b) => a + b.last - b.start, 0),
      ]);
    const jiffies = this.machineEnd.total - this.machineStart.total;
    const busy =
      jiffies > 0 ? ((this.machineEnd.busy - this.machineStart.busy) / jiffies) * os.availableParallelism() : 0;
    const rows = out.map(([n, s]) => [n, fmt(s, 1), fmt(s / seconds, 2)]);
    const ours = out.reduce((acc, [, s]) => acc + s, 0);
    rows.push([
      'everything else on the machine (other users, OS)',
      fmt(Math.max(0, busy * seconds - ours), 1),
      fmt(Math.max(0, busy - ours / seconds), 2),
    ]);
    rows.push([
      `whole machine (${os.availableParallelism()} cores; load average now ${os.loadavg()[0].toFixed(1)})`,
      fmt(busy * seconds, 1),
      fmt(busy, 2),
    ]);
    return [['process', 'CPU s', 'avg cores'], ...rows];
  }

  get seconds(): number {
    return (this.endedAt - this.startedAt) / 1000;
  }
}
