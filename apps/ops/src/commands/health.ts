import { randomBytes } from 'node:crypto';
import { Settings } from '@psp/config';
import { createKafka } from '@psp/messaging';
import { HealthChange, HealthChangeSequencer } from '@psp/producer';
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
      if (options.json) sayJson(rows.map(([, c]) => ({ ...c, trend: trends.get(`${c.orgId}/${c.connectionId}`) })));
      else {
        say(`${rows.length} connection(s)${options.org ? ` of ${options.org}` : ''}, latest health change each:`);
        for (const [key, c] of rows)
          say(
            `  ${key}  ${c.to.padEnd(9)} ${c.healthScore.toFixed(2).padStart(6)}  #${c.sequence} at ${c.occurredAt}  ${sparkline(trends.get(key)!)}`,
          );
      }
    }
    return EXIT.ok;
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }
}
