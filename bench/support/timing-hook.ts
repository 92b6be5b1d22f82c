/**
 * Wall-time accounting of a process's PostgreSQL queries (pg's Client#query, by statement), Redis
 * commands (ioredis, by command) and kafkajs consumer work (fetch requests, eachBatch, offset commits,
 * heartbeats), without touching the app's code. Durations are wall time from call to completion.
 *
 * Two ways in:
 * - preloaded (`node -r`) into a service process the bench starts, with BENCH_TIMING naming a file: the
 *   IPC message { bench: 'reset' } starts the counts afresh, { bench: 'dump' } writes
 *   { seconds, stats, memory } as JSON to the file (temporary name first, then renamed); with
 *   BENCH_TIMING_AT_EXIT=1 it is also written when the process exits;
 * - in-process: installTiming() returns reset/snapshot, and takes an optional SQL rewrite (for what-if
 *   measurements of a one-line query change; the app's source stays as it is).
 */
import { renameSync, writeFileSync } from 'node:fs';

export interface TimingStat {
  count: number;
  totalMs: number;
  maxMs: number;
  /** Sum of a size measure where there is one (messages per batch). */
  items: number;
}

export interface TimingSnapshot {
  seconds: number;
  stats: Record<string, TimingStat>;
  /** Peaks of process.memoryUsage() members (bytes), sampled every 100 ms. */
  memory: Record<string, number>;
}

