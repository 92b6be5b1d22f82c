import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { callEvent, T0 } from '@psp/domain/testing/events';
import { readStreamVersions } from '@psp/storage';
import { ConnectionStreams, SourcedEvent } from '../../apps/writer/src/connection-streams';
import { STREAM_VERSION_ENTRY_BYTES, StreamVersions } from '../../apps/writer/src/stream-versions';
import { dropIsolated, isolatedEnv, isolatedSettings, openDatabase } from '../support/isolated-stack';

let offset = 0;
function calls(connectionId: string, n: number): SourcedEvent[] {
  return Array.from({ length: n }, () => {
    const i = offset++;
    return {
      event: callEvent(`ev-${i}`, T0 + i, { latency_ms: i }, { orgId: 'org_sv', connectionId }),
      source: { topic: 'psp.calls', partition: 0, offset: String(i) },
    };
  });
}

/**
 * The writer keeps only stream versions, in memory bounded in bytes: a stream it forgot (evicted, or
 * written by another writer meanwhile) is looked up in the log again, and its versions stay gap-free.
 */
describe('the writer stream versions against the log', () => {
  let settings: Settings;
  let db: DataSource;
  let streams: ConnectionStreams;
  let other: ConnectionStreams;

  beforeAll(async () => {
    // The smallest room: three or four streams' versions.
    settings = isolatedSettings(
      'unused',
      isolatedEnv('streamv', { WRITER_STREAM_CACHE_BYTES: String(STREAM_VERSION_ENTRY_BYTES) }),
    );
    db = await openDatabase(settings);
    streams = new ConnectionStreams(db, settings);
    other = new ConnectionStreams(db, settings); // a second writer on the same log
  });

  afterAll(async () => {
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  async function versions(): Promise<{ connection_id: string; n: number; max: number }[]> {
    return db.query(
      `SELECT connection_id, count(*)::int AS n, max(stream_version) AS max FROM event_log GROUP BY connection_id ORDER BY 1`,
    );
  }

  it('appends gap-free to streams it had to forget', async () => {
    await streams.record(calls('a', 60));
    await streams.record(calls('b', 3));
    for (const c of ['c', 'd', 'x1', 'x2', 'x3']) await streams.record(calls(c, 1)); // a and b are forgotten
    const memory = (streams as unknown as { versions: StreamVersions }).versions;
    expect(memory.get('org_sv:a')).toBeUndefined();
    expect(memory.get('org_sv:b')).toBeUndefined();
    await streams.record([...calls('a', 5), ...calls('b', 2)]); // both looked up again
    expect(await versions()).toEqual([
      { connection_id: 'a', n: 65, max: 65 },
      { connection_id: 'b', n: 5, max: 5 },
      { connection_id: 'c', n: 1, max: 1 },
      { connection_id: 'd', n: 1, max: 1 },
      { connection_id: 'x1', n: 1, max: 1 },
      { connection_id: 'x2', n: 1, max: 1 },
      { connection_id: 'x3', n: 1, max: 1 },
    ]);
  });

  it('retries with fresh versions when another writer moved a stream it remembers', async () => {
    await streams.record(calls('e', 2)); // remembered by the first writer at version 2
    await other.record(calls('e', 3)); // the second writer moves it to 5
    const outcome = await streams.record(calls('e', 1)); // version 3 is taken: conflict, look up, retry
    expect(outcome.appended).toBe(1);
    expect(outcome.conflictsRetried).toBeGreaterThanOrEqual(1);
    const e = (await versions()).find((v) => v.connection_id === 'e');
    expect(e).toEqual({ connection_id: 'e', n: 6, max: 6 });
  });

  it('a wrong version in memory (two streams taken for one by their hashes) costs a retry, never a gap', async () => {
    const memory = (streams as unknown as { versions: StreamVersions }).versions;
    await streams.record(calls('g', 3));
    memory.set('org_sv:g', 7); // the log says 3
    memory.set('org_sv:h', 4); // the log has no event of h
    const outcome = await streams.record([...calls('g', 2), ...calls('h', 1)]);
    expect(outcome.appended).toBe(3);
    expect(outcome.conflictsRetried).toBeGreaterThanOrEqual(1);
    const all = await versions();
    expect(all.find((v) => v.connection_id === 'g')).toEqual({ connection_id: 'g', n: 5, max: 5 });
    expect(all.find((v) => v.connection_id === 'h')).toEqual({ connection_id: 'h', n: 1, max: 1 });
  });

  it('reads the versions of more streams than one query takes, in order', async () => {
    await streams.record(calls('k7', 2));
    const keys = Array.from({ length: 20_001 }, (_, i) => ({ orgId: 'org_sv', connectionId: `k${i}` }));
    const read = await readStreamVersions(db, keys);
    expect(read).toHaveLength(keys.length);
    expect(read.every((r, i) => r.connectionId === `k${i}` && r.orgId === 'org_sv')).toBe(true);
    expect(read.filter((r) => r.version !== 0)).toEqual([{ orgId: 'org_sv', connectionId: 'k7', version: 2 }]);
  });

  it('counts a re-delivered event as a duplicate, once', async () => {
    const batch = calls('f', 4);
    await streams.record(batch);
    const again = await other.record([...batch, ...calls('f', 1)]);
    expect(again).toMatchObject({ appended: 1, duplicates: 4 });
    const f = (await versions()).find((v) => v.connection_id === 'f');
    expect(f).toEqual({ connection_id: 'f', n: 5, max: 5 });
  });
});
