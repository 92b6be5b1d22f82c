import { randomUUID } from 'node:crypto';
import { Kafka, Producer } from 'kafkajs';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { readDlq } from '../support/dlq-reader';
import { eventually, IsolatedStack, openIsolatedStack } from '../support/isolated-stack';
import { startProcess, stopProcess } from '../support/processes';

const CONNECTIONS = 30;
const GOOD_CALLS = 6000;

/**
 * One message never holds back the others (CONTRACT 2.4): messages that pass validation but that
 * PostgreSQL refuses to store are found inside the writer's group append, sent to the DLQ as
 * `unstorable`, and everything around them is appended and committed. The refusals here are made by
 * the test database itself: a CHECK constraint (the COPY names the refused row) and a deferred
 * constraint trigger (the refusal comes at COMMIT and names no row, so the writer has to bisect).
 */
describe('the writer with messages the database refuses', () => {
  let env: Record<string, string>;
  let settings: Settings;
  let db: DataSource;
  let kafka: Kafka;
  let producer: Producer;
  let stack: IsolatedStack;
  const expected = new Map<string, { calls: number; latency: number }>();

  function call(eventId: string, connection: string, latency: number): { key: string; value: string } {
    return {
      key: `org_p:${connection}`,
      value: JSON.stringify({
        event_id: eventId,
        type: 'psp.call.completed',
        schema_version: 1,
        org_id: 'org_p',
        connection_id: connection,
        occurred_at: new Date(Date.now() - 60000).toISOString(),
        data: { outcome: 'success', latency_ms: latency },
      }),
    };
  }

  function good(i: number): { key: string; value: string } {
    const c = `c${i % CONNECTIONS}`;
    const latency = i % 991;
    const e = expected.get(c) ?? { calls: 0, latency: 0 };
    expected.set(c, { calls: e.calls + 1, latency: e.latency + latency });
    return call(randomUUID(), c, latency);
  }

  async function logCount(): Promise<number> {
    return (await db.query(`SELECT count(*)::int AS n FROM event_log`))[0].n;
  }

  beforeAll(async () => {
    stack = await openIsolatedStack('poison');
    ({ env, settings, db, kafka, producer } = stack);
    // Refusals that only this database makes: valid messages by the contract's rules.
    await db.query(
      `ALTER TABLE event_log ADD CONSTRAINT test_refusal_check CHECK (event_id NOT LIKE 'poison-check-%') NOT VALID`,
    );
    await db.query(`CREATE FUNCTION test_poison_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                      BEGIN
                        IF NEW.event_id LIKE 'poison-commit-%' THEN
                          RAISE EXCEPTION 'value % refused at commit', NEW.event_id USING ERRCODE = '22023';
                        END IF;
                        RETURN NULL;
                      END $$`);
    await db.query(`CREATE CONSTRAINT TRIGGER test_poison_at_commit AFTER INSERT ON event_log
                      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_poison_at_commit()`);
  });

  afterAll(async () => {
    await stack?.close();
  });

  it('appends the good messages around them, sends each refused one to the DLQ as unstorable, and moves the offsets on', async () => {
    // Good traffic on every partition with the refused messages in the middle of it, all waiting in
    // Kafka before the writer starts, so they arrive in the same group appends as good ones.
    const poison = [
      call('poison-check-1', 'c3', 10),
      call('poison-commit-1', 'c7', 20),
      call('poison-check-2', 'c11', 30),
      call('poison-commit-2', 'c12', 40),
    ];
    const messages: { key: string; value: string }[] = [];
    for (let i = 0; i < GOOD_CALLS; i++) {
      messages.push(good(i));
      if (i % 1500 === 750) messages.push(poison[(i - 750) / 1500]);
    }
    for (let i = 0; i < messages.length; i += 1000)
      await producer.send({ topic: settings.topics.calls, acks: -1, messages: messages.slice(i, i + 1000) });

    const writer = startProcess('writer', env);
    try {
      await eventually(logCount, (n) => n >= GOOD_CALLS, 90000, `${GOOD_CALLS} events in the log`);

      // Every refused message is in the DLQ, unchanged, with reason unstorable and the database's
      // complaint named by SQLSTATE, never by the value it refused.
      const dlq = await eventually(
        () => readDlq(kafka, settings),
        (copies) => copies.length >= poison.length,
        30000,
        'the refused messages in the DLQ',
      );
      expect(dlq.map((m) => m.value).sort()).toEqual(poison.map((p) => p.value).sort());
      for (const copy of dlq) {
        const original = poison.find((p) => p.value === copy.value)!;
        expect(copy.key).toBe(original.key);
        expect(copy.headers['dlq-reason']).toBe('unstorable');
        expect(copy.headers['dlq-topic']).toBe(settings.topics.calls);
        expect(copy.headers['dlq-partition']).toMatch(/^\d$/);
        expect(copy.headers['dlq-offset']).toMatch(/^\d+$/);
        const detail = copy.headers['dlq-detail'];
        if (copy.value!.includes('poison-check'))
          expect(detail).toBe(
            'The event log refused to store this message: SQLSTATE 23514 check_violation (constraint test_refusal_check).',
          );
        else
          expect(detail).toBe('The event log refused to store this message: SQLSTATE 22023 invalid_parameter_value.');
        expect(detail).not.toContain('poison-'); // no value quoted
      }

      // Nothing lost, nothing counted twice, stream versions without gaps.
      await new Promise((r) => setTimeout(r, 1500));
      expect(await logCount()).toBe(GOOD_CALLS);
      const rows: { connection_id: string; calls: number; latency: number; max_version: number }[] = await db.query(
        `SELECT connection_id, count(*)::int AS calls, sum((data->>'latency_ms')::int)::int AS latency,
                max(stream_version) AS max_version
           FROM event_log GROUP BY connection_id`,
      );
      expect(rows).toHaveLength(CONNECTIONS);
      for (const r of rows) {
        expect({ c: r.connection_id, calls: r.calls, latency: r.latency }).toEqual({
          c: r.connection_id,
          ...expected.get(r.connection_id),
        });
        expect(r.max_version).toBe(r.calls);
      }

      // The group's committed offsets reach the end of every partition: the refused messages were
      // passed, not retried forever.
      const admin = kafka.admin();
      await admin.connect();
      try {
        const ends = await admin.fetchTopicOffsets(settings.topics.calls);
        await eventually(
          async () => {
            const [committed] = await admin.fetchOffsets({
              groupId: settings.writerGroupId,
              topics: [settings.topics.calls],
            });
            return committed.partitions.map((p) => [p.partition, p.offset]).sort();
          },
          (committed) => JSON.stringify(committed) === JSON.stringify(ends.map((p) => [p.partition, p.high]).sort()),
          30000,
          'offsets committed to the end of each partition',
        );
      } finally {
        await admin.disconnect();
      }

      const output = writer.output.join('');
      // The writer never restarted consumption because of a message, and named each refused event.
      expect(output).not.toContain('Restarting consumption');
      for (const id of ['poison-check-1', 'poison-commit-1', 'poison-check-2', 'poison-commit-2'])
        expect(output).toContain(`event ${id} (`);
      expect(output).not.toContain('refused at commit'); // PostgreSQL's text (quoting the value) is not logged
    } finally {
      await stopProcess(writer);
    }
  });
});
