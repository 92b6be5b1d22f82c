import { Settings } from '@psp/config';
import { generationsBehindLogTable } from '@psp/read-model';
import {
  archiveLog,
  archivePartition,
  COMPACTED,
  compactLog,
  CompactionOutcome,
  countPartitionRows,
  LogPartition,
  readLogPartitions,
  readLogSideTables,
  readManifest,
  readSummarySet,
  SummarySet,
  ArchiveOutcome,
} from '@psp/storage';
import { DataSource } from 'typeorm';
import { stopOnSignal, withDb } from '../context';
import { EXIT, say, sayJson } from '../output';
import { Progress } from '../progress';

/** Bytes for a human: B, KiB, MiB, GiB. */
export function humanBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** `ops log partitions`: every partition of the event log, its range, rows, bytes and state; the side tables. */
export async function logPartitions(settings: Settings, options: { json?: boolean }): Promise<number> {
  return withDb(settings, async (db) => {
    const partitions = await readLogPartitions(db);
    const progress = new Progress('counting rows', { unit: 'partitions' });
    let done = 0;
    for (const p of partitions) {
      if (p.table !== 'dropped') p.rows = await countPartitionRows(db, p.name);
      progress.update(++done, partitions.length);
    }
    progress.finish();
    const side = await readLogSideTables(db);
    const attached = partitions.filter((p) => p.table === 'attached');
    const liveRows = attached.reduce((n, p) => n + (p.rows ?? 0), 0);
    const liveBytes = attached.reduce((n, p) => n + p.bytes, 0);
    const idsPerEvent = side.ids.rows > 0 ? side.ids.bytes / side.ids.rows : null;
    const summaries = await readSummarySet(db, COMPACTED);
    if (options.json) {
      sayJson({
        partition_days: settings.logPartitionDays,
        partitions: partitions.map(partitionJson),
        log: { rows: liveRows, bytes: liveBytes },
        ids: {
          rows: side.ids.rows,
          bytes: side.ids.bytes,
          bytes_per_event: idsPerEvent === null ? null : Math.round(idsPerEvent * 10) / 10,
        },
        streams: side.streams,
        summaries: summariesJson(summaries),
      });
      return EXIT.ok;
    }
    say(
      `event log: ${attached.length} attached partition(s) of ${settings.logPartitionDays} day(s), ${liveRows} rows, ${humanBytes(liveBytes)}`,
    );
    const table = [['partition', 'from', 'to', 'state', 'table', 'rows', 'bytes']];
    for (const p of partitions)
      table.push([
        p.name,
        iso(p.from),
        iso(p.to),
        p.state,
        p.table,
        p.rows === null ? '-' : String(p.rows),
        humanBytes(p.bytes),
      ]);
    const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)));
    for (const row of table) say(`  ${row.map((cell, c) => cell.padEnd(widths[c])).join('  ')}`.trimEnd());
    say(
      `event ids (event_log_ids, kept for every event ever logged): ${side.ids.rows} ids, ${humanBytes(side.ids.bytes)}` +
        (idsPerEvent === null ? '' : ` (${idsPerEvent.toFixed(1)} B per event)`),
    );
    say(`stream versions (event_log_streams): ${side.streams.rows} streams, ${humanBytes(side.streams.bytes)}`);
    say(summariesLine(summaries));
    return EXIT.ok;
  });
}

/** With LOG_ARCHIVE_DIR set: archives a partition about to be dropped, unless that archive holds it. */
export function archiveBeforeDrop(
  settings: Settings,
  db: DataSource,
): ((partition: LogPartition) => Promise<void>) | undefined {
  const dir = settings.logArchiveDir;
  if (dir === null) return undefined;
  return async (partition) => {
    if ((await readManifest(dir)).files.some((f) => f.partition === partition.name)) return;
    await archivePartition(db, partition, dir);
  };
}

