import { Settings } from '@psp/config';
import { countPartitionRows, LogPartition, readLogPartitions, readLogSideTables } from '@psp/storage';
import { withDb } from '../context';
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
    return EXIT.ok;
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
  };
}
