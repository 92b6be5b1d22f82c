import { randomUUID } from 'node:crypto';
import { Admin, Consumer, IHeaders, Kafka, Producer } from 'kafkajs';
import { DataSource } from 'typeorm';
import { toDlqMessage } from '@psp/messaging';
import {
  dropIsolated,
  eventually,
  isolatedEnv,
  isolatedSettings,
  openDatabase,
  testProducer,
} from '../support/isolated-stack';
import { runOps, startProcess, stopProcess } from '../support/processes';
import { parseStoredDocument } from '@psp/read-model';

const ORG = 'org_redrive';

function envelope(type: string, connectionId: string, data: Record<string, unknown>, eventId = randomUUID()) {
  return {
    event_id: eventId,
    type,
    schema_version: 1,
    org_id: ORG,
    connection_id: connectionId,
    occurred_at: new Date(Date.now() - 60000).toISOString(),
    data,
  };
}

/**
 * `npm run ops -- dlq redrive` as an operator runs it after a producer bug (or a service bug) is
 * fixed: against the real Kafka and PostgreSQL, with a writer and a projector on the run's topics.
 */
describe('the dlq redrive command line', () => {
  const env = isolatedEnv('opsredrive');
  const settings = isolatedSettings('unused', env);
  const topics = settings.topics;
  let db: DataSource;
  let kafka: Kafka;
  let producer: Producer;
  let admin: Admin;
  let writer: ReturnType<typeof startProcess> | undefined;
  let projector: ReturnType<typeof startProcess> | undefined;

  const ops = (...args: string[]) => runOps(env, ...args);
  const high = async (topic: string) => (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0);
  const highs = async () => ({
    calls: await high(topics.calls),
    validations: await high(topics.validations),
    connections: await high(topics.connections),
    dlq: await high(topics.dlq),
  });
  const logged = async (eventIds: string[]) =>
    (await db.query(`SELECT count(*)::int AS n FROM event_log WHERE event_id = ANY($1)`, [eventIds]))[0].n as number;
  const orgEvents = async () =>
    (await db.query(`SELECT count(*)::int AS n FROM event_log WHERE org_id = $1`, [ORG]))[0].n as number;
  /** The connection as the API renders it, from the live read model. */
  const served = async (connectionId: string) => {
    const rows: { document: string | null }[] = await db.query(
      `SELECT c.document FROM connection_read_model c JOIN projection_generation g USING (generation)
        WHERE g.status = 'live' AND c.org_id = $1 AND c.connection_id = $2`,
      [ORG, connectionId],
    );
    return rows[0]?.document
      ? (JSON.parse(parseStoredDocument(rows[0].document).connection) as Record<string, unknown>)
      : null;
  };
  /** The first `count` messages of one of the run's (fresh) topics. */
  const readTopic = async (
    topic: string,
    count: number,
  ): Promise<{ key: string; value: string; headers: IHeaders }[]> => {
    const consumer: Consumer = kafka.consumer({ groupId: `${settings.kafkaClientId}-check-${randomUUID()}` });
    const seen: { key: string; value: string; headers: IHeaders }[] = [];
    await consumer.connect();
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`read ${seen.length} of ${count} messages of ${topic}`)),
          30000,
        );
        void consumer.run({
          eachMessage: async ({ message }) => {
            seen.push({ key: String(message.key), value: String(message.value), headers: message.headers ?? {} });
            if (seen.length >= count) {
              clearTimeout(timer);
              resolve();
            }
          },
        });
      });
    } finally {
      await consumer.disconnect();
    }
    return seen;
  };

  beforeAll(async () => {
    db = await openDatabase(settings);
    ({ kafka, producer } = await testProducer(settings, { createTopics: true }));
    admin = kafka.admin();
    await admin.connect();
  });

  afterAll(async () => {
    if (writer) await stopProcess(writer);
    if (projector) await stopProcess(projector);
    await admin?.disconnect();
    await producer?.disconnect();
    await db?.destroy();
    await dropIsolated(settings);
  });

  it('re-sends the messages of a reason to their topics, once in effect, and leaves the others alone', async () => {
    // Bad messages from producers: the writer puts them in the DLQ.
    await producer.send({
      topic: topics.validations,
      acks: -1,
      messages: [
        { key: `${ORG}:a`, value: '{not json' },
        { key: `${ORG}:a`, value: '{not json either' },
      ],
    });
    await producer.send({
      topic: topics.calls,
      acks: -1,
      messages: [
        {
          key: `${ORG}:a`,
          value: JSON.stringify(envelope('psp.call.retried', 'a', { outcome: 'success', latency_ms: 1 })),
        },
      ],
    });
    writer = startProcess('writer', env);
    projector = startProcess('projector', env);
    await eventually(
      () => high(topics.dlq),
      (n) => n === 3,
      60000,
      'the three bad messages in the DLQ',
    );

    // "After the fix": messages the writer had refused as unstorable (as it would put them in the
    // DLQ) that it now accepts, and one whose source is not an intake topic.
    const configured = envelope('connection.configured', 'conn_a', { provider: 'paystack', labels: ['ghana'] });
    const call = envelope('psp.call.completed', 'conn_a', { outcome: 'success', latency_ms: 120 });
    const stray = envelope('psp.call.completed', 'conn_b', { outcome: 'success', latency_ms: 5 });
    const refused = (topic: string, offset: string, value: object, trace: string) =>
      toDlqMessage(
        {
          topic,
          partition: 0,
          offset,
          key: Buffer.from(`${ORG}:conn_a`),
          value: Buffer.from(JSON.stringify(value)),
          headers: { 'x-trace-id': trace },
        },
        { reason: 'unstorable', detail: 'the database refused the event' },
      );
    await producer.send({
      topic: topics.dlq,
      acks: -1,
      messages: [
        refused(topics.connections, '900', configured, 'trace-configured'),
        refused(topics.calls, '901', call, 'trace-call'),
        refused(`t.elsewhere.${randomUUID()}`, '7', stray, 'trace-stray'),
      ],
    });

    const listed = JSON.parse((await ops('dlq', '--json')).stdout);
    expect(listed).toMatchObject({
      topic: topics.dlq,
      total: 6,
      by_reason: {
        unstorable: { messages: 3 },
        invalid_json: { messages: 2, topics: { [topics.validations]: 2 } },
        unknown_type: { messages: 1, topics: { [topics.calls]: 1 } },
      },
    });
    expect(listed.newest).toHaveLength(6);
    const text = (await ops('dlq', '--limit', '2')).stdout;
    expect(text).toContain(`${topics.dlq}: 6 message(s)`);
    expect(text).toContain('by reason: unstorable=3, invalid_json=2, unknown_type=1');
    expect(text).toContain('newest 2:');
    expect(text).not.toContain('not json'); // never a message's value

    const before = await highs();

    // A dry run counts and sends nothing.
    const dry = (await ops('dlq', 'redrive', '--reason', 'unstorable', '--dry-run')).stdout;
    expect(dry).toContain('dry run: nothing is sent');
    expect(dry).toMatch(
      /unstorable: 2 would be re-sent \(.*: 1, .*: 1\); 1 skipped, dlq-topic not an intake topic \(t\.elsewhere\.[^:]+: 1\)/,
    );
    expect(dry).toContain('invalid_json: 2 not selected');
    expect(dry).toContain('unknown_type: 1 not selected');
    expect(dry).toContain('total: 2 would be re-sent, 1 skipped, 0 duplicate(s), 3 not selected (of 6 read)');
    expect(await highs()).toEqual(before);
    expect(await orgEvents()).toBe(0);

    // The redrive: both events applied, visible in the log and in what the API serves.
    const first = (await ops('dlq', 'redrive', '--reason', 'unstorable')).stdout;
    expect(first).toContain(
      `unstorable: 2 re-sent (${[topics.calls, topics.connections]
        .sort()
        .map((t) => `${t}: 1`)
        .join(', ')})`,
    );
    expect(first).toContain('total: 2 re-sent, 1 skipped, 0 duplicate(s), 3 not selected (of 6 read)');
    expect(first).toContain('the writer applies each event_id once');
    expect(await highs()).toEqual({ ...before, calls: before.calls + 1, connections: before.connections + 1 });
    await eventually(
      () => logged([configured.event_id, call.event_id]),
      (n) => n === 2,
      60000,
      'the events in the log',
    );
    const doc = await eventually(
      () => served('conn_a'),
      (d) => d?.total_calls === 1,
      60000,
      'the redriven call counted in the read model',
    );
    expect(doc).toMatchObject({ id: 'conn_a', provider: 'paystack', labels: ['ghana'], successful_calls: 1 });

    // Re-sent unchanged: same key and value, the producer's headers kept, the dlq-* ones dropped.
    const resent = (await readTopic(topics.calls, before.calls + 1)).find((m) => m.value === JSON.stringify(call));
    expect(resent).toBeDefined();
    expect(resent!.key).toBe(`${ORG}:conn_a`);
    expect(Object.keys(resent!.headers)).toEqual(['x-trace-id']);
    expect(String(resent!.headers['x-trace-id'])).toBe('trace-call');

    // Again: re-sent, and nothing changes (the writer recognises the event ids).
    const second = (await ops('dlq', 'redrive', '--reason', 'unstorable')).stdout;
    expect(second).toContain('total: 2 re-sent');
    const after = await highs();
    expect(after).toEqual({ ...before, calls: before.calls + 2, connections: before.connections + 2 });
    await eventually(
      async () => JSON.parse((await ops('lag', '--json')).stdout),
      (lag) => lag.writer.topics.every((t: { behind: number }) => t.behind === 0),
      60000,
      'the writer to have consumed the second redrive',
    );
    expect(await orgEvents()).toBe(2);
    expect(await served('conn_a')).toEqual(doc);

    // The reasons not selected were left alone: nothing went back to validations, the DLQ holds the same.
    expect(after.validations).toBe(before.validations);
    expect(after.dlq).toBe(6);
    expect(JSON.parse((await ops('dlq', '--json')).stdout).by_reason).toEqual(listed.by_reason);

    // Every read used a consumer group of its own, deleted afterwards: none is left behind.
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId);
    expect(groups.filter((g) => g.startsWith(`${settings.kafkaClientId}-ops-`))).toEqual([]);
  });

  it('with --since, reads only the DLQ messages from that time on', async () => {
    const since = new Date(Date.now() + 1);
    await new Promise((r) => setTimeout(r, 20));
    const late = envelope('psp.call.completed', 'conn_a', { outcome: 'failure', latency_ms: 3100 });
    await producer.send({
      topic: topics.dlq,
      acks: -1,
      messages: [
        toDlqMessage(
          {
            topic: topics.calls,
            partition: 1,
            offset: '902',
            key: Buffer.from(`${ORG}:conn_a`),
            value: Buffer.from(JSON.stringify(late)),
          },
          { reason: 'unstorable', detail: 'the database refused the event' },
        ),
      ],
    });
    const dry = JSON.parse((await ops('dlq', 'redrive', '--since', since.toISOString(), '--dry-run', '--json')).stdout);
    expect(dry).toMatchObject({
      dry_run: true,
      since: since.toISOString(),
      messages: 1,
      by_reason: { unstorable: { messages: 1, resent: 1, resent_to: { [topics.calls]: 1 }, skipped: 0 } },
      total: { resent: 1, skipped: 0, duplicates: 0, not_selected: 0 },
    });
    // --reason repeated and as a comma list: every reason named is selected.
    const all = JSON.parse(
      (
        await ops(
          'dlq',
          'redrive',
          '--reason',
          'invalid_json,unknown_type',
          '--reason',
          'unstorable',
          '--dry-run',
          '--json',
        )
      ).stdout,
    );
    expect(all).toMatchObject({
      reasons: ['invalid_json', 'unknown_type', 'unstorable'],
      messages: 7,
      by_reason: {
        unstorable: { selected: true, messages: 4, resent: 3, skipped: 1 },
        invalid_json: { selected: true, messages: 2, resent: 2, resent_to: { [topics.validations]: 2 } },
        unknown_type: { selected: true, messages: 1, resent: 1 },
      },
      total: { resent: 6, skipped: 1, duplicates: 0, not_selected: 0 },
    });

    const future = (await ops('dlq', 'redrive', '--since', new Date(Date.now() + 3600_000).toISOString())).stdout;
    expect(future).toContain('total: 0 re-sent, 0 skipped, 0 duplicate(s), 0 not selected (of 0 read)');
  });
});
