import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * OpenTelemetry trace context (README, "Traces"), additive: each event keeps the W3C
 * trace context its Kafka message carried (`traceparent`, then ` tracestate` when there is one), so
 * that the projection step that applies it can link to the producer's span; each outbox row keeps
 * the context of the step that wrote it and those of the call events behind the change, for the
 * relay to put in the message's headers and link to. Both columns are nullable, without a default:
 * adding them rewrites nothing, and an event or a message without a context stores NULL.
 */
export class TraceContext1732400000012 implements MigrationInterface {
  name = 'TraceContext1732400000012';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE event_log ADD COLUMN trace_context text NULL`);
    await q.query(`ALTER TABLE health_change_outbox ADD COLUMN trace_context text NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE health_change_outbox DROP COLUMN trace_context`);
    await q.query(`ALTER TABLE event_log DROP COLUMN trace_context`);
  }
}
