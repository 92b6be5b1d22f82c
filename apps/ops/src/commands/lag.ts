import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { createKafka, intakeTopics } from '@psp/messaging';
import {
  generationLag,
  LAG_COUNT_LIMIT,
  isStuck,
  listGenerations,
  liveGeneration,
  readCheckpoint,
  readProjectionStall,
  readShardHolders,
} from '@psp/read-model';
import { withDb } from '../context';
import { EXIT, say, sayJson } from '../output';

interface TopicLag {
  topic: string;
  exists: boolean;
  partitions: number;
  behind: number;
  /** partitions with messages behind: partition → count */
  behind_by_partition: Record<string, number>;
}

interface WriterLag {
  group: string;
  state: string;
  members: number;
  topics: TopicLag[];
  /** set when Kafka did not answer (the other fields are then partial) */
  error: string | null;
}

export interface GenerationLag {
  generation: number;
  status: string;
  served: boolean;
  events_applied: number;
  stream_time: string | null;
  /** null for a retired generation: nothing projects it any more, so it is not "behind". */
  behind_events: number | null;
  /** The count stopped at LAG_COUNT_LIMIT events in some shard: at least `behind_events` (`--exact` counts all; a building generation is always counted in full). */
  behind_at_least: boolean;
  behind_seconds: number | null;
  /** A building generation (a replay): the share of the log it has applied, 0-1; null otherwise. */
  progress: number | null;
  /** Each shard (live and building generations): where it stands, what is left, who holds it. */
  shards: {
    shard: number;
    events_applied: number;
    stream_time: string | null;
    behind_events: number;
    behind_at_least: boolean;
    behind_seconds: number;
    holder: string | null;
  }[];
  /** Set while the projection fails on one event (stuck once it has lasted 5 s): see docs/read-model.md. */
  stall: {
    stuck: boolean;
    event_id: string | null;
    log_position: string | null;
    since: string;
    seconds: number;
    attempts: number;
    error: string;
  } | null;
}

/**
 * The writer's lag: per intake topic, the messages after its consumer group's committed offsets (all
 * retained ones where it never committed: it starts from the beginning). Committed offsets trail the
 * log by at most the append in flight, so this counts messages not yet durable in the event log.
 */
async function writerLag(settings: Settings): Promise<WriterLag> {
  const kafka = createKafka(settings, 'ops-lag', () => undefined);
  const admin = kafka.admin();
  const groupId = settings.writerGroupId;
  const lag: WriterLag = { group: groupId, state: 'unknown', members: 0, topics: [], error: null };
  try {
    await admin.connect();
    const { groups } = await admin.describeGroups([groupId]);
    lag.state = groups[0]?.state ?? 'unknown';
    lag.members = groups[0]?.members.length ?? 0;
    const existing = new Set(await admin.listTopics());
    const topics = intakeTopics(settings).filter((t) => existing.has(t));
    const committed = topics.length > 0 ? await admin.fetchOffsets({ groupId, topics }) : [];
    for (const topic of intakeTopics(settings)) {
      if (!existing.has(topic)) {
        lag.topics.push({ topic, exists: false, partitions: 0, behind: 0, behind_by_partition: {} });
        continue;
      }
      const at = new Map(
        (committed.find((t) => t.topic === topic)?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]),
      );
      const ends = await admin.fetchTopicOffsets(topic);
      const entry: TopicLag = { topic, exists: true, partitions: ends.length, behind: 0, behind_by_partition: {} };
      for (const p of ends.sort((a, b) => a.partition - b.partition)) {
        const position = at.get(p.partition) ?? -1;
        const behind = Number(p.high) - (position < 0 ? Number(p.low) : position);
        entry.behind += behind;
        if (behind > 0) entry.behind_by_partition[String(p.partition)] = behind;
      }
      lag.topics.push(entry);
    }
  } catch (error) {
    lag.error = error instanceof Error ? error.message : String(error);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  return lag;
}

async function projectorLag(settings: Settings, countLimit: number): Promise<GenerationLag[]> {
  return withDb(settings, (db) => readGenerationLags(db, countLimit));
}