/** `ops log archive --before DATE --to DIR`: writes the closed partitions before DATE to DIR. */
export async function logArchive(
  settings: Settings,
  options: { before: number; to: string; json?: boolean },
): Promise<number> {
  return withDb(settings, async (db) => {
    const progress = new Progress('archive', { unit: 'rows' });
    let outcome: ArchiveOutcome;
    try {
      outcome = await archiveLog(db, {
        before: options.before,
        dir: options.to,
        log: options.json ? () => undefined : (line) => process.stderr.write(`${line}\n`),
        progress: (done, total) => progress.update(done, total),
      });
    } finally {
      progress.finish();
    }
    if (options.json) {
      sayJson({ before: iso(options.before), dir: options.to, ...outcome });
      return EXIT.ok;
    }
    const rows = outcome.archived.reduce((n, a) => n + a.rows, 0);
    say(
      `archived ${outcome.archived.length} partition(s) (${rows} rows) to ${options.to}` +
        (outcome.archived.length > 0 ? `: ${outcome.archived.map((a) => a.partition).join(', ')}` : ''),
    );
    if (outcome.present.length > 0) say(`already in the archive: ${outcome.present.join(', ')}`);
    for (const s of outcome.skipped) say(`left ${s.name}: ${s.reason}`);
    return EXIT.ok;
  });
}

function summariesJson(set: SummarySet | null): Record<string, unknown> {
  return {
    partitions: set?.partitions ?? [],
    events: set?.events ?? 0,
    connections: set?.connections ?? 0,
    stream_time: set?.streamTime == null ? null : iso(set.streamTime),
  };
}

function summariesLine(set: SummarySet | null): string {
  if (set === null || set.partitions.length === 0) return 'summaries: none (nothing compacted)';
  return (
    `summaries: ${set.partitions.length} compacted partition(s), ${set.events} events in ${set.connections} connection summaries, ` +
    `stream time ${set.streamTime === null ? '-' : iso(set.streamTime)}`
  );
}

/**
 * `ops log compact --before DATE [--drop]`: folds the closed partitions whose range ends at or before
 * DATE into the summaries and detaches them; with --drop, drops their tables. Ctrl-C stops after the
 * current batch (a later run resumes).
 */
export async function logCompact(
  settings: Settings,
  options: { before: number; drop?: boolean; json?: boolean },
): Promise<number> {
  const shouldStop = stopOnSignal();
  return withDb(settings, async (db) => {
    const progress = new Progress('compact', { unit: 'events' });
    let outcome: CompactionOutcome;
    try {
      outcome = await compactLog(db, {
        generationsBehind: generationsBehindLogTable,
        before: options.before,
        drop: Boolean(options.drop),
        log: options.json ? () => undefined : (line) => process.stderr.write(`${line}\n`),
        progress: (done, total) => progress.update(done, total),
        shouldStop,
        // With LOG_ARCHIVE_DIR, each partition is archived there before it is dropped.
        beforeDrop: archiveBeforeDrop(settings, db),
      });
    } finally {
      progress.finish();
    }
    if (options.json) {
      sayJson({
        before: iso(options.before),
        compacted: outcome.compacted,
        dropped: outcome.dropped,
        skipped: outcome.skipped,
        stopped: outcome.stopped,
        summaries: summariesJson(outcome.summaries),
      });
    } else {
      const events = outcome.compacted.reduce((n, c) => n + c.rows, 0);
      say(
        `compacted ${outcome.compacted.length} partition(s) (${events} events)${outcome.compacted.length > 0 ? `: ${outcome.compacted.map((c) => c.name).join(', ')}` : ''}`,
      );
      if (options.drop)
        say(
          `dropped ${outcome.dropped.length} partition(s)${outcome.dropped.length > 0 ? `: ${outcome.dropped.join(', ')}` : ''}`,
        );
      for (const s of outcome.skipped) say(`left ${s.name}: ${s.reason}`);
      if (outcome.stopped) say('stopped: run it again to go on where it stopped');
      say(summariesLine(outcome.summaries));
    }
    return outcome.stopped ? EXIT.interrupted : EXIT.ok;
  });
}

export function partitionJson(p: LogPartition): Record<string, unknown> {
  return {
    name: p.name,
    from: iso(p.from),
    to: iso(p.to),
    state: p.state,
    table: p.table,
    rows: p.rows,
    bytes: p.bytes,
    archive_file: p.archiveFile,
  };
}
