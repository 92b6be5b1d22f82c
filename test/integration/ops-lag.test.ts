import { randomUUID } from 'node:crypto';
import { Producer } from 'kafkajs';
import { DataSource } from 'typeorm';
import {
  dropIsolated,
  eventually,
  isolatedEnv,
  isolatedSettings,
  openDatabase,
  testProducer,
} from '../support/isolated-stack';
import { runOps, startProcess, stopProcess } from '../support/processes';

const CALLS = 30;
const BAD = 2;

/** `npm run ops -- lag` and `ops -- dlq` as an operator watches the writer catch up. */
describe('the lag and dlq command lines', () => {
  const env = isolatedEnv('opslag');
  const settings = isolatedSettings('unused', env);
  let db: DataSource;
  let producer: Producer;
  const escaped = (topic: string) => topic.replace(/[.]/g, '\\.');
  const behind = (topic: string, n: number) =>
    new RegExp(`${escaped(topic)}: 3 partition\\(s\\), ${n} message\\(s\\) behind`);

  beforeAll(async () => {
    db = await openDatabase(settings);
    ({ producer } = await testProducer(settings, { createTopics: true }));
  });

  afterAll(async () => {
    await producer?.disconnect();
    await db?.destroy();
    await dropIsolated(settings);
  });

  it('shows the messages the writer has not made durable yet, per topic, then none once it has', async () => {
    await producer.send({
      topic: settings.topics.calls,
      acks: -1,
      messages: Array.from({ length: CALLS }, (_, i) => ({
        key: `org_lag:c${i % 4}`,
        value: JSON.stringify({
          event_id: randomUUID(),
          type: 'psp.call.completed',
          schema_version: 1,
          org_id: 'org_lag',
          connection_id: `c${i % 4}`,
          occurred_at: new Date(Date.now() - 60000).toISOString(),
          data: { outcome: 'success', latency_ms: 10 + i },
        }),
      })),
    });
    await producer.send({
      topic: settings.topics.validations,
      acks: -1,
      messages: Array.from({ length: BAD }, () => ({ key: 'org_lag:c0', value: '{not json' })),
    });

    const before = (await runOps(env, 'lag')).stdout;
    expect(before).toMatch(new RegExp(`group ${escaped(settings.writerGroupId)} \\w+, 0 member\\(s\\)`));
    expect(before).toMatch(behind(settings.topics.calls, CALLS));
    expect(before).toMatch(behind(settings.topics.validations, BAD));
    expect(before).toMatch(behind(settings.topics.connections, 0));

    const writer = startProcess('writer', env);
    try {
      await eventually(
        async () => (await db.query(`SELECT count(*)::int AS n FROM event_log`))[0].n as number,
        (n) => n === CALLS,
        60000,
        'the calls in the log',
      );
      const after = await eventually(
        async () => (await runOps(env, 'lag')).stdout,
        (out) => behind(settings.topics.calls, 0).test(out) && behind(settings.topics.validations, 0).test(out),
        60000,
        'ops lag to show the writer caught up',
      );
      expect(after).toMatch(new RegExp(`group ${escaped(settings.writerGroupId)} Stable, 1 member\\(s\\)`));

      const json = JSON.parse((await runOps(env, 'lag', '--json')).stdout);
      expect(json.writer).toEqual({
        group: settings.writerGroupId,
        state: 'Stable',
        members: 1,
        error: null,
        topics: [settings.topics.calls, settings.topics.validations, settings.topics.connections].map((topic) => ({
          topic,
          exists: true,
          partitions: 3,
          behind: 0,
          behind_by_partition: {},
        })),
      });
      expect(json.projector.generations).toEqual([
        expect.objectContaining({ generation: 1, status: 'live', served: true, events_applied: expect.any(Number) }),
      ]);
    } finally {
      await stopProcess(writer);
    }

    const dlq = (await runOps(env, 'dlq')).stdout;
    expect(dlq).toContain(`${settings.topics.dlq}: ${BAD} message(s)`);
    expect(dlq).toContain(`by reason: invalid_json=${BAD}`);
    const dlqJson = JSON.parse((await runOps(env, 'dlq', '--json')).stdout);
    expect(dlqJson).toMatchObject({
      topic: settings.topics.dlq,
      total: BAD,
      by_reason: { invalid_json: { messages: BAD, topics: { [settings.topics.validations]: BAD } } },
    });
    expect(dlqJson.newest).toHaveLength(BAD);
  });
});
