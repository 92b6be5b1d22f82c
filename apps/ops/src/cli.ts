import { Command, CommanderError, Option } from 'commander';
import { ApiKeyError } from '@psp/api-keys';
import { migrate } from '@psp/storage';
import { CONSOLE_PORT, opsConsole } from './commands/console';
import { createKey, listKeys, revokeKey } from './commands/keys';
import { DLQ_LIST_LIMIT, listDlq, redriveDlq } from './commands/dlq';
import { health } from './commands/health';
import { lag } from './commands/lag';
import { logArchive, logCompact, logPartitions } from './commands/log';
import { DEFAULT_FOLD_PARALLELISM } from '@psp/read-model';
import { REPLAY_BATCH_SIZE, runReplay } from './commands/replay';
import { settingsFromEnv } from './context';
import { collectList, EXIT, parseTime, positiveInteger, say, UsageError } from './output';

const EXIT_CODES = `
Exit codes:
  0    done
  1    the operation failed (a server did not answer, no such key, …)
  2    usage error: unknown command or option, bad option value, invalid settings
  130  replay or log compaction interrupted (Ctrl-C); run it again to resume

Settings come from the environment, as for the service (DATABASE_URL, KAFKA_BROKERS, TOPIC_*, …).
Progress goes to stderr: a bar on a terminal, a line every 2 s otherwise (or with CI set).`;

const REDRIVE_HELP = `
Re-sends each selected DLQ message to the intake topic its dlq-topic header names, with its key and
value unchanged and its headers without the dlq-* ones. The DLQ is read from the beginning (or
--since) up to where it ended when the run started, with a consumer group of the run's own that is
deleted afterwards: no other reader's offsets move. Messages whose dlq-topic is not an intake topic
are skipped and counted. The DLQ itself is left as it is.

Running it again is safe: the writer applies each event_id once, so an event already applied
changes nothing. A message that is still bad goes back to the DLQ (a new copy).

Recovering after a producer bug is fixed:
  npm run ops -- dlq                                  # what is there, by reason and source topic
  npm run ops -- dlq redrive --reason R --dry-run      # what would be re-sent
  npm run ops -- dlq redrive --reason R                # re-send; then watch \`ops dlq\` and \`ops lag\``;

const PARTITIONS_HELP = `
The event log is partitioned by the time of the append (recorded_at), LOG_PARTITION_DAYS whole UTC
days per partition; the writer creates them LOG_PARTITIONS_AHEAD_DAYS ahead. States:
  open       its range has not passed yet (or a transaction that could still write there is running)
  closed     complete: nothing can be added to it any more
  compacted  folded into the per-connection summaries and detached from the log (dropped with --drop)
  archived   written to an archive file (log archive) before it was dropped
Rows are counted (every row of every partition is read).`;

const COMPACT_HELP = `
Each closed partition is folded, batch by batch, into one summary per connection (the connection's
state over those events: counters, sums, maxima, last-writer-wins registers, the minute buckets that
can still enter a health window) and detached from the log in one transaction, once every live or
building read-model generation has read past it. A replay then starts from the summaries and the
partitions still in the log, and answers exactly as a replay of the whole log. Event ids stay in
event_log_ids, so a late duplicate is still recognised. One run at a time across every process;
Ctrl-C stops after the current batch (exit 130) and a later run resumes. With LOG_RETAIN_DAYS the
writer does the same on a schedule.`;

const REPLAY_HELP = `
The new generation starts from the summaries of the compacted partitions (log compact) and reads the
partitions still in the log. With --from-archive DIR it ignores those summaries and reads the
archived rows of every partition no longer in the log instead: the archive must hold all of them,
and each file must match the SHA-256 in DIR/manifest.json, else nothing is built (exit 1).

The log up to the start is folded connection by connection, each of the 16 shards on its own
(--parallel of them at once; run ops replay again in another shell or host and it folds the shards
left, coordinated by PostgreSQL advisory locks), then the steps catch up with what came meanwhile.`;

const ARCHIVE_HELP = `
Writes each closed partition whose range ends at or before DATE (still in the log, or compacted and
not yet dropped) and not yet in DIR to DIR/<partition>.ndjson.gz: gzip'd NDJSON, a header line, then
every row in (transaction_id, position) order with every column as stored. DIR/manifest.json lists
the files with their rows and SHA-256. A file is written aside and renamed once complete. Format:
docs/event-log.md, "Archive format". With LOG_ARCHIVE_DIR set, log compact --drop and the writer's
retention archive each partition there before dropping it.`;

