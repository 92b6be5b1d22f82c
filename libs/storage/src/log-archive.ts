import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { DataSource } from 'typeorm';
import { ConnectionEvent } from '@psp/domain';
import { withLogMaintenanceLock } from './log-compaction';
import { assertPartitionName, LogPartition, readLogPartitions } from './log-partitions';

/**
 * Archives of the event log (docs/event-log.md, "Archive format"): each closed partition written to
 * one gzip'd NDJSON file, a header line then its rows in (transaction_id, position) order, every
 * column as stored; a manifest (`manifest.json`) lists the files with their SHA-256. Written before a
 * partition is dropped; read back by `replay --from-archive`.
 */

export const ARCHIVE_FORMAT = 'psp-connections/event-log-archive';
export const MANIFEST_FORMAT = 'psp-connections/event-log-archive-manifest';
export const ARCHIVE_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';

/** The members of every row line, in this order (as the log's columns). */
export const ARCHIVE_COLUMNS = [
  'position',
  'transaction_id',
  'event_id',
  'org_id',
  'connection_id',
  'stream_version',
  'type',
  'occurred_at',
  'data',
  'source_topic',
  'source_partition',
  'source_offset',
  'recorded_at',
] as const;

/** The first line of an archive file. */
export interface ArchiveHeader {
  format: typeof ARCHIVE_FORMAT;
  version: number;
  partition: string;
  from: string;
  to: string;
  rows: number;
  order: ['transaction_id', 'position'];
  columns: string[];
}

/** One row line. bigint and xid8 values are strings (beyond JavaScript's exact integers); times in UTC, microseconds. */
export interface ArchiveRow {
  position: string;
  transaction_id: string;
  event_id: string;
  org_id: string;
  connection_id: string;
  stream_version: number;
  type: ConnectionEvent['type'];
  occurred_at: string;
  data: ConnectionEvent['data'];
  source_topic: string;
  source_partition: number;
  source_offset: string;
  recorded_at: string;
}

export interface ArchiveFileEntry {
  file: string;
  partition: string;
  from: string;
  to: string;
  rows: number;
  /** Size of the compressed file. */
  bytes: number;
  /** SHA-256 of the compressed file, hex. */
  sha256: string;
  archived_at: string;
}

export interface ArchiveManifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  /** Oldest partition first. */
  files: ArchiveFileEntry[];
}

/** Timestamps as stored, to the microsecond, in UTC. */
const UTC_MICROS = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;
const ROW_LINE = `json_build_object(
    'position', position::text, 'transaction_id', transaction_id::text, 'event_id', event_id, 'org_id', org_id,
    'connection_id', connection_id, 'stream_version', stream_version, 'type', type,
    'occurred_at', to_char(occurred_at AT TIME ZONE 'UTC', ${UTC_MICROS}), 'data', data,
    'source_topic', source_topic, 'source_partition', source_partition, 'source_offset', source_offset::text,
    'recorded_at', to_char(recorded_at AT TIME ZONE 'UTC', ${UTC_MICROS}))::text AS line`;

/** The manifest of an archive directory; an empty one when there is none yet. */
export async function readManifest(dir: string, options: { mustExist?: boolean } = {}): Promise<ArchiveManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT' && !options.mustExist)
      return { format: MANIFEST_FORMAT, version: ARCHIVE_VERSION, files: [] };
    if ((error as { code?: string }).code === 'ENOENT')
      throw new Error(`no archive in ${dir} (${MANIFEST_FILE} is missing)`);
    throw error;
  }
  const manifest = JSON.parse(text) as ArchiveManifest;
  if (manifest.format !== MANIFEST_FORMAT || manifest.version !== ARCHIVE_VERSION)
    throw new Error(`${join(dir, MANIFEST_FILE)} is not a version ${ARCHIVE_VERSION} event-log archive manifest`);
  return manifest;
}

