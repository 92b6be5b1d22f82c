import { Consumer } from 'kafkajs';
import { LRUCache } from 'lru-cache';

/** The topic this service produces health changes to (CONTRACT 2.5); configurable in the service. */
export const DEFAULT_HEALTH_TOPIC = 'psp.connection-health';

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy' | 'unknown';

/** One `connection.health_changed` message, as a router uses it. */
export interface HealthChange {
  eventId: string;
  orgId: string;
  connectionId: string;
  /** Stream time when the change was seen (RFC 3339). */
  occurredAt: string;
  /** This connection's changes count from 1. */
  sequence: number;
  /** null for the first message of a connection (when it is first listed). */
  from: HealthStatus | null;
  to: HealthStatus;
  healthScore: number;
}

const STATUSES: ReadonlySet<string> = new Set(['healthy', 'degraded', 'unhealthy', 'unknown']);

/** Parses a message value; null when it is not a `connection.health_changed` of schema version 1. */
export function parseHealthChange(value: Buffer | string | null): HealthChange | null {
  if (value === null) return null;
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(value.toString()) as Record<string, unknown>;
  } catch {
    return null;
  }
  const data = raw.data as Record<string, unknown> | undefined;
  if (
    raw === null ||
    typeof raw !== 'object' ||
    raw.type !== 'connection.health_changed' ||
    raw.schema_version !== 1 ||
    typeof raw.event_id !== 'string' ||
    typeof raw.org_id !== 'string' ||
    typeof raw.connection_id !== 'string' ||
    typeof raw.occurred_at !== 'string' ||
    data === null ||
    typeof data !== 'object' ||
    !Number.isInteger(data.sequence) ||
    (data.from !== null && !STATUSES.has(data.from as string)) ||
    !STATUSES.has(data.to as string) ||
    typeof data.health_score !== 'number'
  )
    return null;
  return {
    eventId: raw.event_id,
    orgId: raw.org_id,
    connectionId: raw.connection_id,
    occurredAt: raw.occurred_at,
    sequence: data.sequence as number,
    from: data.from as HealthStatus | null,
    to: data.to as HealthStatus,
    healthScore: data.health_score,
  };
}

export interface HealthChangeSequencerOptions {
  /** Connections whose last sequence is remembered (least recently changed forgotten first). */
  maxConnections?: number;
}

/**
 * De-duplicates health changes by event id and hands each connection's changes over in sequence. The
 * service produces a connection's changes in order on one partition; after a crash of its relay it may
 * produce the latest ones again (same event ids): those, and anything not newer than what was handed
 * over, are dropped. A change newer by more than one (a consumer that starts mid-stream, or one that
 * forgot the connection) is handed over with `gap` set. Pure logic: feed it values in topic order.
 */
export class HealthChangeSequencer {
  private readonly last: LRUCache<string, number>;

  constructor(options: HealthChangeSequencerOptions = {}) {
    this.last = new LRUCache<string, number>({ max: options.maxConnections ?? 1_000_000 });
  }

  /**
   * The change to hand over, or null for a duplicate, an older one, or a value that is not a change.
   * Nothing is remembered until `handedOver`: a handler that fails sees the change again.
   */
  next(value: Buffer | string | null): { change: HealthChange; gap: boolean } | null {
    const change = parseHealthChange(value);
    if (change === null) return null;
    const last = this.last.get(`${change.orgId}:${change.connectionId}`);
    if (last !== undefined && change.sequence <= last) return null;
    return { change, gap: last === undefined ? change.sequence !== 1 : change.sequence !== last + 1 };
  }

  /** Records that `change` was handed over: it and everything older is a duplicate from now on. */
  handedOver(change: HealthChange): void {
    this.last.set(`${change.orgId}:${change.connectionId}`, change.sequence);
  }

  /** `next`, then `handedOver` when there is a change. */
  accept(value: Buffer | string | null): { change: HealthChange; gap: boolean } | null {
    const accepted = this.next(value);
    if (accepted !== null) this.handedOver(accepted.change);
    return accepted;
  }
}

export interface OnHealthChangeOptions extends HealthChangeSequencerOptions {
  /** The service's health topic (TOPIC_HEALTH), `psp.connection-health` by default. */
  topic?: string;
  /** Read the topic from its start (a router rebuilding its view); default: only new changes. */
  fromBeginning?: boolean;
  /** Only changes of this org (routers usually serve one). */
  orgId?: string;
}

/**
 * Runs `consumer` on the health topic and calls `handler` once per change, in sequence per
 * connection, duplicates dropped (HealthChangeSequencer). `handler` runs before the message's offset
 * is committed: a handler that throws sees the change again. Returns a function that stops it.
 *
 *   const stop = await onHealthChange(kafka.consumer({ groupId: 'router-1' }), async (change) => {
 *     if (change.to === 'unhealthy') routes.avoid(change.orgId, change.connectionId);
 *   });
 */
export async function onHealthChange(
  consumer: Consumer,
  handler: (change: HealthChange, info: { gap: boolean }) => Promise<void> | void,
  options: OnHealthChangeOptions = {},
): Promise<() => Promise<void>> {
  const sequencer = new HealthChangeSequencer(options);
  await consumer.connect();
  await consumer.subscribe({
    topic: options.topic ?? DEFAULT_HEALTH_TOPIC,
    fromBeginning: options.fromBeginning ?? false,
  });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const accepted = sequencer.next(message.value);
      if (accepted === null) return;
      if (options.orgId === undefined || accepted.change.orgId === options.orgId)
        await handler(accepted.change, { gap: accepted.gap });
      sequencer.handedOver(accepted.change);
    },
  });
  return () => consumer.disconnect();
}
