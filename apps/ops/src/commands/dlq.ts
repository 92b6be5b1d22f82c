import { Kafka, Message, Producer } from 'kafkajs';
import { Settings } from '@psp/config';
import { createKafka, intakeTopics, withoutDlqHeaders } from '@psp/messaging';
import { DlqRange, dlqRange, DlqRecord, readDlq } from '../dlq-reader';
import { EXIT, say, sayJson } from '../output';
import { Progress } from '../progress';

/** The message lines `ops dlq` prints by default. */
export const DLQ_LIST_LIMIT = 20;

/** A send of the redrive stays well under the broker's request limit (1 MiB by default). */
const SEND_MAX_BYTES = 512 * 1024;
const SEND_MAX_MESSAGES = 500;

export const SAFE_TO_REPEAT =
  'redriving again is safe: the writer applies each event_id once, so a message whose event was applied already changes nothing; a message still refused goes back to the DLQ';

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
  say(
    `by reason: ${sortedByCount(byReason)
      .map(([r, e]) => `${r}=${e.messages}`)
      .join(', ')}`,
  );
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
  return [...list].sort((a, b) => Number(b.timestamp) - Number(a.timestamp) || b.order - a.order).slice(0, limit);
}

interface ReasonTally {
  messages: number;
  /** re-sent (or, dry run, would be), per target topic */
  resent: Record<string, number>;
  /** skipped: dlq-topic not an intake topic, per dlq-topic */
  skipped: Record<string, number>;
  /** another DLQ copy of a source message already re-sent in this run */
  duplicates: number;
  selected: boolean;
}

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

async function sendAll(producer: Producer, messages: { topic: string; message: Message; bytes: number }[]) {
  let chunk: typeof messages = [];
  let bytes = 0;
  const flush = async () => {
    if (chunk.length === 0) return;
    const byTopic = new Map<string, Message[]>();
    for (const m of chunk) byTopic.set(m.topic, [...(byTopic.get(m.topic) ?? []), m.message]);
    await producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs })),
    });
    chunk = [];
    bytes = 0;
  };
  for (const m of messages) {
    if (chunk.length > 0 && (bytes + m.bytes > SEND_MAX_BYTES || chunk.length >= SEND_MAX_MESSAGES)) await flush();
    chunk.push(m);
    bytes += m.bytes;
  }
  await flush();
}

/**
 * `ops dlq redrive`: re-sends DLQ messages to the intake topic their `dlq-topic` header names, key
 * and value unchanged, the producer's headers kept (the dlq-* ones dropped). Reads the DLQ from the
 * beginning (or --since) up to its end when the command started, so it ends while messages keep
 * arriving. Messages whose dlq-topic is not an intake topic are skipped and counted.
 */
