/**
 * npm run bench:query [-- --duration 10] [--clients 50] [--rounds 2] [--limits 50,200] [--routes list,stats] [--connections 200] [--events 20000] [--profile] [--rate-limit N] [--log-level log] [--api-env NAME=value,...]
 *
 * Query API speed. In one isolated run (own database, Redis prefix):
 *   1. one org with `connections` connections in the read model: mixedEvents (deletions left out, so all
 *      are listed) seeded into the log and projected into the live generation (PostgreSQL + Redis);
 *   2. an API key made with ApiKeyStore; the COMPILED API (dist/apps/api/src/main.js) started with every
 *      production feature on: the per-org rate limit counted in Redis at `--rate-limit` (default
 *      1,000,000,000 a minute: counted, never reached; 0 turns it off), the failed-authentication limit
 *      at its default, logs at `--log-level` (default `log`, the shipped default), metrics, request ids;
 *   3. ceiling: a bare node:http server (bench/support/static-server) answering the exact bytes the API
 *      answered (same body, content-type, etag, cache-control), in its own process like the API;
 *   4. autocannon (in this process, `clients` connections, `duration` s after a 2 s warm-up) against both,
 *      alternating API and ceiling, `rounds` times, on each route: the list at limit=50 and limit=200
 *      (`--limits`) and the stats of the first listed connection (GET /v1/connections/{id}/stats).
 * Reports req/s, p50/p99 latency, the server's CPU, API/ceiling ratios, and (timing hook preloaded into
 * the API) every Redis command and PostgreSQL query the API made during each run. Cleans up at the end.
 */
import { writeFileSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiKeyStore } from '@psp/api-keys';
import { createRedis, Projection, RedisReadModel } from '@psp/read-model';
import { mixedEvents, seedLog } from '../test/support/seed';
import {
  args,
  BenchChild,
  cpuSeconds,
  fmt,
  fmtInt,
  IsolatedRun,
  machine,
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
import { collectTiming, Timing, timingRows } from './support/timing';

export interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number; max: number };
  throughput: { average: number };
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
}
type Autocannon = ((opts: object) => import('node:events').EventEmitter & PromiseLike<AutocannonResult>) & {
  track?: unknown;
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require('autocannon') as Autocannon;

const ORG = 'org_0';
/** The per-org limit the bench runs with: on, counted like any other, never reached. */
export const RATE_LIMIT_NEVER_REFUSING = 1_000_000_000;

// Run as a program (npm run bench:query); bench/scale.ts imports load, freePort and waitForHttp below.
if (require.main === module) runBench('bench:query', queryBench);

async function queryBench(register: (run: IsolatedRun) => void): Promise<void> {
  const a = args();
  const duration = a.num('duration', 10);
  const clients = a.num('clients', 50);
  const rounds = Math.max(1, a.num('rounds', 2));
  const connections = a.num('connections', 200);
  const seedEvents = a.num('events', 20000);
  const profile = a.flag('profile');
  const limits = a.str('limits', '50,200').split(',').map(Number);
  if (limits.some((l) => !(l >= 1 && l <= 200))) throw new Error('--limits: comma-separated integers 1..200');
  const kinds = a.str('routes', 'list,stats').split(',');
  if (kinds.length === 0 || kinds.some((k) => k !== 'list' && k !== 'stats'))
    throw new Error('--routes: comma-separated, of list and stats');

  await useServers();
  // Every production feature on, as shipped: the per-org rate limit counted in Redis (at a limit high
  // enough never to refuse), the failed-authentication limit at its default, structured logs at the
  // default level (LOG_LEVEL=log), metrics, request ids.
  // `--rate-limit 0` and `--log-level debug` measure what each feature costs (the defaults are what is shipped).
  const rateLimit = a.num('rate-limit', RATE_LIMIT_NEVER_REFUSING);
  const logLevel = a.str('log-level', 'log');
  // `--api-env NAME=value,...`: settings of the API alone, e.g. API_RESPONSE_CACHE_BYTES=0 to measure a cache layer.
  const apiEnv = Object.fromEntries(
    a
      .str('api-env', '')
      .split(',')
      .filter((kv) => kv !== '')
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  const run = new IsolatedRun('benchquery', {
    API_KEY_CACHE_MS: '2000',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: String(await freePort()),
    RATE_LIMIT_PER_MINUTE: String(rateLimit),
    RATE_LIMIT_FAILED_AUTH_PER_MINUTE: '60', // the default (the isolated runs turn it off)
    LOG_LEVEL: logLevel,
  });
  register(run);
  const s = run.settings;
  const db = await run.openDatabase();
  say(
    `bench:query — 1 org, ${connections} connections; autocannon ${clients} connections × ${duration} s (after 2 s warm-up), ${rounds} round(s)`,
  );
  say();
  table([['machine', ''], ...(await machine(db, s.redisUrl))], { alignNumbers: false });
  say();
  say(
    `API settings: RATE_LIMIT_PER_MINUTE=${rateLimit}, RATE_LIMIT_FAILED_AUTH_PER_MINUTE=${s.rateLimitFailedAuthPerMinute}, LOG_LEVEL=${logLevel}${Object.entries(
      apiEnv,
    )
      .map(([k, v]) => `, ${k}=${v}`)
      .join('')}`,
  );
  say();

  // 1. The read model.
  note(`seeding ${fmtInt(seedEvents)} events for ${connections} connections of ${ORG} and projecting them`);
  const events = mixedEvents({
    orgs: 1,
    connections,
    events: seedEvents,
    seed: 7,
    start: Math.floor((Date.now() - 2 * 3600_000) / 60000) * 60000,
  }).filter((e) => e.type !== 'connection.deleted');
  await seedLog(db, events);
  const redis = createRedis(s, 'bench-query');
  run.onCleanup('disconnect redis', async () => redis.disconnect());
  const projection = new Projection(db, 1, new RedisReadModel(redis, s.redisKeyPrefix), 5000);
  for (;;) {
    // Caught up only when no shard has anything committed left after its checkpoint (an open transaction
    // elsewhere in the cluster holds back the xmin below which the projection reads).
    const step = await projection.step();
    if (step.applied === 0 && (await projection.lag()) === 0) break;
    if (step.applied === 0) await sleep(20);
  }
  const listed: { n: string }[] = await db.query(
    `SELECT count(*)::text AS n FROM connection_read_model WHERE generation = 1 AND org_id = $1 AND listed`,
    [ORG],
  );
  if (Number(listed[0].n) !== connections)
    throw new Error(`expected ${connections} listed connections, the read model has ${listed[0].n}`);

  // 2. Key and API.
  const { key } = await new ApiKeyStore(db).create(ORG, ['connections:read'], 'test');
  const outDir = mkdtempSync(join(tmpdir(), 'psp-bench-query-'));
  const profileFile = join(outDir, 'api.cpuprofile');
  const timingFile = join(outDir, 'api-timing.json');
  const hooks = ['timing-hook', ...(profile ? ['cpu-profile-hook'] : [])];
  const api = run.startCompiled('api', 'apps/api/src/main.js', {
    env: { BENCH_TIMING: timingFile, ...(profile ? { BENCH_CPU_PROFILE: profileFile } : {}), ...apiEnv },
    nodeArgs: hooks.flatMap((h) => ['-r', join(ROOT, 'dist', 'bench', 'support', `${h}.js`)]),
  });
  const apiUrl = `http://127.0.0.1:${s.httpPort}`;
  await waitForHttp(api, `${apiUrl}/healthz`);
  note(`API up (pid ${api.pid}) at ${apiUrl}`);

  // 3. The exact responses, and the ceiling serving them.
  const headers = { 'x-org-id': ORG, 'x-reevit-key': key };
  const spec: Record<string, { headers: Record<string, string>; body: string }> = {};
  const bodies = new Map<string, Buffer>();
  const answer = async (path: string): Promise<Buffer> => {
    const res = await fetch(apiUrl + path, { headers });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${body.toString().slice(0, 300)}`);
    if ((res.headers.get('x-ratelimit-limit') ?? '0') !== String(rateLimit))
      throw new Error(
        `GET ${path}: the rate limit is not on (X-RateLimit-Limit ${res.headers.get('x-ratelimit-limit')})`,
      );
    const h: Record<string, string> = {};
    for (const name of ['content-type', 'etag', 'cache-control']) h[name] = res.headers.get(name) ?? '';
    spec[path] = { headers: h, body: body.toString('base64') };
    bodies.set(path, body);
    return body;
  };
  /** The routes measured: a label and the path (the ceiling answers the same path with the same bytes). */
  const routes: { label: string; path: string }[] = [];
  if (kinds.includes('list'))
    for (const limit of limits) {
      const path = `/v1/connections?limit=${limit}`;
      const n = (JSON.parse((await answer(path)).toString()) as { connections: unknown[] }).connections.length;
      if (n !== Math.min(limit, connections)) throw new Error(`GET ${path} listed ${n} connections`);
      routes.push({ label: `list limit=${limit}`, path });
    }
  if (kinds.includes('stats')) {
    const first = (await (await fetch(`${apiUrl}/v1/connections?limit=1`, { headers })).json()) as {
      connections: { id: string }[];
    };
    const id = first.connections[0].id;
    const path = `/v1/connections/${encodeURIComponent(id)}/stats`;
    const stats = JSON.parse((await answer(path)).toString()) as { calls: number; minutes: unknown[] };
    if (stats.minutes.length !== 60) throw new Error(`GET ${path}: ${stats.minutes.length} minutes, 60 expected`);
    note(`stats of ${id}: ${stats.calls} calls in its window`);
    routes.push({ label: 'stats', path });
  }
  const specFile = join(outDir, 'responses.json');
  writeFileSync(specFile, JSON.stringify(spec));
  const ceilingPort = await freePort();
  const ceiling = run.startCompiled('ceiling', 'bench/support/static-server.js', {
    env: { BENCH_STATIC_FILE: specFile, BENCH_STATIC_PORT: String(ceilingPort) },
  });
  await ceiling.waitFor(/^listening/, 20000);
  const ceilingUrl = `http://127.0.0.1:${ceilingPort}`;
  for (const [path, body] of bodies) {
    const got = Buffer.from(await (await fetch(ceilingUrl + path)).arrayBuffer());
    if (!got.equals(body)) throw new Error(`the ceiling does not answer the same bytes for ${path}`);
  }

  // 4. Load.
  interface Row {
    route: string;
    target: 'API' | 'ceiling';
    round: number;
    result: AutocannonResult;
    cores: number;
    timing?: Timing;
  }
  const results: Row[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const { label: route, path } of routes) {
      for (const [target, child, url] of [
        ['API', api, apiUrl],
        ['ceiling', ceiling, ceilingUrl],
      ] as const) {
        const label = `round ${round}/${rounds} ${target} ${route}`;
        await load(url + path, headers, clients, 2, `${label} warm-up`);
        if (target === 'API') api.send({ bench: 'reset' });
        const cpuBefore = cpuSeconds(child.pid) ?? 0;
        const result = await load(url + path, headers, clients, duration, label);
        const cores = ((cpuSeconds(child.pid) ?? 0) - cpuBefore) / result.duration;
        const row: Row = { route, target, round, result, cores };
        if (target === 'API') row.timing = await collectTiming(api, timingFile);
        if (result.non2xx > 0 || result.errors > 0)
          throw new Error(`${label}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
        results.push(row);
      }
    }
  }
  const apiProfile = profile ? await collectChildProfile(api, profileFile) : null;

  say();
  say(
    `results (autocannon in this process: ${clients} connections, ${duration} s per run after a 2 s warm-up; body bytes identical for API and ceiling)`,
  );
  say();
  const ratio = (r: Row) => {
    const c = results.find((x) => x.route === r.route && x.round === r.round && x.target === 'ceiling')!;
    return fmt(r.result.requests.average / c.result.requests.average, 2);
  };
  table([
    [
      'route',
      'target',
      'round',
      'req/s',
      'p50 ms',
      'p99 ms',
      'max ms',
      'MB/s',
      'server cores',
      'server CPU µs/req',
      'API/ceiling',
      'Redis cmds/req',
      'PG queries/s',
    ],
    ...results.map((r) => [
      r.route,
      r.target,
      String(r.round),
      fmtInt(r.result.requests.average),
      fmt(r.result.latency.p50, 0),
      fmt(r.result.latency.p99, 0),
      fmt(r.result.latency.max, 0),
      fmt(r.result.throughput.average / 1024 / 1024, 1),
      fmt(r.cores, 2),
      fmtInt((r.cores * 1e6) / r.result.requests.average),
      r.target === 'API' ? ratio(r) : '',
      r.timing ? fmt(callsOf(r.timing, 'redis: ') / r.result.requests.total, 2) : '',
      r.timing ? fmt(callsOf(r.timing, 'pg: ') / r.timing.seconds, 1) : '',
    ]),
  ]);
  for (const r of results.filter((x) => x.timing && x.round === 1)) {
    say();
    say(
      `API, ${r.route}, round 1: its Redis and PostgreSQL calls (timing hook; ${fmtInt(r.result.requests.total)} requests, client-side p50 ${fmt(r.result.latency.p50, 0)} ms):`,
    );
    table(timingRows(r.timing!));
  }
  say();
  const summary = routes.map(({ label: route, path }) => {
    const of = (t: 'API' | 'ceiling') => results.filter((r) => r.route === route && r.target === t);
    const mean = (rows: Row[], f: (r: Row) => number) => rows.reduce((acc, r) => acc + f(r), 0) / rows.length;
    const apiRows = of('API');
    const ceilRows = of('ceiling');
    return {
      route,
      apiRps: mean(apiRows, (r) => r.result.requests.average),
      ceilRps: mean(ceilRows, (r) => r.result.requests.average),
      apiP50: mean(apiRows, (r) => r.result.latency.p50),
      apiP99: Math.max(...apiRows.map((r) => r.result.latency.p99)),
      ceilP99: Math.max(...ceilRows.map((r) => r.result.latency.p99)),
      bytes: bodies.get(path)!.length,
    };
  });
  table([
    [
      'route',
      'body bytes',
      `API req/s (mean of ${rounds})`,
      'ceiling req/s',
      'API/ceiling',
      'API p50 ms',
      'API p99 ms (worst)',
      'ceiling p99 ms',
    ],
    ...summary.map((x) => [
      x.route,
      fmtInt(x.bytes),
      fmtInt(x.apiRps),
      fmtInt(x.ceilRps),
      fmt(x.apiRps / x.ceilRps, 2),
      fmt(x.apiP50, 0),
      fmt(x.apiP99, 0),
      fmt(x.ceilP99, 0),
    ]),
  ]);
  say();
  // Issue 20's targets: the list at limit=50 at least 0.6 of the ceiling with p99 under 20 ms, the stats
  // at least 0.5 of it, and the API's CPU per request at most 1.5 times the ceiling's (both routes shown).
  const cpuPerRequest = (route: string, t: 'API' | 'ceiling') => {
    const rows = results.filter((r) => r.route === route && r.target === t);
    return rows.reduce((acc, r) => acc + (r.cores * 1e6) / r.result.requests.average, 0) / rows.length;
  };
  const targets = summary.filter((x) => x.route === 'list limit=50' || x.route === 'stats');
  if (targets.length > 0)
    table([
      ['target', 'route', 'got', ''],
      ...targets.flatMap((x) => {
        const share = x.route === 'stats' ? 0.5 : 0.6;
        const cpu = cpuPerRequest(x.route, 'API') / cpuPerRequest(x.route, 'ceiling');
        return [
          [
            `API req/s ≥ ${share} × the ceiling`,
            x.route,
            `${fmtInt(x.apiRps)} vs ${fmtInt(x.ceilRps)} (${fmt(x.apiRps / x.ceilRps, 2)})`,
            x.apiRps >= x.ceilRps * share ? 'PASS' : 'MISS',
          ],
          ...(x.route === 'stats'
            ? []
            : [['API p99 < 20 ms', x.route, `${fmt(x.apiP99, 0)} ms`, x.apiP99 < 20 ? 'PASS' : 'MISS']]),
          [
            'API CPU/request ≤ 1.5 × the ceiling’s',
            x.route,
            `${fmtInt(cpuPerRequest(x.route, 'API'))} vs ${fmtInt(cpuPerRequest(x.route, 'ceiling'))} µs (${fmt(cpu, 2)})`,
            cpu <= 1.5 ? 'PASS' : 'MISS',
          ],
        ];
      }),
    ]);
  if (apiProfile) summariseProfile(apiProfile, { title: `API CPU profile over all runs (${profileFile})` });
}

/**
 * autocannon against `url` for `duration` s with a progress line. `setupRequest`, when given, is called
 * for every request (autocannon rebuilds it each time), e.g. to spread requests over orgs and keys.
 */
export function load(
  url: string,
  headers: Record<string, string>,
  connections: number,
  duration: number,
  label: string,
  setupRequest?: (request: { headers: Record<string, string> }) => { headers: Record<string, string> },
): Promise<AutocannonResult> {
  return new Promise((resolve, reject) => {
    let done = 0;
    let seconds = 0;
    const ticker = new Ticker(
      () =>
        `${label}: ${seconds}/${duration} s, ${fmtInt(done)} requests${seconds > 0 ? ` (${fmtInt(done / seconds)}/s)` : ''}`,
    ).start();
    const instance = autocannon({
      url,
      connections,
      duration,
      headers,
      pipelining: 1,
      ...(setupRequest ? { requests: [{ setupRequest }] } : {}),
    });
    instance.on('tick', (t: { counter: number }) => {
      done += t.counter;
      seconds++;
    });
    instance.then(
      (r) => {
        ticker.stop();
        resolve(r);
      },
      (e) => {
        ticker.stop();
        reject(e);
      },
    );
  });
}

function callsOf(timing: Timing, prefix: string): number {
  return Object.entries(timing.stats)
    .filter(([k]) => k.startsWith(prefix))
    .reduce((acc, [, v]) => acc + v.count, 0);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

export async function waitForHttp(child: BenchChild, url: string, timeoutMs = 60000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exited) throw new Error(`${child.name} exited (code ${child.exitCode}):\n${child.tail()}`);
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms:\n${child.tail()}`);
}
