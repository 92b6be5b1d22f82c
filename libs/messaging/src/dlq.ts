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

/** The headers this service adds to a DLQ copy (CONTRACT 2.4); every one starts with `dlq-`. */
export const DLQ_HEADER_PREFIX = 'dlq-';

/** What a DLQ copy's headers say about the message: why it was refused and where it came from. */
export interface DlqHeaders {
  reason: string;
  detail: string;
  topic: string;
  partition: number | null;
  offset: string;
}

/** One header's value as text ('' when absent; the first value when repeated). */
export function headerText(headers: IHeaders | undefined, name: string): string {
  const value = headers?.[name];
  const first = Array.isArray(value) ? value[0] : value;
  if (first === undefined || first === null) return '';
  return Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
}

/** Reads the `dlq-*` headers of a DLQ message (absent ones read as '' / null). */
export function readDlqHeaders(headers: IHeaders | undefined): DlqHeaders {
  const partition = headerText(headers, 'dlq-partition');
  return {
    reason: headerText(headers, 'dlq-reason'),
    detail: headerText(headers, 'dlq-detail'),
    topic: headerText(headers, 'dlq-topic'),
    partition: /^\d+$/.test(partition) ? Number(partition) : null,
    offset: headerText(headers, 'dlq-offset'),
  };
}

/** The producer's own headers of a DLQ message: every header but the `dlq-*` ones this service added. */
export function withoutDlqHeaders(headers: IHeaders | undefined): IHeaders {
  const kept: IHeaders = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (!name.toLowerCase().startsWith(DLQ_HEADER_PREFIX) && value !== undefined) kept[name] = value;
  }
  return kept;
}