export async function redriveDlq(
  settings: Settings,
  options: { reasons: string[]; since: number | null; dryRun: boolean; json?: boolean },
): Promise<number> {
  const topic = settings.topics.dlq;
  const intake = new Set(intakeTopics(settings));
  const selected = (reason: string) => options.reasons.length === 0 || options.reasons.includes(reason);
  const kafka = kafkaFor(settings, 'ops-dlq-redrive');
  const range = await rangeOf(kafka, topic, options.since);
  const tally = new Map<string, ReasonTally>();
  for (const r of options.reasons)
    tally.set(r, { messages: 0, resent: {}, skipped: {}, duplicates: 0, selected: true });
  // A DLQ copy can exist twice (the writer re-read a batch); its dlq-topic/partition/offset name the source message.
  const sent = new Set<string>();
  let read = 0;
  let producer: Producer | null = null;
  const verb = options.dryRun ? 'would be re-sent' : 're-sent';
  if (!options.json) {
    const reasons = options.reasons.length > 0 ? options.reasons.join(', ') : 'all';
    say(
      range === null
        ? `dlq redrive: ${topic} does not exist; nothing to redrive`
        : `dlq redrive${options.dryRun ? ' (dry run: nothing is sent)' : ''}: ${topic}, ${range.total} message(s) ${describeRange(range)} up to its end when this run started; reasons: ${reasons}`,
    );
  }
  if (range && range.total > 0) {
    if (!options.dryRun) {
      producer = kafka.producer({ allowAutoTopicCreation: false });
      await producer.connect();
    }
    const progress = new Progress(options.dryRun ? 'dlq redrive (dry run)' : 'dlq redrive', { unit: 'messages' });
    try {
      await readDlq(
        kafka,
        range,
        async (records) => {
          const out: { topic: string; message: Message; bytes: number }[] = [];
          for (const r of records) {
            read += 1;
            const reason = reasonOf(r);
            const t = tally.get(reason) ?? {
              messages: 0,
              resent: {},
              skipped: {},
              duplicates: 0,
              selected: selected(reason),
            };
            tally.set(reason, t);
            t.messages += 1;
            if (!t.selected) continue;
            const target = r.dlq.topic;
            if (!intake.has(target)) {
              t.skipped[sourceOf(r)] = (t.skipped[sourceOf(r)] ?? 0) + 1;
              continue;
            }
            if (r.dlq.partition !== null && r.dlq.offset !== '') {
              const id = `${target}/${r.dlq.partition}/${r.dlq.offset}`;
              if (sent.has(id)) {
                t.duplicates += 1;
                continue;
              }
              sent.add(id);
            }
            t.resent[target] = (t.resent[target] ?? 0) + 1;
            out.push({
              topic: target,
              message: { key: r.key, value: r.value, headers: withoutDlqHeaders(r.headers) },
              bytes: (r.key?.length ?? 0) + (r.value?.length ?? 0) + 256,
            });
          }
          if (producer && out.length > 0) await sendAll(producer, out);
          progress.update(read, range.total);
        },
        { groupPrefix: `${settings.kafkaClientId}-ops-dlq-redrive` },
      );
    } finally {
      progress.finish();
      await producer?.disconnect().catch(() => undefined);
    }
  }

  const rows = [...tally].sort(
    (a, b) =>
      Number(b[1].selected) - Number(a[1].selected) ||
      b[1].messages - a[1].messages ||
      (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0),
  );
  const total = { resent: 0, skipped: 0, duplicates: 0, not_selected: 0 };
  for (const [, t] of rows) {
    if (!t.selected) total.not_selected += t.messages;
    total.resent += sum(t.resent);
    total.skipped += sum(t.skipped);
    total.duplicates += t.duplicates;
  }
  if (options.json) {
    sayJson({
      topic,
      exists: range !== null,
      dry_run: options.dryRun,
      since: options.since === null ? null : new Date(options.since).toISOString(),
      reasons: options.reasons.length > 0 ? options.reasons : null,
      messages: read,
      by_reason: Object.fromEntries(
        rows.map(([reason, t]) => [
          reason,
          {
            selected: t.selected,
            messages: t.messages,
            resent: sum(t.resent),
            resent_to: t.resent,
            skipped: sum(t.skipped),
            skipped_topics: t.skipped,
            duplicates: t.duplicates,
          },
        ]),
      ),
      total,
    });
    return EXIT.ok;
  }
  for (const [reason, t] of rows) {
    if (!t.selected) {
      say(`  ${reason}: ${t.messages} not selected (left alone)`);
      continue;
    }
    const parts = [`${reason}: ${sum(t.resent)} ${verb}${sum(t.resent) > 0 ? ` (${countsText(t.resent)})` : ''}`];
    if (sum(t.skipped) > 0)
      parts.push(`${sum(t.skipped)} skipped, dlq-topic not an intake topic (${countsText(t.skipped)})`);
    if (t.duplicates > 0) parts.push(`${t.duplicates} duplicate DLQ cop${t.duplicates === 1 ? 'y' : 'ies'} sent once`);
    say(`  ${parts.join('; ')}`);
  }
  say(
    `total: ${total.resent} ${verb}, ${total.skipped} skipped, ${total.duplicates} duplicate(s), ${total.not_selected} not selected (of ${read} read)`,
  );
  if (total.resent > 0 || options.dryRun) say(SAFE_TO_REPEAT);
  return EXIT.ok;
}
