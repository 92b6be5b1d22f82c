import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { callEvent, configuredEvent, T0 } from '@psp/domain/testing/events';
import { ConnectionEvent } from '@psp/domain';
import { readProjectionStall } from '@psp/read-model';
import { ApiModule } from '../../apps/api/src/api.module';
import { dropIsolated, eventually, isolatedEnv, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { runOps, startProcess, stopProcess } from '../support/processes';
import { seedLog } from '../support/seed';
import { startService } from '../support/service';

/**
 * A logged event that the projector cannot apply never stalls the projection silently: the projector
 * applies everything before it, retries it, names it (log line, /readyz 503, `ops lag`), and goes on
 * by itself once the event can be applied.
 */
describe('a projection stuck on an event', () => {
  let env: Record<string, string>;
  let settings: Settings;
  let db: DataSource;
  let api: { app: NestFastifyApplication; url: string };

  const before: ConnectionEvent[] = [];
  for (let i = 0; i < 40; i++) before.push(callEvent(`before-${i}`, T0 + i * 1000, {}, { connectionId: `c${i % 4}` }));
  const configured = configuredEvent('configured-c1', T0, {}, { connectionId: 'c1' });
  // A call whose data is JSON null: applying it throws (no outcome, no latency). The writer never
  // logs such an event; the test puts it straight into the log, as a bug or a hand edit could.
  const unappliable = {
    ...callEvent('the-unappliable-one', T0 + 50_000, {}, { connectionId: 'c2' }),
    data: null,
  } as unknown as ConnectionEvent;
  const after = [callEvent('after-1', T0 + 60_000, {}, { connectionId: 'c1' })];

  async function readyz(): Promise<{ status: number; body: Record<string, unknown> }> {
    const response = await fetch(`${api.url}/readyz`);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  beforeAll(async () => {
    env = isolatedEnv('stall');
    settings = isolatedSettings('unused', env);
    db = await openDatabase(settings);
    await seedLog(db, [configured, ...before, unappliable, ...after]);
    api = await startService(ApiModule, settings);
  });

  afterAll(async () => {
    await api?.app.close();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('names the event in the log, /readyz and ops lag, and goes on once it can be applied', async () => {
    const projector = startProcess('projector', env);
    try {
      // Everything before the event is applied; the projection then stands on it.
      const stuck = await eventually(
        readyz,
        (r) => r.status === 503 && JSON.stringify(r.body.down) === '["projection"]',
        30000,
        '/readyz to report the stuck projection',
      );
      const checkpoint = await db.query(
        `SELECT events_applied::int AS n FROM projection_progress WHERE status = 'live'`,
      );
      expect(checkpoint[0].n).toBe(1 + before.length);
      expect(stuck.body.status).toBe('not_ready');
      expect(stuck.body.down).toEqual(['projection']);
      expect(stuck.body.message).toBe('projection of read-model generation 1 is stuck on event the-unappliable-one');
      const projection = stuck.body.projection as Record<string, unknown>;
      expect(projection.stuck).toEqual({
        event_id: 'the-unappliable-one',
        since: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        seconds: expect.any(Number),
        attempts: expect.any(Number),
      });
      expect((projection.stuck as { seconds: number }).seconds).toBeGreaterThanOrEqual(5);
      expect(JSON.stringify(stuck.body)).not.toContain('Cannot read'); // the error text stays with ops

      const lag = await runOps(env, 'lag');
      expect(lag.stdout).toMatch(
        /stuck on event the-unappliable-one \(log position \d+\/\d+\) for \d+(\.\d)? s, \d+ attempts: /,
      );

      const logged = projector.output.join('');
      expect(logged).toMatch(
        /projection of generation 1 stuck on event the-unappliable-one \(log position \d+\/\d+, shard \d+\)/,
      );

      // A fix (here by hand, in the test database) lets it go on without a restart.
      await db.query(`ALTER TABLE event_log DISABLE TRIGGER event_log_append_only`);
      await db.query(`UPDATE event_log SET data = '{"outcome":"success","latency_ms":7}' WHERE event_id = $1`, [
        'the-unappliable-one',
      ]);
      await db.query(`ALTER TABLE event_log ENABLE TRIGGER event_log_append_only`);
      await eventually(readyz, (r) => r.status === 200, 30000, '/readyz ready again');
      await eventually(
        async () =>
          (await db.query(`SELECT events_applied::int AS n FROM projection_progress WHERE status = 'live'`))[0].n,
        (n) => n === 1 + before.length + 1 + after.length,
        30000,
        'every event applied',
      );
      expect(await readProjectionStall(db, 1)).toBeNull();
      expect(projector.output.join('')).toContain('got past the event it failed on');
    } finally {
      await stopProcess(projector);
    }
  });
});
