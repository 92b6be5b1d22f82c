import { Kafka, logLevel } from 'kafkajs';
import { DataSource, QueryRunner } from 'typeorm';
import { T0 } from '@psp/domain/testing/events';
import { HealthChangedInput, readHealthOutbox, writeHealthChanges } from '@psp/read-model';
import { HealthChangeRelay } from '../../apps/projector/src/health-change-relay';
import { readTopicToEnd } from '../support/dlq-reader';
import { eventually, IsolatedStack, openIsolatedStack } from '../support/isolated-stack';

/**
 * The health-change relay against the interleaving the sharded projection makes possible (issue 19
 * item 1): two shards' steps run at once, so an outbox row can get its id (bigserial, allocated at the
 * insert) in one transaction while another transaction with a later id commits first. A relay that
 * moved a high-water mark of ids would skip the late one for ever; one that assumed ids arrive in
 * commit order would produce a later change of a connection before an earlier one. The relay deletes
 * exactly what it produced and each connection's changes come from one shard's steps (one at a time),
 * so every chain must come out whole and in order, whatever the order of the commits. The
 * interleaving is forced: transaction A holds its rows uncommitted while B commits and the relay runs.
 */
describe('the health-change relay when outbox ids commit out of order', () => {
  let stack: IsolatedStack;
  let db: DataSource;
  let relay: HealthChangeRelay;

  beforeAll(async () => {
    stack = await openIsolatedStack('relayorder', { PROJECTOR_IDLE_MS: '20' });
    db = stack.db;
    const kafka = new Kafka({
      clientId: 'relay-order',
      brokers: stack.settings.kafkaBrokers,
      logLevel: logLevel.NOTHING,
    });
    relay = new HealthChangeRelay(db, stack.settings, kafka);
    relay.onApplicationBootstrap();
  });

  afterAll(async () => {
    await relay?.beforeApplicationShutdown();
    await stack?.close();
  });

  const change = (org: string, connection: string, sequence: number, from: string | null, to: string) =>
    ({
      orgId: org,
      connectionId: connection,
      sequence,
      streamTimeMs: T0 + sequence * 60_000,
      from,
      to,
      score: 50,
    }) satisfies HealthChangedInput;

  async function open(): Promise<QueryRunner> {
    const runner = db.createQueryRunner();
    await runner.connect();
    await runner.startTransaction();
    return runner;
  }

  it('produces each chain whole and in order; a row whose id is older than one already produced is not skipped', async () => {
    // A (shard of org_a) allocates ids first and stays open …
    const a = await open();
    await writeHealthChanges(a.manager, 1, [change('org_a', 'x', 1, null, 'unhealthy')]);
    // … B (shard of org_b) allocates later ids, commits, and the relay produces them.
    const b = await open();
    await writeHealthChanges(b.manager, 1, [
      change('org_b', 'y', 1, null, 'healthy'),
      change('org_b', 'y', 2, 'healthy', 'degraded'),
    ]);
    await b.commitTransaction();
    await b.release();
    await eventually(
      () => Promise.resolve(relay.produced),
      (n) => n === 2,
      15000,
      "B's changes relayed",
    );
    const [{ n: waiting }] = await db.query(`SELECT count(*)::int AS n FROM health_change_outbox`);
    expect(waiting).toBe(0); // A's row is not visible yet

    // A commits after the relay produced ids above its own; then x's next change.
    await a.commitTransaction();
    await a.release();
    await eventually(
      () => Promise.resolve(relay.produced),
      (n) => n === 3,
      15000,
      "A's late row relayed",
    );
    const c = await open();
    await writeHealthChanges(c.manager, 1, [change('org_a', 'x', 2, 'unhealthy', 'unknown')]);
    await c.commitTransaction();
    await c.release();
    await eventually(
      () => Promise.resolve(relay.produced),
      (n) => n === 4,
      15000,
      "x's second change relayed",
    );

    const copies = await readTopicToEnd(stack.kafka, stack.settings.topics.health, 'relay-order');
    const chains = new Map<string, number[]>();
    for (const m of copies.map(
      (c2) => JSON.parse(c2.value!) as { org_id: string; connection_id: string; data: { sequence: number } },
    ))
      chains.set(`${m.org_id}/${m.connection_id}`, [
        ...(chains.get(`${m.org_id}/${m.connection_id}`) ?? []),
        m.data.sequence,
      ]);
    expect(Object.fromEntries(chains)).toEqual({ 'org_a/x': [1, 2], 'org_b/y': [1, 2] });
    const [{ n: left }] = await db.query(`SELECT count(*)::int AS n FROM health_change_outbox`);
    expect(left).toBe(0);
  });

  it('produces a chain in id order when its outbox ids cross a power of ten (99 → 100)', async () => {
    // The cause of issue 19 item 1, forced: the relay read "id::text AS id … ORDER BY id", which sorts
    // by the text ("100" < "95"), so a batch holding ids 95-104 went out as 100-104 then 95-99.
    const before = relay.produced;
    const tx = await open();
    await tx.query(`SELECT setval(pg_get_serial_sequence('health_change_outbox', 'id'), 94)`);
    const statuses = ['healthy', 'degraded', 'unhealthy', 'unknown'];
    await writeHealthChanges(
      tx.manager,
      1,
      Array.from({ length: 10 }, (_, i) =>
        change('org_c', 'z', i + 1, i === 0 ? null : statuses[(i - 1) % 4], statuses[i % 4]),
      ),
    );
    // What the relay reads, in this transaction (the relay cannot see the rows yet): numeric id order.
    const read = await readHealthOutbox(tx.manager, 500);
    expect(read.map((r) => Number(r.id))).toEqual([95, 96, 97, 98, 99, 100, 101, 102, 103, 104]);
    await tx.commitTransaction();
    await tx.release();
    await eventually(
      () => Promise.resolve(relay.produced),
      (n) => n === before + 10,
      15000,
      'the ten changes relayed',
    );
    const copies = await readTopicToEnd(stack.kafka, stack.settings.topics.health, 'relay-order-ten');
    const z = copies
      .map((c) => JSON.parse(c.value!) as { org_id: string; data: { sequence: number } })
      .filter((m) => m.org_id === 'org_c')
      .map((m) => m.data.sequence);
    expect(z).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });
});
