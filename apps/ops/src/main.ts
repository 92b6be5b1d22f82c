import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { ApiKeyError, ApiKeyStore } from '@psp/api-keys';
import { InvalidSettingError, loadSettings, Settings } from '@psp/config';
import { createKafka, intakeTopics } from '@psp/messaging';
import { createRedis, liveGeneration, readCheckpoint, RedisReadModel } from '@psp/read-model';
import { createDataSource, logLagAfter, migrate } from '@psp/storage';
import { Progress } from './progress';
import { replay } from './replay';

const REPLAY_BATCH_SIZE = 50000;

const USAGE = `usage: npm run ops -- <command>
  keys create --org ORG [--scopes connections:read] [--env live|test]   create a key (printed once, alone on the last line)
  keys list [--org ORG]                                                  list keys (never prints a key)
  keys revoke KEY_ID                                                     revoke a key (effective within 5 s)
  replay [--batch N]   (default 50000)                                    rebuild the read model into a new generation, then switch
  lag                                                                    how far the writer is behind Kafka and the projector behind the log
  dlq [--limit N]                                                        print the newest DLQ messages' reasons
  migrate                                                                create the database and run migrations`;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function withDb<T>(settings: Settings, run: (db: ReturnType<typeof createDataSource>) => Promise<T>): Promise<T> {
  await migrate(settings.databaseUrl);
  const db = await createDataSource(settings.databaseUrl, {
    poolSize: 3,
    applicationName: 'psp-connections-ops',
  }).initialize();
  try {
    return await run(db);
  } finally {
    await db.destroy();
  }
}

async function keys(settings: Settings, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { org: { type: 'string' }, scopes: { type: 'string' }, env: { type: 'string' } },
  });
  const [action, id] = positionals;
  return withDb(settings, async (db) => {
    const store = new ApiKeyStore(db);
    if (action === 'create') {
      if (!values.org) throw new ApiKeyError('--org is required');
      const scopes = (values.scopes ?? 'connections:read')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const { key, record } = await store.create(values.org, scopes, (values.env ?? 'live') as 'live' | 'test');
      say(
        `created key ${record.id} for org ${record.orgId} (${record.environment}, scopes ${record.scopes.join(',')}); it is shown once, now:`,
      );
      say(key);
      return 0;
    }
    if (action === 'list') {
      const list = await store.list(values.org);
      say(`${list.length} key(s)`);
      for (const k of list) {
        say(
          `${k.id}\torg=${k.orgId}\t${k.environment}\tscopes=${k.scopes.join(',')}\tcreated=${k.createdAt.toISOString()}\t${k.revokedAt ? `revoked=${k.revokedAt.toISOString()}` : 'active'}`,
        );
      }
      return 0;
    }
    if (action === 'revoke') {
      if (!id) throw new ApiKeyError('revoke takes a key id (see keys list)');
      const record = await store.revoke(id);
      if (!record) {
        say(`no key with id ${id}`);
        return 1;
      }
      say(
        `revoked key ${record.id} of org ${record.orgId}; every API instance refuses it within ${settings.apiKeyCacheMs / 1000} s`,
      );
      return 0;
    }
    say(USAGE);
    return 2;
  });
}

async function runReplay(settings: Settings, args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { batch: { type: 'string' } } });
  // A rebuild reads far more than the live projector: larger batches, fewer transactions.
  const batchSize = values.batch ? Number(values.batch) : REPLAY_BATCH_SIZE;
  let stop = false;
  const onSignal = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write('\nstopping after this batch (Ctrl-C again to abort at once)\n');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const redis = createRedis(settings, 'ops');
  try {
    return await withDb(settings, async (db) => {
      const outcome = await replay(db, new RedisReadModel(redis, settings.redisKeyPrefix), {
        batchSize,
        shouldStop: () => stop,
        log: say,
        progress: new Progress('replay'),
      });
      const rate = outcome.seconds > 0 ? Math.round(outcome.eventsApplied / outcome.seconds) : 0;
      say(
        outcome.switched
          ? `replay done: generation ${outcome.generation} live with ${outcome.eventsApplied} events in ${outcome.seconds.toFixed(1)} s (${rate} events/s)`
          : `replay stopped: generation ${outcome.generation} not switched`,
      );
      return outcome.switched ? 0 : 130;
    });
  } finally {
    redis.disconnect();
  }
}

/**
 * The writer's lag: per intake topic, the messages after its consumer group's committed offsets (all
 * retained ones where it never committed: it starts from the beginning). Committed offsets trail the
 * log by at most the append in flight, so this counts messages not yet durable in the event log.
 */
