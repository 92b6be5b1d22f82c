import { Kafka } from 'kafkajs';
import { Settings } from '@psp/config';
import { createKafka } from '@psp/messaging';
import { DlqRange, dlqRange, DlqRecord, readDlq } from '../dlq-reader';
import { EXIT, say, sayJson } from '../output';
import { Progress } from '../progress';

/** The message lines `ops dlq` prints by default. */
export const DLQ_LIST_LIMIT = 20;

function kafkaFor(settings: Settings, clientId: string): Kafka {
  return createKafka(settings, clientId, (level, message) => {
    if (level === 'error') process.stderr.write(`[kafka] ${message}\n`);
  });
}

async function rangeOf(kafka: Kafka, topic: string, since: number | null): Promise<DlqRange | null> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await dlqRange(admin, topic, since);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

function describeRange(range: DlqRange): string {
  return range.since === null ? 'from the beginning' : `since ${new Date(range.since).toISOString()}`;
}

const reasonOf = (r: DlqRecord) => r.dlq.reason || '(no dlq-reason)';
const sourceOf = (r: DlqRecord) => r.dlq.topic || '(no dlq-topic)';

function isoTime(timestamp: string): string {
  const ms = Number(timestamp);
  return Number.isFinite(ms) && ms >= 0 ? new Date(ms).toISOString() : '-';
}

function sortedByCount<T extends { messages: number }>(map: Map<string, T>): [string, T][] {
  return [...map].sort((a, b) => b[1].messages - a[1].messages || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function countsText(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ');
}

interface ListedMessage {
  timestamp: string;
  dlq_partition: number;
  dlq_offset: string;
  reason: string;
  detail: string;
  topic: string;
  partition: number | null;
  offset: string;
}

/**
 * `ops dlq`: the DLQ's messages by reason (and the topics they came from), and the newest `limit`
 * messages' reasons and details. Never a message's value: it may carry credentials.
 */
export async function listDlq(
  settings: Settings,
  options: { limit: number; since: number | null; json?: boolean },
): Promise<number> {
  const topic = settings.topics.dlq;
  const kafka = kafkaFor(settings, 'ops-dlq');
  const range = await rangeOf(kafka, topic, options.since);
  const byReason = new Map<string, { messages: number; topics: Record<string, number> }>();
  let newest: (ListedMessage & { order: number })[] = [];
  let read = 0;
  if (range && range.total > 0) {
    const progress = new Progress('dlq', { unit: 'messages' });
    try {
      await readDlq(
        kafka,
        range,
        async (records) => {
          for (const r of records) {
            const reason = reasonOf(r);
            const entry = byReason.get(reason) ?? { messages: 0, topics: {} };
            entry.messages += 1;
            entry.topics[sourceOf(r)] = (entry.topics[sourceOf(r)] ?? 0) + 1;
            byReason.set(reason, entry);
            newest.push({
              order: read++,
              timestamp: r.timestamp,
              dlq_partition: r.partition,
              dlq_offset: r.offset,
              reason: r.dlq.reason,
              detail: r.dlq.detail,
              topic: r.dlq.topic,
              partition: r.dlq.partition,
              offset: r.dlq.offset,
            });
          }
          if (newest.length > options.limit * 4) newest = newestOf(newest, options.limit);
          progress.update(read, range.total);
        },
        { groupPrefix: `${settings.kafkaClientId}-ops-dlq` },
      );
    } finally {
      progress.finish();
    }
  }
  newest = newestOf(newest, options.limit);
  const total = range?.total ?? 0;
  if (options.json) {
    sayJson({
      topic,
      exists: range !== null,
      since: options.since === null ? null : new Date(options.since).toISOString(),
      total,
      by_reason: Object.fromEntries(sortedByCount(byReason)),
      newest: newest.map(({ order: _order, ...m }) => ({ ...m, timestamp: isoTime(m.timestamp) })),
    });
    return EXIT.ok;
  }
  if (!range) {
    say(`${topic}: no such topic (the writer creates it when it starts)`);
    return EXIT.ok;
  }
  say(`${topic}: ${total} message(s)${range.since === null ? '' : ` ${describeRange(range)}`}`);
  if (total === 0) return EXIT.ok;
  say(`by reason: ${sortedByCount(byReason).map(([r, e]) => `${r}=${e.messages}`).join(', ')}`);
  for (const [reason, e] of sortedByCount(byReason)) say(`  ${reason}: ${e.messages} (${countsText(e.topics)})`);
  say(`newest ${newest.length}:`);
  for (const m of newest) {
    say(
      `${isoTime(m.timestamp)}\t${m.topic}/${m.partition ?? ''}@${m.offset}\t${m.reason}\t${m.detail}\t(dlq p${m.dlq_partition}@${m.dlq_offset})`,
    );
  }
  return EXIT.ok;
}

/** The newest `limit` (by timestamp, then by order read), newest first. */
function newestOf<T extends { timestamp: string; order: number }>(list: T[], limit: number): T[] {
  return [...list]
    .sort((a, b) => Number(b.timestamp) - Number(a.timestamp) || b.order - a.order)
    .slice(0, limit);
}
