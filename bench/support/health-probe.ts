/**
 * The health-change probe (bench:freshness): how long after the call that flips a connection's
 * health_status is produced a consumer of the health topic sees the `connection.health_changed`.
 *
 * One probe connection, calls produced one at a time (occurred_at = now, acks 1, like the freshness
 * probes). Before each call the probe waits until the API shows every earlier call and the same
 * status as the latest change on the topic (settled). Then it sends a success when the status is
 * `unhealthy`, a technical failure (a timeout) otherwise, and notes the time just before the produce.
 * The status sits at the degraded/unhealthy boundary (score 60, docs/contract.md 3.3), where a
 * timeout lowers the score by about 60/(N+5) and a success raises it by about 40/(N+5): one timeout
 * makes the connection `unhealthy`, one or two successes `degraded` again, however many calls came
 * before. A flip's latency is from the produce of the call after which the change came to the moment
 * the consumer (the producers' kit `onHealthChange`, as a router would run it) hands it over. The
 * projector relays its outbox every PROJECTOR_IDLE_MS when idle. It starts with 11 successes and 8
 * timeouts (N = 19: unknown, score 66.67); the next timeout makes it degraded, two more unhealthy.
 */
import { randomUUID } from 'node:crypto';
import type { Kafka, Producer } from 'kafkajs';
import { HealthChange, onHealthChange } from '@psp/producer';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the probe needs of a running stack (chaos/stack.ts's ChaosStack has it). */
export interface HealthProbeStack {
  producer: Producer;
  kafka: Kafka;
  settings: { topics: { calls: string; connections: string; health: string }; writerGroupId: string };
  apiKey: string;
  get(path: string, org: string, key: string): Promise<{ status: number; body: string }>;
}

/** One flip: when its call was produced, when the consumer saw the change (null: not within the timeout). */
export interface HealthFlip {
  producedAt: number;
  seenAt: number | null;
  from: string | null;
  to: string | null;
  /** What the call was. */
  call: 'timeout' | 'success';
}

export interface HealthProbeRun {
  flips: HealthFlip[];
  /** Calls produced. */
  calls: number;
  /** Changes that came while the probe was settling (not after one of its calls): not timed. */
  untimed: number;
}

function callEnvelope(org: string, conn: string, failed: boolean): string {
  return JSON.stringify({
    event_id: randomUUID(),
    type: 'psp.call.completed',
    schema_version: 1,
    org_id: org,
    connection_id: conn,
    occurred_at: new Date().toISOString(),
    data: failed
      ? { outcome: 'failure', latency_ms: 200, error_code: 'timeout' }
      : { outcome: 'success', latency_ms: 100 },
  });
}

export class HealthProbe {
  private readonly changes: { change: HealthChange; seenAt: number }[] = [];
  private calls = 0;
  private stopConsumer: (() => Promise<void>) | null = null;

  private constructor(
    private readonly stack: HealthProbeStack,
    private readonly org: string,
    private readonly conn: string,
    private readonly timeoutMs: number,
  ) {}

  /** Configures the probe connection and waits until the consumer sees its first change (null → unknown). */
  static async start(stack: HealthProbeStack, org: string, conn: string, timeoutMs = 10_000): Promise<HealthProbe> {
    const probe = new HealthProbe(stack, org, conn, timeoutMs);
    probe.stopConsumer = await onHealthChange(
      stack.kafka.consumer({
        groupId: `${stack.settings.writerGroupId}.bench-health-${Date.now()}`,
        maxWaitTimeInMs: 100,
      }),
      (change) => {
        if (change.connectionId === conn) probe.changes.push({ change, seenAt: Date.now() });
      },
      { topic: stack.settings.topics.health, fromBeginning: true, orgId: org },
    );
    await stack.producer.send({
      topic: stack.settings.topics.connections,
      acks: -1,
      messages: [
        {
          key: `${org}:${conn}`,
          value: JSON.stringify({
            event_id: randomUUID(),
            type: 'connection.configured',
            schema_version: 1,
            org_id: org,
            connection_id: conn,
            occurred_at: new Date().toISOString(),
            data: { provider: 'paystack' },
          }),
        },
      ],
    });
    const deadline = Date.now() + 60_000;
    while (probe.changes.length === 0) {
      if (Date.now() > deadline) throw new Error(`health probe: no change for ${org}/${conn} on the topic within 60 s`);
      await sleep(20);
    }
    // N = 19 at a score of 66.67 (unknown): the next timeout flips it to degraded.
    await probe.produce(Array.from({ length: 19 }, (_, i) => callEnvelope(org, conn, i >= 11)));
    return probe;
  }

  private latest(): string | null {
    return this.changes.length === 0 ? null : this.changes[this.changes.length - 1].change.to;
  }

  private async produce(values: string[]): Promise<void> {
    await this.stack.producer.send({
      topic: this.stack.settings.topics.calls,
      acks: 1,
      messages: values.map((value) => ({ key: `${this.org}:${this.conn}`, value })),
    });
    this.calls += values.length;
  }

  /** The probe connection as the API shows it now (null when it does not answer 200). */
  private async served(): Promise<{ calls: number; status: string } | null> {
    const res = await this.stack.get(`/v1/connections/${this.conn}`, this.org, this.stack.apiKey).catch(() => null);
    if (res?.status !== 200) return null;
    const c = JSON.parse(res.body) as { total_calls: number; health_status: string };
    return { calls: c.total_calls, status: c.health_status };
  }

  /** Flips the probe connection's status for `seconds` (see the file comment). */
  async run(
    seconds: number,
    label: string,
    report = (l: string) => process.stderr.write(`${l}\n`),
  ): Promise<HealthProbeRun> {
    const flips: HealthFlip[] = [];
    let untimed = 0;
    const callsBefore = this.calls;
    const started = Date.now();
    let lastReport = started;
    while (Date.now() - started < seconds * 1000) {
      // Settle: the API has every call, and the topic's latest change is the status it serves.
      const settleBy = Date.now() + this.timeoutMs;
      let now = await this.served();
      const changesBefore = this.changes.length;
      while (!now || now.calls !== this.calls || now.status !== this.latest()) {
        if (Date.now() > settleBy) break;
        await sleep(5);
        now = await this.served();
      }
      untimed += this.changes.length - changesBefore;
      if (!now || now.calls !== this.calls || now.status !== this.latest())
        report(
          `  ${label} health probe: not settled after ${this.timeoutMs} ms (API ${JSON.stringify(now)}, topic ${this.latest()})`,
        );
      const status = this.latest();
      const call = status === 'unhealthy' ? 'success' : 'timeout';
      const seen = this.changes.length;
      const producedAt = Date.now();
      await this.produce([callEnvelope(this.org, this.conn, call === 'timeout')]);
      // Wait for a change on the topic, or for the API to show the call with the status unchanged.
      const deadline = producedAt + this.timeoutMs;
      let flipped = false;
      for (;;) {
        if (this.changes.length > seen) {
          const c = this.changes[seen];
          flips.push({ producedAt, seenAt: c.seenAt, from: c.change.from, to: c.change.to, call });
          untimed += this.changes.length - seen - 1;
          flipped = true;
          break;
        }
        if (Date.now() > deadline) break;
        const after = await this.served();
        if (after && after.calls === this.calls && after.status === status && this.changes.length === seen) break;
        if (after && after.calls === this.calls && after.status !== status) {
          // The API shows the flip: wait for the topic alone from here (no more API requests).
          while (this.changes.length === seen && Date.now() <= deadline) await sleep(1);
          continue;
        }
        await sleep(5);
      }
      if (!flipped && Date.now() > deadline) {
        flips.push({ producedAt, seenAt: null, from: status, to: null, call });
        report(`  ${label} health probe: no change on the topic within ${this.timeoutMs} ms of a call`);
      }
      if (Date.now() - lastReport >= 5000) {
        lastReport = Date.now();
        report(
          `  ${label} health probe: ${((Date.now() - started) / 1000).toFixed(0)}/${seconds} s, ${this.calls - callsBefore} calls, ${flips.length} flips`,
        );
      }
    }
    return { flips, calls: this.calls - callsBefore, untimed };
  }

  async stop(): Promise<void> {
    await this.stopConsumer?.().catch(() => undefined);
  }
}

/** The latencies (ms) of the flips the consumer saw, sorted. */
export function flipLatencies(run: HealthProbeRun): number[] {
  return run.flips
    .filter((f) => f.seenAt !== null)
    .map((f) => f.seenAt! - f.producedAt)
    .sort((a, b) => a - b);
}
