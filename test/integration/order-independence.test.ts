import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ConnectionEvent, healthOfWindow, minuteBucket, withHealth } from '@psp/domain';
import { parseStoredDocument, Projection, readCheckpoint } from '@psp/read-model';
import { ConnectionStreams, SourcedEvent } from '../../apps/writer/src/connection-streams';
import { dropIsolated, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { mixedEvents, projectAll, seededRandom } from '../support/seed';

function shuffled<T>(xs: T[], seed: number): T[] {
  const rnd = seededRandom(seed);
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * CONTRACT 3: the read model is a pure function of the set of accepted events. One event set,
 * delivered in different orders with duplicates through the writer's real append path into separate
 * databases, then projected, gives byte-identical documents as served; so does a rebuild of each log.
 */
describe('order independence through the log', () => {
  const runs: { settings: Settings; db: DataSource }[] = [];
  const events: ConnectionEvent[] = mixedEvents({
    orgs: 2,
    connections: 12,
    events: 3000,
    seed: 7,
    start: Date.UTC(2026, 10, 24, 6, 0, 0),
  });

  afterAll(async () => {
    for (const r of runs) {
      await r.db.destroy();
      await dropIsolated(r.settings);
    }
  });

  /**
   * Each listed connection as served at the generation's stream time (stored documents carry the
   * minute they were rendered at, which depends on the order; what is served does not).
   */
  async function documents(db: DataSource, generation: number): Promise<string> {
    const rows: { org_id: string; connection_id: string; listed: boolean; document: string | null }[] = await db.query(
      `SELECT org_id, connection_id, listed, document FROM connection_read_model WHERE generation = $1 ORDER BY org_id, connection_id`,
      [generation],
    );
    const { streamTime } = await readCheckpoint(db, generation);
    const b = streamTime === null ? null : minuteBucket(streamTime);
    return rows
      .map((r) => {
        if (r.document === null) return `${r.org_id}/${r.connection_id} ${r.listed} null`;
        const { connection, window } = parseStoredDocument(r.document);
        const served = withHealth(connection, healthOfWindow(window, b));
        return `${r.org_id}/${r.connection_id} ${r.listed} ${served}`;
      })
      .join('\n');
  }

  it('gives identical read models for every delivery order, and for a rebuild', async () => {
    const results: string[] = [];
    for (let order = 0; order < 3; order++) {
      const settings = isolatedSettings(`order${order}`);
      const db = await openDatabase(settings);
      runs.push({ settings, db });
      const streams = new ConnectionStreams(db, settings);
      // Every event once, a fifth of them twice (the second copy later in the stream), in a new order.
      const withDuplicates = shuffled([...events, ...events.filter((_, i) => i % 5 === order)], 100 + order);
      const delivered: SourcedEvent[] = withDuplicates.map((event, i) => ({
        event,
        source: { topic: 'order', partition: 0, offset: String(i) },
      }));
      let appended = 0;
      let duplicates = 0;
      for (let i = 0; i < delivered.length; i += 250) {
        const outcome = await streams.record(delivered.slice(i, i + 250));
        appended += outcome.appended;
        duplicates += outcome.duplicates;
      }
      expect(appended).toBe(events.length);
      expect(duplicates).toBe(delivered.length - events.length);
      // Projected while the log grows would be the same; here: in small batches, then a rebuild.
      await projectAll(new Projection(db, 1, null, 97));
      const live = await documents(db, 1);
      await db.query(`INSERT INTO projection_generation (generation, status) VALUES (2, 'building')`);
      await projectAll(new Projection(db, 2, null, 5000));
      expect(await documents(db, 2)).toBe(live);
      results.push(live);
    }
    expect(results[1]).toBe(results[0]);
    expect(results[2]).toBe(results[0]);
    expect(results[0]).toContain('"health_score"');
  });
});
