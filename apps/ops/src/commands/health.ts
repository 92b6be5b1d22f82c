import { randomBytes } from 'node:crypto';
import { Settings } from '@psp/config';
import { connectionStats, parseStatsWindow, statsStreamTime, SuccessRate } from '@psp/domain';
import { createKafka } from '@psp/messaging';
import { HealthChange, HealthChangeSequencer } from '@psp/producer';
import { liveReadModel, parseStoredDocument, readOrgsFromPostgres } from '@psp/read-model';
import { withDb } from '../context';
import { EXIT, say, sayJson } from '../output';

const SPARK = '▁▂▃▄▅▆▇█';
/** Scores kept per connection for its sparkline. */
const TREND = 24;

/** A terminal sparkline of scores 0-100 (one character each). */
export function sparkline(scores: number[]): string {
  return scores
    .map((s) => SPARK[Math.min(SPARK.length - 1, Math.max(0, Math.floor((s / 100) * SPARK.length)))])
    .join('');
}

/** What the stats route (CONTRACT 1.5b) answers now for a connection: its confidence and outlook. */
export interface HealthOutlook {
  stream_time: string | null;
  calls: number;
  success_rate: SuccessRate | null;
  outlook: { at: string; to: string } | null;
}

/** `success 0.9838 [0.9751–0.9895] of 1234 calls`, or `no calls in the window`. */
export function formatSuccessRate(calls: number, rate: SuccessRate | null): string {
  if (rate === null) return 'no calls in the window';
  const f = (x: number) => x.toFixed(4);
  return `success ${f(rate.value)} [${f(rate.low)}–${f(rate.high)}] of ${calls} call${calls === 1 ? '' : 's'}`;
}

/** `→ unknown at 2026-11-24T11:02:00.000Z`, or `steady for 60 min` when the status holds that long. */
export function formatOutlook(outlook: HealthOutlook['outlook']): string {
  return outlook === null ? 'steady for 60 min' : `→ ${outlook.to} at ${outlook.at}`;
}

/** Orgs read from the read model in one statement. */
const ORG_BATCH = 500;

/**
 * The confidence and outlook of each connection (by `org/connection`) as the stats route answers
 * them now, from the live read model in PostgreSQL; a connection no longer listed is left out.
 */
async function outlooks(
  settings: Settings,
  keys: { orgId: string; connectionId: string }[],
): Promise<Map<string, HealthOutlook>> {
  const byKey = new Map<string, HealthOutlook>();
  if (keys.length === 0) return byKey;
  await withDb(settings, async (db) => {
    const { generation, streamTime } = await liveReadModel(db);
    const orgIds = [...new Set(keys.map((k) => k.orgId))];
    const documents = new Map<string, Map<string, string>>();
    for (let i = 0; i < orgIds.length; i += ORG_BATCH) {
      const batch = orgIds.slice(i, i + ORG_BATCH);
      (await readOrgsFromPostgres(db, generation, batch)).forEach((org, j) => documents.set(batch[j], org.documents));
    }
    for (const { orgId, connectionId } of keys) {
      const document = documents.get(orgId)?.get(connectionId);
      if (document === undefined) continue;
      const { window, statsWindow } = parseStoredDocument(document);
      const stored = parseStatsWindow(statsWindow);
      const at = statsStreamTime(stored.streamTimeMs, streamTime);
      const stats = connectionStats(connectionId, stored.buckets, at, window.capped);
      byKey.set(`${orgId}/${connectionId}`, {
        stream_time: stats.stream_time,
        calls: stats.calls,
        success_rate: stats.success_rate,
        outlook: stats.outlook,
      });
    }
  });
  return byKey;
}

export interface HealthOptions {
  follow?: boolean;
  org?: string;
  fromBeginning?: boolean;
  json?: boolean;
}