async function writeManifest(dir: string, manifest: ArchiveManifest): Promise<void> {
  manifest.files.sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
  const tmp = join(dir, `${MANIFEST_FILE}.partial`);
  await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  await fsyncPath(tmp);
  await rename(tmp, join(dir, MANIFEST_FILE));
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export interface ArchiveOptions {
  /** Partitions whose range ends at or before this instant (epoch ms). */
  before: number;
  dir: string;
  log?: (line: string) => void;
  /** Rows written so far, of the rows to write. */
  progress?: (done: number, total: number) => void;
}

export interface ArchiveOutcome {
  archived: ArchiveFileEntry[];
  /** Partitions already in this archive. */
  present: string[];
  skipped: { name: string; reason: string }[];
}

/**
 * `log archive`: writes every closed partition (attached, or compacted and not yet dropped) whose
 * range ends at or before `before` and that the archive in `dir` does not hold yet. One run at a time
 * with compactions and drops (the same lock).
 */
export async function archiveLog(db: DataSource, options: ArchiveOptions): Promise<ArchiveOutcome> {
  return withLogMaintenanceLock(db, async () => {
    const outcome: ArchiveOutcome = { archived: [], present: [], skipped: [] };
    const manifest = await readManifest(options.dir);
    const todo: LogPartition[] = [];
    for (const p of await readLogPartitions(db)) {
      if (p.to > options.before) break;
      if (p.table === 'dropped') {
        if (!manifest.files.some((f) => f.partition === p.name))
          outcome.skipped.push({ name: p.name, reason: 'dropped: its rows are gone' });
        else outcome.present.push(p.name);
        continue;
      }
      if (!p.closed) {
        outcome.skipped.push({ name: p.name, reason: 'open: rows may still arrive' });
        break;
      }
      if (manifest.files.some((f) => f.partition === p.name)) outcome.present.push(p.name);
      else todo.push(p);
    }
    let total = 0;
    for (const p of todo) total += await countRows(db, p.name);
    let done = 0;
    for (const p of todo) {
      const entry = await archivePartition(db, p, options.dir, (n) => options.progress?.((done += n), total));
      outcome.archived.push(entry);
      options.log?.(
        `${p.name}: ${entry.rows} rows archived to ${join(options.dir, entry.file)} (${entry.bytes} bytes)`,
      );
    }
    return outcome;
  });
}

async function countRows(db: DataSource, name: string): Promise<number> {
  assertPartitionName(name);
  return Number((await db.query(`SELECT count(*)::text AS n FROM "${name}"`))[0].n);
}

/**
 * Writes one closed partition to `dir` (`<partition>.ndjson.gz`, written aside and renamed once
 * complete and synced), adds it to the manifest and records it on the partition. The caller holds the
 * log-maintenance lock (compactLog's drop calls it for each partition it is about to drop).
 */
export async function archivePartition(
  db: DataSource,
  partition: LogPartition,
  dir: string,
  progressed: (rows: number) => void = () => undefined,
): Promise<ArchiveFileEntry> {
  assertPartitionName(partition.name);
  await mkdir(dir, { recursive: true });
  const file = `${partition.name}.ndjson.gz`;
  const tmp = join(dir, `${file}.partial`);
  const reader = db.createQueryRunner();
  await reader.connect();
  let rows = 0;
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    // One read-only snapshot for the count and the rows (no transaction id: holds no projector back).
    await reader.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`);
    const total = Number((await reader.query(`SELECT count(*)::text AS n FROM "${partition.name}"`))[0].n);
    const header: ArchiveHeader = {
      format: ARCHIVE_FORMAT,
      version: ARCHIVE_VERSION,
      partition: partition.name,
      from: new Date(partition.from).toISOString(),
      to: new Date(partition.to).toISOString(),
      rows: total,
      order: ['transaction_id', 'position'],
      columns: [...ARCHIVE_COLUMNS],
    };
    await reader.query(
      `DECLARE archive_rows NO SCROLL CURSOR FOR SELECT ${ROW_LINE} FROM "${partition.name}" ORDER BY transaction_id, position`,
    );
    async function* lines(): AsyncGenerator<string> {
      yield `${JSON.stringify(header)}\n`;
      for (;;) {
        const batch: { line: string }[] = await reader.query(`FETCH FORWARD 5000 FROM archive_rows`);
        if (batch.length === 0) return;
        rows += batch.length;
        progressed(batch.length);
        yield batch.map((b) => `${b.line}\n`).join('');
      }
    }
    const measure = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(
      Readable.from(lines(), { objectMode: false }),
      createGzip({ level: 6 }),
      measure,
      createWriteStream(tmp),
    );
    if (rows !== total) throw new Error(`${partition.name}: read ${rows} rows, counted ${total}`);
    await fsyncPath(tmp);
    await rename(tmp, join(dir, file));
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  } finally {
    await reader.query(`ROLLBACK`).catch(() => undefined);
    await reader.release();
  }
  const entry: ArchiveFileEntry = {
    file,
    partition: partition.name,
    from: new Date(partition.from).toISOString(),
    to: new Date(partition.to).toISOString(),
    rows,
    bytes,
    sha256: hash.digest('hex'),
    archived_at: new Date().toISOString(),
  };
  const manifest = await readManifest(dir);
  manifest.files = manifest.files.filter((f) => f.partition !== partition.name);
  manifest.files.push(entry);
  await writeManifest(dir, manifest);
  await db.query(
    `UPDATE event_log_partition
        SET archived_at = clock_timestamp(), archived_rows = $2, archive_file = $3, archive_sha256 = $4
      WHERE name = $1`,
    [partition.name, rows, join(dir, file), entry.sha256],
  );
  return entry;
}

/** Checks a file against its manifest entry: size and SHA-256 of the compressed bytes. */
export async function verifyArchiveFile(dir: string, entry: ArchiveFileEntry): Promise<void> {
  const path = join(dir, entry.file);
  const size = (await stat(path)).size;
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  const sha256 = hash.digest('hex');
  if (size !== entry.bytes || sha256 !== entry.sha256)
    throw new Error(
      `${path} does not match its manifest entry (sha256 ${sha256}, expected ${entry.sha256}): refusing to use it`,
    );
}

/**
 * The events of one archive file, in the log's order, in batches; checks the header against the
 * manifest entry and the row count against the header.
 */
export async function* readArchivedEvents(
  dir: string,
  entry: ArchiveFileEntry,
  batchSize = 10_000,
): AsyncGenerator<ConnectionEvent[]> {
  const path = join(dir, entry.file);
  const lines = createInterface({ input: createReadStream(path).pipe(createGunzip()), crlfDelay: Infinity });
  let header: ArchiveHeader | null = null;
  let rows = 0;
  let batch: ConnectionEvent[] = [];
  for await (const line of lines) {
    if (header === null) {
      header = JSON.parse(line) as ArchiveHeader;
      if (
        header.format !== ARCHIVE_FORMAT ||
        header.version !== ARCHIVE_VERSION ||
        header.partition !== entry.partition
      )
        throw new Error(`${path}: not the version ${ARCHIVE_VERSION} archive of ${entry.partition}`);
      continue;
    }
    if (line === '') continue;
    const row = JSON.parse(line) as ArchiveRow;
    rows++;
    batch.push({
      eventId: row.event_id,
      type: row.type,
      orgId: row.org_id,
      connectionId: row.connection_id,
      occurredAt: Date.parse(row.occurred_at),
      data: row.data,
    } as ConnectionEvent);
    if (batch.length >= batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (header === null) throw new Error(`${path}: empty archive file`);
  if (rows !== header.rows || rows !== entry.rows)
    throw new Error(`${path}: ${rows} rows, the header says ${header.rows} and the manifest ${entry.rows}`);
  if (batch.length > 0) yield batch;
}
