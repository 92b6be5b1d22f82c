/**
 * npm run bench:projector-idle [-- --seconds 20] [--orgs 64] [--root PATH]
 *
 * What a projector costs while nothing happens: one projector process (from source, as the tests run
 * it) on an isolated database holding a few events of `--orgs` orgs (so that every shard has a
 * checkpoint), caught up; then, for `--seconds`, the CPU seconds of the projector process and of the
 * PostgreSQL backends of that database, and the statements PostgreSQL ran for it (pg_stat_database
 * xact_commit). `--root` runs another checkout's projector (to compare two commits in one run).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { configuredEvent, T0 } from '@psp/domain/testing/events';
import { dropIsolated, isolatedEnv, isolatedSettings, openDatabase } from '../test/support/isolated-stack';
import { seedLog } from '../test/support/seed';
import { SERVERS_ENV } from '../test/support/servers';

/** CPU seconds a process has used; 0 once it is gone (a pooled backend closed: its last seconds are lost). */
function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' },
      orgs: { type: 'string' },
      root: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(readFileSync(__filename, 'utf8').split('*/')[0] + '*/\n');
    return;
  }
  // The machine's servers (npm run stack:up), as the chaos suite uses them outside jest.
  process.env[SERVERS_ENV] ??= JSON.stringify({
    databaseUrl: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0',
    kafkaBrokers: process.env.KAFKA_BROKERS ?? '127.0.0.1:9092',
  });
  const seconds = Number(values.seconds ?? 20);
  const orgs = Number(values.orgs ?? 64);
  const root = resolve(values.root ?? join(__dirname, '..'));
  const env = isolatedEnv('projidle', { METRICS_PORT: '0', LOG_LEVEL: 'warn' });
  const settings = isolatedSettings('unused', env);
  const db = await openDatabase(settings);
  try {
    await seedLog(
      db,
      Array.from({ length: orgs }, (_, i) =>
        configuredEvent(`idle-${i}`, T0, {}, { orgId: `org_${i}`, connectionId: 'c' }),
      ),
    );
    const child = spawn(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        '-r',
        'tsconfig-paths/register',
        join(root, 'apps/projector/src/main.ts'),
      ],
      { cwd: root, env: { ...process.env, ...env, TS_NODE_PROJECT: join(root, 'tsconfig.json') }, stdio: 'ignore' },
    );
    const dbName = new URL(settings.databaseUrl).pathname.slice(1);
    const backends = async (): Promise<number[]> =>
      (await db.query(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [dbName])).map(
        (r: { pid: number }) => r.pid,
      );
    const commits = async () =>
      Number((await db.query(`SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = $1`, [dbName]))[0].n);
    // Caught up: every configured connection projected, then 3 s more.
    for (let i = 0; ; i++) {
      const [{ n }] = await db.query(`SELECT count(*)::int AS n FROM connection_read_model`);
      if (n >= orgs) break;
      if (i > 600) throw new Error('the projector did not catch up within 60 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 3000));
    const pids = await backends();
    const before = { proc: cpuSeconds(child.pid!), pg: pids.map(cpuSeconds), commits: await commits() };
    process.stdout.write(`projector at ${root}: idle for ${seconds} s ...\n`);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const proc = cpuSeconds(child.pid!) - before.proc;
    const pg = pids.reduce((a, p, i) => a + Math.max(0, cpuSeconds(p) - before.pg[i]), 0);
    const tx = (await commits()) - before.commits;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    process.stdout.write(
      `idle projector (${orgs} orgs, 16 shards held): projector ${((proc / seconds) * 100).toFixed(1)}% of a core, ` +
        `PostgreSQL backends ${((pg / seconds) * 100).toFixed(1)}% of a core, ${(tx / seconds).toFixed(0)} transactions/s\n`,
    );
  } finally {
    await db.destroy();
    await dropIsolated(settings);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench:projector-idle: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  },
);