/**
 * `ops health`: the health changes the service produces to its health topic (TOPIC_HEALTH), one line
 * each, de-duplicated and in sequence per connection, with the trend of the connection's score. With
 * --follow it keeps printing as changes happen (Ctrl-C stops it); without, it reads what the topic
 * holds now and prints each connection's latest status. Uses a consumer group of its own, deleted at
 * the end: no other reader's position moves.
 */
export async function health(settings: Settings, options: HealthOptions): Promise<number> {
  const kafka = createKafka(settings, `ops-health-${process.pid}`, () => undefined);
  const groupId = `${settings.kafkaClientId}-ops-health-${process.pid}-${randomBytes(3).toString('hex')}`;
  const topic = settings.topics.health;
  const admin = kafka.admin();
  await admin.connect();
  const consumer = kafka.consumer({ groupId });
  const sequencer = new HealthChangeSequencer();
  const trends = new Map<string, number[]>();
  const latest = new Map<string, HealthChange>();
  const fromBeginning = options.fromBeginning ?? !options.follow;
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) {
      say(`no topic ${topic} yet (the projector creates it when it starts)`);
      return options.follow ? EXIT.failed : EXIT.ok;
    }
    const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
    const pending = new Set([...ends].filter(([, high]) => high > 0n).map(([partition]) => partition));
    if (!options.follow && pending.size === 0) {
      say(`${topic} holds no health change yet`);
      return EXIT.ok;
    }
    if (options.follow && !options.json)
      say(`following ${topic}${options.org ? ` for ${options.org}` : ''} (Ctrl-C to stop)`);
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const stop = () => done();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const accepted = sequencer.accept(message.value);
        if (accepted !== null && (options.org === undefined || accepted.change.orgId === options.org)) {
          const c = accepted.change;
          const key = `${c.orgId}/${c.connectionId}`;
          const trend = [...(trends.get(key) ?? []), c.healthScore].slice(-TREND);
          trends.set(key, trend);
          latest.set(key, c);
          if (options.follow) {
            if (options.json) sayJson(c);
            else
              say(
                `${c.occurredAt}  ${key}  #${c.sequence}${accepted.gap ? ' (after a gap)' : ''}  ` +
                  `${c.from ?? '(new)'} → ${c.to}  ${c.healthScore.toFixed(2)}  ${sparkline(trend)}`,
              );
          }
        }
        const end = ends.get(partition);
        if (!options.follow && end !== undefined && BigInt(message.offset) + 1n >= end) {
          pending.delete(partition);
          if (pending.size === 0) done();
        }
      },
    });
    await finished;
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    if (!options.follow) {
      const rows = [...latest.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      // What the stats route says of each now (CONTRACT 1.5b); the changes alone are still printed if
      // the read model cannot be read.
      let now = new Map<string, HealthOutlook>();
      let unread: string | null = null;
      try {
        now = await outlooks(
          settings,
          rows.map(([, c]) => c),
        );
      } catch (error) {
        unread = (error as Error).message;
      }
      if (options.json) sayJson(rows.map(([key, c]) => ({ ...c, trend: trends.get(key), now: now.get(key) ?? null })));
      else {
        say(`${rows.length} connection(s)${options.org ? ` of ${options.org}` : ''}, latest health change each:`);
        const streamTime = [...now.values()][0]?.stream_time;
        if (streamTime)
          say(
            `  then, at stream time ${streamTime}: the technical success rate [its 95% interval] in the window, and the next status change if no further call comes`,
          );
        for (const [key, c] of rows) {
          const o = now.get(key);
          say(
            `  ${key}  ${c.to.padEnd(9)} ${c.healthScore.toFixed(2).padStart(6)}  #${c.sequence} at ${c.occurredAt}  ${sparkline(trends.get(key)!)}` +
              (o ? `  ${formatSuccessRate(o.calls, o.success_rate)}; ${formatOutlook(o.outlook)}` : ''),
          );
        }
        if (unread !== null) say(`(success rates and outlooks left out: the read model could not be read: ${unread})`);
      }
    }
    return EXIT.ok;
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }
}
