import { IHeaders, Message } from 'kafkajs';

/** Why a message was not applied, as the DLQ headers of CONTRACT 2.4 carry it. */
export interface Rejection {
  reason: string;
  detail: string;
}

export interface SourceMessage {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: IHeaders;
  timestamp?: string;
}

/**
 * The DLQ copy of a rejected message: key and value unchanged, the producer's headers kept, and the
 * headers `dlq-reason`, `dlq-detail`, `dlq-topic`, `dlq-partition`, `dlq-offset` added. The source's
 * (topic, partition, offset) identifies the message: a DLQ reader de-duplicates on it.
 */
export function toDlqMessage(source: SourceMessage, rejection: Rejection): Message {
  const headers: IHeaders = { ...(source.headers ?? {}) };
  headers['dlq-reason'] = rejection.reason;
  headers['dlq-detail'] = rejection.detail;
  headers['dlq-topic'] = source.topic;
  headers['dlq-partition'] = String(source.partition);
  headers['dlq-offset'] = source.offset;
  return { key: source.key, value: source.value, headers, timestamp: source.timestamp };
}
