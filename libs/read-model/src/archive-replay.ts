import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import {
  ArchiveFileEntry,
  createSummarySet,
  foldIntoSummaries,
  readArchivedEvents,
  readLogPartitions,
  readManifest,
  Sql,
  verifyArchiveFile,
} from '@psp/storage';
import { createSeededGeneration, GenerationSeed } from './summary-seed';

/**
 * `replay --from-archive DIR` (docs/event-log.md, "Partitions, roll-ups and archives"): rebuilds from
 * the archived rows of every partition no longer in the log, and the partitions still in it, ignoring
 * the compacted partitions' summaries. The archive must hold every compacted partition; each file is
 * checked against the manifest's SHA-256 before anything is read. The archived events are folded into
 * a summary set of their own (`archive:…`, with the same fold as compaction), which seeds the new
 * generation and is deleted after; the projection then reads the log as for any replay.
 */

const ARCHIVE_SET_PREFIX = 'archive:';

export interface ArchiveReplayProgress {
  /** Archived events folded so far, of those to fold. */
  update(done: number, total: number): void;
  finish(): void;
}

export async function createGenerationFromArchive(
  db: DataSource,
  dir: string,
  options: { log?: (line: string) => void; progress?: ArchiveReplayProgress } = {},
): Promise<{ generation: number; seed: GenerationSeed | null }> {
  const log = options.log ?? (() => undefined);
  const manifest = await readManifest(dir, { mustExist: true });
  const partitions = await readLogPartitions(db);
  const needed = partitions.filter((p) => p.table !== 'attached').map((p) => p.name);
  const files = new Map(manifest.files.map((f) => [f.partition, f]));
  const missing = needed.filter((name) => !files.has(name));
  if (missing.length > 0)
    throw new Error(
      `the archive in ${dir} lacks ${missing.length} partition(s) that are no longer in the log: ${missing.join(', ')}; ` +
        `it cannot rebuild them (replay from the summaries instead)`,
    );
  const used: ArchiveFileEntry[] = needed.map((name) => files.get(name)!);
  const inLog = manifest.files.filter((f) => !needed.includes(f.partition)).map((f) => f.partition);
  if (inLog.length > 0) log(`archived partitions still in the log, read from the log: ${inLog.join(', ')}`);
  for (const entry of used) await verifyArchiveFile(dir, entry);

  // Leftovers of an interrupted replay from an archive (one replay at a time).
  await db.query(`DELETE FROM log_summary_set WHERE name LIKE '${ARCHIVE_SET_PREFIX}%'`);
  const set = `${ARCHIVE_SET_PREFIX}${process.pid}:${randomBytes(4).toString('hex')}`;
  await createSummarySet(db, set, { partitions: used.map((e) => e.partition) });
  try {
    const total = used.reduce((n, e) => n + e.rows, 0);
    let done = 0;
    for (const entry of used) {
      for await (const events of readArchivedEvents(dir, entry)) {
        await db.transaction((tx) => foldIntoSummaries(tx, set, events));
        options.progress?.update((done += events.length), total);
      }
    }
    options.progress?.finish();
    log(`folded ${done} archived events of ${used.length} partition(s) from ${dir}`);
    return await createSeededGeneration(db, {
      set,
      source: `the archive in ${dir} (${used.length} partition(s))`,
      // Under the summaries lock: no partition was compacted since the archive was chosen.
      check: async (tx: Sql) => {
        const now = (await readLogPartitions(tx)).filter((p) => p.table !== 'attached').map((p) => p.name);
        const late = now.filter((name) => !needed.includes(name));
        if (late.length > 0)
          throw new Error(`partitions compacted while the archive was read: ${late.join(', ')}; run the replay again`);
      },
    });
  } finally {
    await db.query(`DELETE FROM log_summary_set WHERE name = $1`, [set]);
  }
}
