import { DataSource } from 'typeorm';
import { EventToAppend } from '@psp/storage';
import { mixedEvents } from './seed';

export const DAY = 86_400_000;
/** Today's UTC midnight. */
export const today = Math.floor(Date.now() / DAY) * DAY;
export const HISTORY_START = Date.UTC(2026, 10, 24, 8, 0, 0);

/** Appends rows as if at `recordedAt` (into that day's partition), through event_log like any append. */
export async function appendAt(db: DataSource, rows: EventToAppend[], recordedAt: number): Promise<void> {
  await db.query(
    `INSERT INTO event_log (event_id, org_id, connection_id, stream_version, type, occurred_at, data,
                            source_topic, source_partition, source_offset, recorded_at)
     SELECT u.*, $11::timestamptz
       FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::timestamptz[], $7::json[], $8::text[],
                   $9::int[], $10::bigint[]) AS u`,
    [
      rows.map((r) => r.event.eventId),
      rows.map((r) => r.event.orgId),
      rows.map((r) => r.event.connectionId),
      rows.map((r) => r.streamVersion),
      rows.map((r) => r.event.type),
      rows.map((r) => new Date(r.event.occurredAt).toISOString()),
      rows.map((r) => JSON.stringify(r.event.data)),
      rows.map((r) => r.source.topic),
      rows.map((r) => r.source.partition),
      rows.map((r) => r.source.offset),
      new Date(recordedAt).toISOString(),
    ],
  );
}

/**
 * The same events every call (fixed seed), with their stream versions, split over five days of
 * appends: `perDay` events on each of the four days before today, and the rest today.
 */
export function history(
  options: { orgs: number; perDay?: number } = { orgs: 3 },
): { rows: EventToAppend[]; recordedAt: number }[] {
  const perDay = options.perDay ?? 1200;
  const events = mixedEvents({
    orgs: options.orgs,
    connections: 25,
    events: perDay * 5,
    seed: 7,
    start: HISTORY_START,
  });
  const versions = new Map<string, number>();
  const rows = events.map((event, i) => {
    const key = `${event.orgId}:${event.connectionId}`;
    versions.set(key, (versions.get(key) ?? 0) + 1);
    return { event, streamVersion: versions.get(key)!, source: { topic: 'seed', partition: 0, offset: String(i) } };
  });
  const days = [];
  for (let d = 4; d >= 0; d--) {
    const chunk = rows.slice((4 - d) * perDay, (5 - d) * perDay);
    days.push({ rows: chunk, recordedAt: d === 0 ? Date.now() - 1000 : today - d * DAY + 12 * 3600_000 });
  }
  return days;
}

/** The name of the partition that starts at `dayStart`. */
export function partitionOf(dayStart: number): string {
  return `event_log_p${new Date(dayStart).toISOString().slice(0, 10).replace(/-/g, '')}`;
}