/** Each read-model generation: where it stands, its lag per shard and who holds each, a replay's progress, a stall. */
export async function readGenerationLags(db: DataSource, countLimit = LAG_COUNT_LIMIT): Promise<GenerationLag[]> {
  {
    const generations = await listGenerations(db);
    const live = await liveGeneration(db);
    const out: GenerationLag[] = [];
    const holders = await readShardHolders(db);
    for (const g of generations) {
      const cp = await readCheckpoint(db, g.generation);
      // A building generation (a replay) is counted in full: its progress is applied / (applied + behind).
      const behind =
        g.status === 'retired'
          ? null
          : await generationLag(db, g.generation, g.status === 'building' ? Infinity : countLimit);
      const stall = await readProjectionStall(db, g.generation);
      out.push({
        generation: g.generation,
        status: g.status,
        served: g.generation === live,
        events_applied: cp.eventsApplied,
        stream_time: cp.streamTime === null ? null : new Date(cp.streamTime).toISOString(),
        behind_events: behind?.events ?? null,
        behind_at_least: behind?.atLeast ?? false,
        behind_seconds: behind ? Math.round(behind.seconds * 10) / 10 : null,
        progress:
          g.status === 'building' && behind !== null
            ? cp.eventsApplied + behind.events === 0
              ? 1
              : cp.eventsApplied / (cp.eventsApplied + behind.events)
            : null,
        shards: (behind?.shards ?? []).map((s) => ({
          shard: s.shard,
          events_applied: s.eventsApplied,
          stream_time: s.streamTime === null ? null : new Date(s.streamTime).toISOString(),
          behind_events: s.behindEvents,
          behind_at_least: s.behindAtLeast,
          behind_seconds: Math.round(s.behindSeconds * 10) / 10,
          holder: g.generation === live ? (holders.get(s.shard) ?? null) : null,
        })),
        stall:
          stall === null
            ? null
            : {
                stuck: isStuck(stall),
                event_id: stall.eventId,
                log_position: stall.at === null ? null : `${stall.at.transactionId}/${stall.at.position}`,
                since: stall.since.toISOString(),
                seconds: Math.round(stall.stuckForMs / 100) / 10,
                attempts: stall.attempts,
                error: stall.error,
              },
      });
    }
    return out;
  }
}

/** `ops lag`: how far the writer is behind Kafka, and each read-model generation behind the log. */
export async function lag(settings: Settings, options: { json?: boolean; exact?: boolean }): Promise<number> {
  const writer = await writerLag(settings);
  if (!options.json) {
    if (writer.error !== null) {
      say(`writer (Kafka → event log): lag unknown, Kafka did not answer (${writer.error})`);
    } else {
      say(`writer (Kafka → event log): group ${writer.group} ${writer.state}, ${writer.members} member(s)`);
      for (const t of writer.topics) {
        if (!t.exists) {
          say(`  ${t.topic}: no such topic (the writer creates it when it starts)`);
          continue;
        }
        const parts = Object.entries(t.behind_by_partition).map(([p, n]) => `p${p}: ${n}`);
        say(
          `  ${t.topic}: ${t.partitions} partition(s), ${t.behind} message(s) behind${parts.length > 0 ? ` (${parts.join(', ')})` : ''}`,
        );
      }
    }
  }
  const generations = await projectorLag(settings, options.exact ? Infinity : LAG_COUNT_LIMIT);
  if (options.json) {
    sayJson({ writer, projector: { generations } });
    return EXIT.ok;
  }
  say('projector (event log → read model):');
  for (const g of generations) {
    say(
      `  generation ${g.generation} (${g.status}${g.served ? ', served' : ''}): ${g.events_applied} events applied, ` +
        `stream time ${g.stream_time ?? 'none'}` +
        (g.behind_events === null
          ? ' (retired: not projected any more)'
          : `, behind by ${g.behind_at_least ? 'at least ' : ''}${g.behind_events} events / ${g.behind_seconds!.toFixed(1)} s`),
    );
    for (const s of g.shards)
      say(
        `    shard ${String(s.shard).padStart(2)}: ${s.events_applied} events, behind by ${s.behind_at_least ? '≥' : ''}${s.behind_events} / ${s.behind_seconds.toFixed(1)} s` +
          (g.served ? `, held by ${s.holder ?? 'nobody (no projector running?)'}` : ''),
      );
    if (g.stall)
      say(
        `    ${g.stall.stuck ? 'stuck' : 'failing'} on event ${g.stall.event_id} (log position ${g.stall.log_position}) ` +
          `for ${g.stall.seconds.toFixed(1)} s, ${g.stall.attempts} attempts: ${g.stall.error}`,
      );
  }
  return EXIT.ok;
}