const KNOWN: [RegExp, string][] = [
  // writer
  [
    /^SELECT e\.event_id FROM unnest\(\$1::text\[\]\) AS k\(event_id\) JOIN event_log/i,
    'pg: SELECT logged event ids (findLoggedEventIds)',
  ],
  [/^COPY event_log/i, 'pg: COPY event_log (copyEvents)'],
  [/^INSERT INTO event_log/i, 'pg: INSERT INTO event_log (appendEvents)'],
  [
    /^SELECT k\.org_id, k\.connection_id,\s+COALESCE\(\(SELECT s\.version FROM event_log_streams/i,
    'pg: SELECT stream versions (readStreamVersions)',
  ],
  // projection
  [/DECLARE log_by_stream/i, 'pg: DECLARE sorted log cursor (readLogByStream)'],
  [/pg_advisory_xact_lock/i, 'pg: advisory lock (Projection.step)'],
  [/FROM projection_generation WHERE generation = \$1/i, 'pg: SELECT checkpoint (readCheckpoint)'],
  [/^INSERT INTO org_read_model/i, 'pg: UPSERT org_read_model versions'],
  [/FROM event_log e WHERE \(e\.transaction_id, e\.position\) > .* ORDER BY/i, 'pg: SELECT next events (readLogAfter)'],
  [/JOIN connection_read_model c ON c\.generation = \$1/i, 'pg: SELECT states (loadStates)'],
  [
    /^SELECT id::text AS id, org_id, connection_id, message FROM health_change_outbox/i,
    'pg: SELECT health outbox (relay)',
  ],
  [/^DELETE FROM health_change_outbox/i, 'pg: DELETE health outbox (relay)'],
  [/^FETCH FORWARD \d+ FROM log_by_stream/i, 'pg: FETCH sorted log page (readLogByStream)'],
  [/UPDATE projection_shard_fold/i, 'pg: UPDATE shard fold position (advanceShardFold)'],
  [/^INSERT INTO connection_read_model/i, 'pg: UPSERT connection_read_model (writeConnections)'],
  [/^UPDATE projection_generation\s+SET checkpoint_transaction_id/i, 'pg: UPDATE checkpoint'],
  [/count\(\*\)::text AS events, EXTRACT/i, 'pg: SELECT lag (logLagAfter)'],
  // api
  [/FROM api_key WHERE key_hash = ANY/i, 'pg: SELECT api keys (findByHashes, batched)'],
  [/FROM api_key WHERE key_hash/i, 'pg: SELECT api key (findByHash)'],
  [/FROM projection_generation WHERE status = 'live'/i, 'pg: SELECT live generation'],
  [/^WITH v AS \(SELECT org_id, version FROM org_read_model/i, 'pg: SELECT orgs (readOrgsFromPostgres, batched)'],
  [
    /FROM org_read_model WHERE generation = \$1 AND org_id = ANY/i,
    'pg: SELECT org versions (orgVersionsInPostgres, batched)',
  ],
  // transactions
  [/^(START TRANSACTION|BEGIN)/i, 'pg: BEGIN'],
  [/^COMMIT/i, 'pg: COMMIT'],
  [/^ROLLBACK/i, 'pg: ROLLBACK'],
];

function kind(sql: string): string {
  const text = sql.replace(/\s+/g, ' ').trim();
  for (const [re, name] of KNOWN) if (re.test(text)) return name;
  return `pg: ${text.slice(0, 60)}`;
}

let installed: {
  reset(): void;
  snapshot(): TimingSnapshot;
  setRewrite(r: ((sql: string) => string) | null): void;
} | null = null;

/** Installs the wrappers once per process; later calls return the same controls. */
export function installTiming(): {
  reset(): void;
  snapshot(): TimingSnapshot;
  setRewrite(r: ((sql: string) => string) | null): void;
} {
  if (installed) return installed;
  let stats: Record<string, TimingStat> = {};
  let started = performance.now();
  let memory: Record<string, number> = {};
  let rewrite: ((sql: string) => string) | null = null;
  setInterval(() => {
    for (const [k, v] of Object.entries(process.memoryUsage())) if (v > (memory[k] ?? 0)) memory[k] = v;
  }, 100).unref();
  const record = (key: string, ms: number, items = 0) => {
    const s = (stats[key] ??= { count: 0, totalMs: 0, maxMs: 0, items: 0 });
    s.count++;
    s.totalMs += ms;
    s.items += items;
    if (ms > s.maxMs) s.maxMs = ms;
  };

  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pg = require('pg');
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: unknown, config: unknown, values?: unknown, callback?: unknown) {
    let sql = typeof config === 'string' ? config : ((config as { text?: string } | null)?.text ?? '');
    // eslint-disable-next-line prefer-rest-params
    if (!sql) return query.apply(this, arguments as unknown as unknown[]);
    if (rewrite) {
      const changed = rewrite(sql);
      if (changed !== sql) {
        sql = changed;
        config = typeof config === 'string' ? changed : { ...(config as object), text: changed };
      }
    }
    // The bench's own CPU sampling (CpuAccount) is not the app's work.
    // eslint-disable-next-line prefer-rest-params
    if (sql.includes('FROM pg_stat_activity')) return query.apply(this, arguments as unknown as unknown[]);
    const t = performance.now();
    const key = kind(sql);
    const done = () => record(key, performance.now() - t);
    if (typeof values === 'function')
      return query.call(
        this,
        config,
        (e: unknown, r: unknown) => (done(), (values as (e: unknown, r: unknown) => void)(e, r)),
      );
    if (typeof callback === 'function')
      return query.call(
        this,
        config,
        values,
        (e: unknown, r: unknown) => (done(), (callback as (e: unknown, r: unknown) => void)(e, r)),
      );
    const result = query.call(this, config, values);
    if (result && typeof result.then === 'function') result.then(done, done);
    return result;
  };

  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const kafkajs = require('kafkajs');
  const consumer = kafkajs.Kafka.prototype.consumer;
  kafkajs.Kafka.prototype.consumer = function (this: unknown, ...args: unknown[]) {
    const c = consumer.apply(this, args);
    const E = c.events;
    c.on(E.FETCH, (e: { payload: { duration: number; numberOfBatches: number } }) =>
      record('kafka: fetch request (FETCH event)', e.payload.duration, e.payload.numberOfBatches),
    );
    c.on(E.END_BATCH_PROCESS, (e: { payload: { duration: number; batchSize: number } }) =>
      record('kafka: eachBatch (whole batch handling)', e.payload.duration, e.payload.batchSize),
    );
    return c;
  };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ConsumerGroup = require('kafkajs/src/consumer/consumerGroup');
  for (const method of ['commitOffsets', 'heartbeat']) {
    const original = ConsumerGroup.prototype[method];
    ConsumerGroup.prototype[method] = async function (this: unknown, ...args: unknown[]) {
      const t = performance.now();
      try {
        return await original.apply(this, args);
      } finally {
        record(`kafka: ConsumerGroup#${method}`, performance.now() - t);
      }
    };
  }

  // ioredis: every command by name (scripts defined with defineCommand run as evalsha).
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ioredis = require('ioredis');
    const Redis = ioredis.default ?? ioredis;
    const send = Redis.prototype.sendCommand;
    Redis.prototype.sendCommand = function (this: unknown, command: { name?: string }, ...rest: unknown[]) {
      const t = performance.now();
      const result = send.call(this, command, ...rest);
      const done = () => record(`redis: ${command?.name ?? '?'}`, performance.now() - t);
      if (result && typeof result.then === 'function') result.then(done, done);
      return result;
    };
  } catch {
    /* no ioredis in this process */
  }

  installed = {
    reset() {
      stats = {};
      memory = {};
      started = performance.now();
    },
    snapshot: () => ({
      seconds: (performance.now() - started) / 1000,
      stats: structuredClone(stats),
      memory: { ...memory },
    }),
    setRewrite(r) {
      rewrite = r;
    },
  };
  return installed;
}

/**
 * Named what-if rewrites of one app query each (the app's source stays as it is):
 * - log-order: readLogAfter's `ORDER BY transaction_id, position` resolves to the `transaction_id::text`
 *   output column (PostgreSQL resolves ORDER BY names to output columns first): no index, a full sort per
 *   batch, lexicographic order. Qualified, it is the xid8 column, served by the event_log_tail index.
 * - logged-ids-join: findLoggedEventIds' `event_id = ANY($1)` with thousands of ids is planned as a
 *   (parallel) sequential scan of the whole log once the log has ~1M rows; as a join on unnest it is a
 *   nested loop of index-only probes.
 */
export const REWRITES: Record<string, (sql: string) => string> = {
  'log-order': (sql) =>
    /FROM event_log\s+WHERE \(transaction_id, position\) >/.test(sql)
      ? sql.replace(/ORDER BY transaction_id, position/, 'ORDER BY event_log.transaction_id, event_log.position')
      : sql,
  'logged-ids-join': (sql) =>
    /^\s*SELECT event_id FROM event_log WHERE event_id = ANY\(\$1::text\[\]\)\s*$/.test(sql)
      ? 'SELECT e.event_id FROM unnest($1::text[]) AS k(id) JOIN event_log e ON e.event_id = k.id'
      : sql,
};

const out = process.env.BENCH_TIMING;
if (out) {
  const timing = installTiming();
  const named = process.env.BENCH_SQL_REWRITE;
  if (named) {
    const rewrite = REWRITES[named];
    if (!rewrite)
      throw new Error(`BENCH_SQL_REWRITE: unknown rewrite ${named} (known: ${Object.keys(REWRITES).join(', ')})`);
    timing.setRewrite(rewrite);
  }
  process.on('message', (m: { bench?: string } | null) => {
    if (m?.bench === 'reset') timing.reset();
    else if (m?.bench === 'dump') {
      writeFileSync(`${out}.tmp`, JSON.stringify(timing.snapshot()));
      renameSync(`${out}.tmp`, out);
    }
  });
  // A command that ends by itself (`ops replay`) cannot wait for a dump message: write at exit instead.
  if (process.env.BENCH_TIMING_AT_EXIT === '1')
    process.on('exit', () => writeFileSync(out, JSON.stringify(timing.snapshot())));
  process.channel?.unref();
}
