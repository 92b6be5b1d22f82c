import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { callEvent, T0 } from '@psp/domain/testing/events';
import { ConnectionStreams, loadAggregates, SourcedEvent } from '../../apps/writer/src/connection-streams';
import { dropIsolated, isolatedEnv, isolatedSettings, openDatabase } from '../support/isolated-stack';

let offset = 0;
function calls(connectionId: string, n: number): SourcedEvent[] {
  return Array.from({ length: n }, () => {
    const i = offset++;
    return {
      event: callEvent(`ev-${i}`, T0 + i, { latency_ms: i }, { orgId: 'org_agg', connectionId }),
      source: { topic: 'psp.calls', partition: 0, offset: String(i) },
    };
  });
}

/** The writer's aggregates in memory are bounded; an evicted one is snapshotted when its tail is long. */
describe('the writer aggregate cache against the log', () => {
  let settings: Settings;
  let db: DataSource;
  let streams: ConnectionStreams;

  beforeAll(async () => {
    // Two aggregates in memory; snapshots by count never (only on eviction).
    settings = isolatedSettings(
      'unused',
      isolatedEnv('aggcache', { WRITER_AGGREGATE_CACHE: '2', WRITER_SNAPSHOT_EVERY: '1000000' }),
    );
    db = await openDatabase(settings);
    streams = new ConnectionStreams(db, settings);
  });

  afterAll(async () => {
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  async function snapshots(): Promise<Record<string, number>> {
    const rows: { connection_id: string; stream_version: number }[] = await db.query(
      `SELECT connection_id, stream_version FROM connection_snapshot ORDER BY connection_id`,
    );
    return Object.fromEntries(rows.map((r) => [r.connection_id, r.stream_version]));
  }

  it('snapshots an evicted aggregate with 50 or more events since its snapshot, not one with fewer', async () => {
    await streams.record(calls('a', 60));
    await streams.record(calls('b', 3));
    expect(await snapshots()).toEqual({});
    await streams.record(calls('c', 1)); // evicts a (60 events, no snapshot yet)
    expect(await snapshots()).toEqual({ a: 60 });
    await streams.record(calls('d', 1)); // evicts b (3 events): reloading it reads 3 rows, no snapshot
    expect(await snapshots()).toEqual({ a: 60 });
  });

  it('appends correctly to streams that were evicted and are loaded again', async () => {
    await streams.record([...calls('a', 5), ...calls('b', 2)]); // both reloaded, c and d evicted
    const versions: { connection_id: string; n: number; max: number }[] = await db.query(
      `SELECT connection_id, count(*)::int AS n, max(stream_version) AS max FROM event_log GROUP BY connection_id ORDER BY 1`,
    );
    expect(versions).toEqual([
      { connection_id: 'a', n: 65, max: 65 },
      { connection_id: 'b', n: 5, max: 5 },
      { connection_id: 'c', n: 1, max: 1 },
      { connection_id: 'd', n: 1, max: 1 },
    ]);
    const loaded = await loadAggregates(db, [{ orgId: 'org_agg', connectionId: 'a' }]);
    const a = loaded.get('org_agg:a')!;
    expect(a.version).toBe(65);
    expect(a.state.totalCalls).toBe(65);
    const latency: { sum: number }[] = await db.query(
      `SELECT sum((data->>'latency_ms')::int)::int AS sum FROM event_log WHERE connection_id = 'a'`,
    );
    expect(a.state.totalLatencyMs).toBe(latency[0].sum);
  });
});