async function writerLag(settings: Settings): Promise<void> {
  const kafka = createKafka(settings, 'ops-lag', () => undefined);
  const admin = kafka.admin();
  const groupId = settings.writerGroupId;
  try {
    await admin.connect();
    const { groups } = await admin.describeGroups([groupId]);
    const group = groups[0];
    say(
      `writer (Kafka → event log): group ${groupId} ${group?.state ?? 'unknown'}, ${group?.members.length ?? 0} member(s)`,
    );
    const existing = new Set(await admin.listTopics());
    const topics = intakeTopics(settings).filter((t) => existing.has(t));
    const committed = topics.length > 0 ? await admin.fetchOffsets({ groupId, topics }) : [];
    for (const topic of intakeTopics(settings)) {
      if (!existing.has(topic)) {
        say(`  ${topic}: no such topic (the writer creates it when it starts)`);
        continue;
      }
      const at = new Map(
        (committed.find((t) => t.topic === topic)?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]),
      );
      let total = 0;
      const behind: string[] = [];
      const ends = await admin.fetchTopicOffsets(topic);
      for (const p of ends.sort((a, b) => a.partition - b.partition)) {
        const position = at.get(p.partition) ?? -1;
        const lag = Number(p.high) - (position < 0 ? Number(p.low) : position);
        total += lag;
        if (lag > 0) behind.push(`p${p.partition}: ${lag}`);
      }
      say(
        `  ${topic}: ${ends.length} partition(s), ${total} message(s) behind${behind.length > 0 ? ` (${behind.join(', ')})` : ''}`,
      );
    }
  } catch (error) {
    say(
      `writer (Kafka → event log): lag unknown, Kafka did not answer (${error instanceof Error ? error.message : String(error)})`,
    );
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

async function lag(settings: Settings): Promise<number> {
  await writerLag(settings);
  return withDb(settings, async (db) => {
    say('projector (event log → read model):');
    const generations: { generation: number; status: string }[] = await db.query(
      `SELECT generation, status FROM projection_generation ORDER BY generation`,
    );
    const live = await liveGeneration(db);
    for (const g of generations) {
      const cp = await readCheckpoint(db, g.generation);
      const behind = await logLagAfter(db, cp.at);
      say(
        `  generation ${g.generation} (${g.status}${g.generation === live ? ', served' : ''}): ${cp.eventsApplied} events applied, ` +
          `stream time ${cp.streamTime === null ? 'none' : new Date(cp.streamTime).toISOString()}, behind by ${behind.events} events / ${behind.seconds.toFixed(1)} s`,
      );
    }
    return 0;
  });
}

async function dlq(settings: Settings, args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { limit: { type: 'string' } } });
  const limit = Number(values.limit ?? 20);
  const kafka = createKafka(settings, 'ops-dlq', () => undefined);
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(settings.topics.dlq).catch(() => []);
  await admin.disconnect();
  const total = offsets.reduce((n, p) => n + (Number(p.high) - Number(p.low)), 0);
  say(`${settings.topics.dlq}: ${total} message(s)`);
  if (total === 0) return 0;
  const consumer = kafka.consumer({ groupId: `psp-ops-dlq-${process.pid}-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic: settings.topics.dlq, fromBeginning: true });
  const seen: string[] = [];
  const reasons = new Map<string, number>();
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10000);
    void consumer.run({
      eachMessage: async ({ message }) => {
        const h = (name: string) => String(message.headers?.[name] ?? '');
        reasons.set(h('dlq-reason'), (reasons.get(h('dlq-reason')) ?? 0) + 1);
        seen.push(`${h('dlq-topic')}/${h('dlq-partition')}@${h('dlq-offset')}\t${h('dlq-reason')}\t${h('dlq-detail')}`);
        if (seen.length >= total) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  say(`by reason: ${[...reasons].map(([r, n]) => `${r}=${n}`).join(', ')}`);
  for (const line of seen.slice(-limit)) say(line);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  let settings: Settings;
  try {
    settings = loadSettings(process.env);
  } catch (error) {
    if (error instanceof InvalidSettingError) {
      process.stderr.write(`ops: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const [command, ...rest] = argv;
  switch (command) {
    case 'keys':
      return keys(settings, rest);
    case 'replay':
      return runReplay(settings, rest);
    case 'lag':
      return lag(settings);
    case 'dlq':
      return dlq(settings, rest);
    case 'migrate': {
      const ran = await migrate(settings.databaseUrl);
      say(ran.length > 0 ? `ran migrations: ${ran.join(', ')}` : 'schema is up to date');
      return 0;
    }
    default:
      say(USAGE);
      return command ? 2 : 0;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      `ops: ${error instanceof ApiKeyError ? error.message : error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exit(1);
  },
);