const CONSOLE_HELP = `
Serves a page on 127.0.0.1 only (open the printed URL; nothing listens on other addresses), reading
what the other commands read: the live read model (an org's connections, health now and its score at
each minute of the window), the health topic (TOPIC_HEALTH) followed live and pushed to the page as
server-sent events, each read-model generation's lag per shard (a building one is a replay: its
progress), and the DLQ tallied by reason. Kafka is read with consumer groups of the console's own,
deleted when it stops: no other reader's offsets move. Ctrl-C stops it.`;

/** The ops command line. Actions leave their exit code in `result`. */
export function buildProgram(result: { code: number }): Command {
  const program = new Command('npm run ops --');
  program
    .description('Operate psp-connections: API keys, read-model replay, lag, the DLQ, migrations.')
    .exitOverride()
    // A command's options stop at its subcommand: `dlq redrive --json` is redrive's --json, not dlq's.
    .enablePositionalOptions()
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', EXIT_CODES);

  const keys = program.command('keys').description('manage API keys (a key is shown once, when it is created)');
  keys
    .command('create')
    .description('create a key for an org; the key is printed once, alone on the last line of stdout')
    .requiredOption('--org <org>', 'the org the key belongs to (1-64 of A-Z a-z 0-9 _ -)')
    .option('--scopes <scopes>', 'comma-separated scopes', 'connections:read')
    .addOption(new Option('--env <env>', 'live or test key').choices(['live', 'test']).default('live'))
    .action(async (opts: { org: string; scopes: string; env: 'live' | 'test' }) => {
      const scopes = opts.scopes
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      result.code = await createKey(settingsFromEnv(), { org: opts.org, scopes, env: opts.env });
    });
  keys
    .command('list')
    .description('list keys: ids, orgs, scopes, created/revoked (never a key or its hash)')
    .option('--org <org>', 'only this org')
    .option('--json', 'one JSON array on stdout')
    .action(async (opts: { org?: string; json?: boolean }) => {
      result.code = await listKeys(settingsFromEnv(), opts);
    });
  keys
    .command('revoke')
    .description('revoke a key; every API instance refuses it within API_KEY_CACHE_MS (at most 5 s)')
    .argument('<key-id>', 'the key id (see keys list), not the key')
    .action(async (id: string) => {
      result.code = await revokeKey(settingsFromEnv(), id);
    });

  program
    .command('replay')
    .description('rebuild the read model into a new generation beside the live one, then switch (resumable)')
    .option('--batch <n>', 'events per projection transaction', positiveInteger('--batch'), REPLAY_BATCH_SIZE)
    .option(
      '--from-archive <dir>',
      'rebuild the partitions no longer in the log from the archive in DIR (log archive) instead of their summaries',
    )
    .option(
      '--parallel <n>',
      'shards of the 16 folded at once by this process, at most 16 (another ops replay run beside it takes the shards left)',
      positiveInteger('--parallel'),
      DEFAULT_FOLD_PARALLELISM,
    )
    .addHelpText('after', REPLAY_HELP)
    .action(async (opts: { batch: number; fromArchive?: string; parallel: number }) => {
      result.code = await runReplay(settingsFromEnv(), opts);
    });

  program
    .command('health')
    .description("health changes the service produces for routers (TOPIC_HEALTH), with each connection's trend")
    .option(
      '--follow',
      'keep printing changes as they happen (Ctrl-C stops); default: read what is there and summarise',
    )
    .option('--org <org>', 'only this org')
    .option('--from-beginning', "with --follow: start at the topic's first message (default: only new changes)")
    .option('--json', 'JSON: one change a line with --follow, else one array of the latest change per connection')
    .action(async (opts: { follow?: boolean; org?: string; fromBeginning?: boolean; json?: boolean }) => {
      result.code = await health(settingsFromEnv(), opts);
    });

  program
    .command('lag')
    .description('how far the writer is behind Kafka, and each read-model generation behind the event log')
    .option('--json', 'one JSON object on stdout')
    .option('--exact', 'count every event a shard is behind (default: up to 1,000 per shard, then "at least")')
    .action(async (opts: { json?: boolean; exact?: boolean }) => {
      result.code = await lag(settingsFromEnv(), opts);
    });

  program
    .command('console')
    .description(
      'a web page on 127.0.0.1: connections of an org with their health, the live feed of health changes, lag per shard, the DLQ, a replay',
    )
    .option('--port <n>', "the port on 127.0.0.1 (never the API's HTTP_PORT)", positiveInteger('--port'), CONSOLE_PORT)
    .option('--org <org>', 'the org the page opens on (the page can switch)')
    .addHelpText('after', CONSOLE_HELP)
    .action(async (opts: { port: number; org?: string }) => {
      result.code = await opsConsole(settingsFromEnv(), opts);
    });

  const dlq = program
    .command('dlq')
    .description('the DLQ by reason and source topic, and the newest messages (never their values)')
    .option('--limit <n>', 'newest messages to print', positiveInteger('--limit'), DLQ_LIST_LIMIT)
    .option('--since <time>', 'only messages since TIME (2026-11-24T10:00:00Z, or 30m, 2h, 7d ago)', (v) =>
      parseTime(v),
    )
    .option('--json', 'one JSON object on stdout')
    .action(async (opts: { limit: number; since?: number; json?: boolean }) => {
      result.code = await listDlq(settingsFromEnv(), { limit: opts.limit, since: opts.since ?? null, json: opts.json });
    });
  dlq
    .command('redrive')
    .description('re-send DLQ messages to the intake topic they came from (after the cause is fixed)')
    .addOption(
      new Option('--reason <reason>', 'only this dlq-reason; repeat it or give a comma list')
        .argParser(collectList)
        .default([], 'all'),
    )
    .option('--since <time>', 'only messages since TIME (2026-11-24T10:00:00Z, or 30m, 2h, 7d ago)', (v) =>
      parseTime(v),
    )
    .option('--dry-run', 'count what would be re-sent; send nothing')
    .option('--json', 'the counts as one JSON object on stdout')
    .addHelpText('after', REDRIVE_HELP)
    .action(async (opts: { reason: string[]; since?: number; dryRun?: boolean; json?: boolean }) => {
      result.code = await redriveDlq(settingsFromEnv(), {
        reasons: opts.reason,
        since: opts.since ?? null,
        dryRun: Boolean(opts.dryRun),
        json: opts.json,
      });
    });

  const log = program
    .command('log')
    .description('the event log: partitions, roll-ups (compact) and archives (docs/event-log.md)');
  log
    .command('partitions')
    .description('every partition: its range of recorded_at, rows (counted), bytes and state; the id and stream tables')
    .option('--json', 'one JSON object on stdout')
    .addHelpText('after', PARTITIONS_HELP)
    .action(async (opts: { json?: boolean }) => {
      result.code = await logPartitions(settingsFromEnv(), opts);
    });
  log
    .command('archive')
    .description('write the closed partitions before DATE to compressed files in DIR (before they are dropped)')
    .requiredOption('--before <date>', 'partitions whose range ends at or before DATE (2026-11-20, or 7d ago)', (v) =>
      parseTime(v),
    )
    .requiredOption('--to <dir>', 'the archive directory (created when missing)')
    .option('--json', 'the outcome as one JSON object on stdout')
    .addHelpText('after', ARCHIVE_HELP)
    .action(async (opts: { before: number; to: string; json?: boolean }) => {
      result.code = await logArchive(settingsFromEnv(), opts);
    });
  log
    .command('compact')
    .description(
      'fold the closed partitions before DATE into per-connection summaries and detach them (--drop: drop them)',
    )
    .requiredOption('--before <date>', 'partitions whose range ends at or before DATE (2026-11-20, or 7d ago)', (v) =>
      parseTime(v),
    )
    .option('--drop', 'drop the compacted partitions before DATE afterwards (archive them first to keep their rows)')
    .option('--json', 'the outcome as one JSON object on stdout')
    .addHelpText('after', COMPACT_HELP)
    .action(async (opts: { before: number; drop?: boolean; json?: boolean }) => {
      result.code = await logCompact(settingsFromEnv(), opts);
    });

  program
    .command('migrate')
    .description('create the database when missing and run migrations')
    .action(async () => {
      const ran = await migrate(settingsFromEnv().databaseUrl);
      say(ran.length > 0 ? `ran migrations: ${ran.join(', ')}` : 'schema is up to date');
      result.code = EXIT.ok;
    });

  return program;
}

/** Runs the command line; resolves to the exit code (README "Ops": 0 done, 1 failed, 2 usage error). */
export async function runCli(argv: string[]): Promise<number> {
  const result = { code: EXIT.ok as number };
  const program = buildProgram(result);
  if (argv.length === 0) {
    program.outputHelp();
    return EXIT.ok;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return result.code;
  } catch (error) {
    // Commander has printed its message (or the help) already.
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (error instanceof UsageError || error instanceof ApiKeyError) {
      process.stderr.write(`ops: ${error.message}\n(add --help for usage)\n`);
      return EXIT.usage;
    }
    process.stderr.write(`ops: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT.failed;
  }
}
