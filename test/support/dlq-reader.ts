import { Kafka } from 'kafkajs';
import { Settings } from '@psp/config';

/** A message read back from a run's DLQ topic: its key, value and headers as text. */
export interface DlqCopy {
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
  /** Where it was read: partition and offset. */
  partition: number;
  offset: string;
}

/**
 * Every message in the run's DLQ topic up to its end at the moment of the call (no consumer group:
 * reads each partition from offset 0 to its high watermark).
 */
export async function readDlq(kafka: Kafka, settings: Settings): Promise<DlqCopy[]> {
  return readTopicToEnd(kafka, settings.topics.dlq, `${settings.writerGroupId}-dlq-reader`);
}

/**
 * Every message of `topic` up to its end at the moment of the call, in partition order (a group of
 * its own, named from `groupPrefix`, committing nothing).
 */
export async function readTopicToEnd(kafka: Kafka, topic: string, groupPrefix: string): Promise<DlqCopy[]> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic).finally(() => admin.disconnect());
  const wanted = ends.filter((p) => Number(p.high) > Number(p.low));
  const copies: DlqCopy[] = [];
  if (wanted.length === 0) return copies;
  const remaining = new Map(wanted.map((p) => [p.partition, BigInt(p.high)]));
  const consumer = kafka.consumer({ groupId: `${groupPrefix}-${Date.now()}-${Math.random()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    consumer
      .run({
        eachMessage: async ({ partition, message }) => {
          const end = remaining.get(partition);
          if (end === undefined || BigInt(message.offset) >= end) return;
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
          copies.push({
            key: message.key?.toString() ?? null,
            value: message.value?.toString() ?? null,
            headers,
            partition,
            offset: message.offset,
          });
          if (BigInt(message.offset) + 1n >= end) remaining.delete(partition);
          if (remaining.size === 0) resolve();
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  return copies;
}
