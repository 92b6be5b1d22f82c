import { Consumer, ConsumerRunConfig } from 'kafkajs';
import { LRUCache } from 'lru-cache';
// The module itself, not the @psp/messaging barrel: the kit is what routers import, and the barrel
// brings the service's NestJS provider and settings with it; this module needs only kafkajs. The
// writer restarts its consumer with the same function (one place decides what kafkajs gives up on).
import { restartWhenCrashed } from '@psp/messaging/consumer-crash';

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
  /**
   * Told (one line each) when the consumer crashed, and whether it is being run again. Default: the
   * line on stderr.
   */
  onCrash?: (message: string) => void;
}

/** Pauses before running a crashed consumer again: the first, doubled after each crash up to the max. */
const RESTART_DELAY_MS = { first: 500, max: 15000 };

/**
 * Runs `consumer` on the health topic and calls `handler` once per change, in sequence per
 * connection, duplicates dropped (HealthChangeSequencer). `handler` runs before the message's offset
 * is committed: a handler that throws sees the change again. Returns a function that stops it.
 *
 * A crash kafkajs does not restart the consumer after (a non-retriable error) would leave it stopped
 * for good while the router runs on: so it is run again here, from the committed offsets, after a
 * pause (0.5 s, doubled up to 15 s while it keeps crashing without handing a change over), with the
 * same sequencer (no change handed over twice, gaps still told). Each crash is told to `onCrash`.
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
  const report = options.onCrash ?? ((message: string) => void process.stderr.write(`onHealthChange: ${message}\n`));
  let restartDelay = RESTART_DELAY_MS.first;
  const config: ConsumerRunConfig = {
    eachMessage: async ({ message }) => {
      const accepted = sequencer.next(message.value);
      if (accepted === null) return;
      if (options.orgId === undefined || accepted.change.orgId === options.orgId)
        await handler(accepted.change, { gap: accepted.gap });
      sequencer.handedOver(accepted.change);
      restartDelay = RESTART_DELAY_MS.first;
    },
  };

  let stopped = false;
  let restarting: Promise<void> | undefined;
  let crashedAgain = false;
  let wake: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  const restart = () => {
    // A crash while joining again (inside consumer.run) arrives before run returns: run it once more.
    if (restarting !== undefined) {
      crashedAgain = true;
      return;
    }
    restarting = (async () => {
      do {
        crashedAgain = false;
        // kafkajs is still closing the crashed consumer's connections: after a pause.
        await pause(restartDelay);
        restartDelay = Math.min(RESTART_DELAY_MS.max, restartDelay * 2);
        if (stopped) return;
        try {
          // After a crash kafkajs has disconnected it; connecting a connected consumer changes nothing.
          await consumer.connect();
          if (stopped) return;
          await consumer.run(config);
        } catch (error) {
          report(`running the consumer again failed (${(error as Error).message}); trying again`);
          crashedAgain = true;
        }
      } while (crashedAgain && !stopped);
    })().finally(() => (restarting = undefined));
  };
  restartWhenCrashed(consumer, { closing: () => stopped, report, restart });

  await consumer.connect();
  await consumer.subscribe({
    topic: options.topic ?? DEFAULT_HEALTH_TOPIC,
    fromBeginning: options.fromBeginning ?? false,
  });
  await consumer.run(config);
  return async () => {
    stopped = true;
    wake?.();
    await restarting;
    await consumer.disconnect();
  };
}
