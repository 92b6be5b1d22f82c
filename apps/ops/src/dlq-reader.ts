import { randomBytes } from 'node:crypto';
import { Admin, IHeaders, Kafka } from 'kafkajs';
import { DlqHeaders, readDlqHeaders } from '@psp/messaging';

/** One partition of the DLQ to read: from `start` (inclusive) to `end` (exclusive). */
export interface PartitionRange {
  partition: number;
  start: bigint;
  end: bigint;
}

/** What is read of a DLQ: fixed when the command starts, so the read ends even while messages keep arriving. */
export interface DlqRange {
  topic: string;
  partitions: PartitionRange[];
  /** messages in the range */
  total: number;
  /** epoch ms of --since, or null from the beginning */
  since: number | null;
}

export interface DlqRecord {
  partition: number;
  offset: string;
  /** the record's timestamp (a DLQ copy keeps the refused message's own) */
  timestamp: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: IHeaders;
  dlq: DlqHeaders;
}

/**
 * The range to read: per partition, from the low watermark (or, with `since`, the first offset
 * whose timestamp is at or after it: admin.fetchTopicOffsetsByTimestamp) to the high watermark now.
 * Null when the topic does not exist.
 */
export async function dlqRange(admin: Admin, topic: string, since: number | null): Promise<DlqRange | null> {
  const topics = await admin.listTopics();
  if (!topics.includes(topic)) return null;
  const ends = await admin.fetchTopicOffsets(topic);
  const fromTime =
    since === null
      ? null
      : new Map((await admin.fetchTopicOffsetsByTimestamp(topic, since)).map((p) => [p.partition, BigInt(p.offset)]));
  const partitions = ends
    .map((p) => {
      const low = BigInt(p.low);
      const end = BigInt(p.high);
      let start = fromTime?.get(p.partition) ?? low;
      if (start < low) start = low;
      if (start > end) start = end;
      return { partition: p.partition, start, end };
    })
    .sort((a, b) => a.partition - b.partition);
  const total = partitions.reduce((n, p) => n + Number(p.end - p.start), 0);
  return { topic, partitions, total, since };
}

export interface ReadOptions {
  /** prefix of the run's own consumer group id; a random suffix makes it unique */
  groupPrefix: string;
  /** fail when no message arrives for this long while some partition is not read to its end */
  stallTimeoutMs?: number;
}

/**
 * Reads the range once, in order within each partition, handing each fetched batch to `each` (one
 * call at a time). kafkajs reads only through a consumer group: the group is the run's own (unique
 * id, nothing ever committed: other readers' offsets are never touched) and is deleted at the end.
 * Resolves when every partition is read to the end of its range; rejects when `each` throws or when
 * the read stalls.
 */
export async function readDlq(
  kafka: Kafka,
  range: DlqRange,
  each: (records: DlqRecord[]) => Promise<void>,
  options: ReadOptions,
): Promise<void> {
  const pending = range.partitions.filter((p) => p.start < p.end);
  if (pending.length === 0) return;
  const next = new Map(pending.map((p) => [p.partition, p.start]));
  const end = new Map(pending.map((p) => [p.partition, p.end]));
  let open = pending.length;
  const groupId = `${options.groupPrefix}-${process.pid}-${randomBytes(6).toString('hex')}`;
  const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false, maxWaitTimeInMs: 250 });
  const stallTimeoutMs = options.stallTimeoutMs ?? 60000;
  let watchdog: NodeJS.Timeout | undefined;
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [range.topic], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      let lastProgress = Date.now();
      let failed = false;
      const fail = (error: unknown) => {
        if (failed) return;
        failed = true;
        reject(error instanceof Error ? error : new Error(String(error)));
      };
      watchdog = setInterval(() => {
        if (Date.now() - lastProgress < stallTimeoutMs) return;
        const behind = [...next]
          .filter(([p, at]) => at < end.get(p)!)
          .map(([p, at]) => `p${p} at ${at} of ${end.get(p)}`);
        fail(new Error(`reading ${range.topic} stalled for ${stallTimeoutMs / 1000} s (${behind.join(', ')})`));
      }, 1000);
      consumer.on(consumer.events.CRASH, (event) => {
        if (!event.payload.restart) fail(event.payload.error);
      });
      /** The partition is read up to `to` (exclusive); at the end of its range it is paused and done. */
      const advance = (partition: number, to: bigint) => {
        const stop = end.get(partition)!;
        const at = next.get(partition)!;
        if (at >= stop || to <= at) return;
        next.set(partition, to < stop ? to : stop);
        lastProgress = Date.now();
        if (to >= stop) {
          consumer.pause([{ topic: range.topic, partitions: [partition] }]);
          open -= 1;
          if (open === 0) resolve();
        }
      };
      // A batch of only control records (transactions) never reaches eachBatch; its end still counts.
      consumer.on(consumer.events.END_BATCH_PROCESS, (event) => {
        const { topic, partition, lastOffset } = event.payload;
        if (topic === range.topic && end.has(partition) && lastOffset !== undefined && !failed)
          advance(partition, BigInt(lastOffset) + 1n);
      });
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch, heartbeat }) => {
            if (failed) return;
            const stop = end.get(batch.partition);
            let at = next.get(batch.partition);
            if (stop === undefined || at === undefined || at >= stop) return;
            const records: DlqRecord[] = [];
            for (const m of batch.messages) {
              const offset = BigInt(m.offset);
              // Skip what lies before the range (or was read already: a seek may re-deliver) or after it.
              if (offset < at || offset >= stop) continue;
              const headers = m.headers ?? {};
              records.push({
                partition: batch.partition,
                offset: m.offset,
                timestamp: m.timestamp,
                key: m.key,
                value: m.value,
                headers,
                dlq: readDlqHeaders(headers),
              });
              at = offset + 1n;
            }
            try {
              if (records.length > 0) await each(records);
            } catch (error) {
              fail(error);
              return;
            }
            // Past the batch's last offset nothing of the range is left before it (gaps included).
            const after = BigInt(batch.lastOffset()) + 1n;
            advance(batch.partition, after > at ? after : at);
            await heartbeat();
          },
        })
        .then(() => {
          // With --since: start each partition at its first offset at or after that time (a fetch
          // from the beginning made before the seek applies is skipped above).
          if (range.since === null) return;
          for (const p of pending)
            consumer.seek({ topic: range.topic, partition: p.partition, offset: String(p.start) });
        })
        .catch(fail);
    });
  } finally {
    if (watchdog) clearInterval(watchdog);
    await consumer.disconnect().catch(() => undefined);
    const admin = kafka.admin();
    await admin
      .connect()
      .then(() => admin.deleteGroups([groupId]))
      .catch(() => undefined)
      .finally(() => admin.disconnect().catch(() => undefined));
  }
}
