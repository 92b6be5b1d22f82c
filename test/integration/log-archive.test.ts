import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { ApiKeyStore } from '@psp/api-keys';
import { callEvent, configuredEvent } from '@psp/domain/testing/events';
import { ARCHIVE_COLUMNS, compactLog, ensureLogPartitions, readLogPartitions, readManifest } from '@psp/storage';
import { generationsBehindLogTable, Projection, replay } from '@psp/read-model';
import { ApiModule } from '../../apps/api/src/api.module';
import { ConnectionStreams, SourcedEvent } from '../../apps/writer/src/connection-streams';
import { LogMaintenance } from '../../apps/writer/src/log-maintenance';
import { dropIsolated, isolatedEnv, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { appendAt, DAY, history, HISTORY_START, partitionOf, today } from '../support/log-history';
import { runOps } from '../support/processes';
import { projectAll } from '../support/seed';
import { startService } from '../support/service';

const ORGS = 3;

/**
 * Archives: closed partitions written to gzip'd NDJSON files with a manifest of SHA-256s before they
 * are dropped; a replay from the archive and the partitions left answers byte for byte as a replay
 * from the summaries.
 */
describe('archiving the event log', () => {
  const env = isolatedEnv('archive');
  const settings = isolatedSettings('unused', env);
  const dir = mkdtempSync(join(tmpdir(), 'psp-archive-'));
  const days = history({ orgs: ORGS });
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  const keys = new Map<string, string>();

  const paths = [
    '/v1/connections',
    '/v1/connections?limit=7&offset=3',
    '/v1/connections?label=ghana',
    '/v1/connections?status=inactive',
    '/v1/connections/labels',
    '/v1/connections/conn.3:x',
    '/v1/connections/conn.3:x/stats',
    '/v1/connections/conn.11:x/stats',
  ];

  async function answers(): Promise<string[]> {
    const out: string[] = [];
    for (let o = 0; o < ORGS; o++)
      for (const p of paths) {
        const res = await fetch(url + p, {
          headers: { 'X-Reevit-Key': keys.get(`org_${o}`)!, 'X-Org-Id': `org_${o}` },
        });
        out.push(`${o} ${p} ${res.status} ${await res.text()}`);
      }
    return out;
  }

  async function live(): Promise<number> {
    return (await db.query(`SELECT generation FROM projection_generation WHERE status = 'live'`))[0].generation;
  }

  beforeAll(async () => {
    db = await openDatabase(settings);
    await ensureLogPartitions(db, { widthDays: 1, aheadDays: 3 }, { from: today - 4 * DAY });
    for (const d of days) await appendAt(db, d.rows, d.recordedAt);
    await projectAll(new Projection(db, 1, null, 1000));
  });

  afterAll(async () => {
    await app?.close();
    await db?.destroy();
    await dropIsolated(settings);
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes closed partitions to gzip NDJSON files, rows in log order, with a manifest of SHA-256s', async () => {
    const before = new Date(today).toISOString().slice(0, 10);
    const out = JSON.parse((await runOps(env, 'log', 'archive', '--before', before, '--to', dir, '--json')).stdout);
    const names = [4, 3, 2, 1].map((d) => partitionOf(today - d * DAY));
    expect(out.archived.map((a: { partition: string }) => a.partition)).toEqual(names);
    expect(out.skipped).toEqual([]); // today's partition ends after --before
    const manifest = await readManifest(dir);
    expect(manifest.files.map((f) => [f.partition, f.rows])).toEqual(names.map((n) => [n, 1200]));
    for (const entry of manifest.files) {
      const bytes = readFileSync(join(dir, entry.file));
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(entry.sha256);
      expect(bytes.length).toBe(entry.bytes);
      const [headerLine, ...lines] = gunzipSync(bytes).toString('utf8').trimEnd().split('\n');
      expect(JSON.parse(headerLine)).toEqual({
        format: 'psp-connections/event-log-archive',
        version: 1,
        partition: entry.partition,
        from: entry.from,
        to: entry.to,
        rows: 1200,
        order: ['transaction_id', 'position'],
        columns: [...ARCHIVE_COLUMNS],
      });
      const rows = lines.map((l) => JSON.parse(l));
      expect(Object.keys(rows[0])).toEqual([...ARCHIVE_COLUMNS]);
      const stored: Record<string, unknown>[] = await db.query(
        `SELECT position::text AS position, transaction_id::text AS transaction_id, event_id, org_id, connection_id,
                stream_version, type, occurred_at, data::text AS data, source_topic, source_partition,
                source_offset::text AS source_offset, recorded_at
           FROM "${entry.partition}" e ORDER BY e.transaction_id, e.position`,
      );
      expect(
        rows.map((r) => ({
          ...r,
          data: JSON.stringify(r.data),
          occurred_at: new Date(r.occurred_at),
          recorded_at: new Date(r.recorded_at),
        })),
      ).toEqual(stored.map((s) => ({ ...s, data: JSON.stringify(JSON.parse(s.data as string)) })));
    }
    // Once more: nothing new to write.
    const again = JSON.parse((await runOps(env, 'log', 'archive', '--before', before, '--to', dir, '--json')).stdout);
    expect(again).toMatchObject({ archived: [], present: names });
    const listed = JSON.parse((await runOps(env, 'log', 'partitions', '--json')).stdout);
    expect(listed.partitions.find((p: { name: string }) => p.name === names[0])).toMatchObject({
      state: 'archived',
      table: 'attached',
      archive_file: join(dir, `${names[0]}.ndjson.gz`),
    });
  });

  it('rebuilds from the archive and the partitions left, byte for byte as a replay from the summaries', async () => {
    const compacted = await compactLog(db, {
      generationsBehind: generationsBehindLogTable,
      before: today - DAY,
      drop: true,
    });
    expect(compacted.dropped).toEqual([4, 3, 2].map((d) => partitionOf(today - d * DAY)));
    const late: SourcedEvent[] = [
      {
        event: callEvent('late-call', HISTORY_START + 3600_000, { outcome: 'failure' }, at('conn.3:x')),
        source: src(1),
      },
      { event: configuredEvent('late-config', HISTORY_START - 7200_000, {}, at('conn.11:x')), source: src(2) },
      { event: days[0].rows[7].event, source: src(3) }, // a re-send of an archived, compacted, dropped event
    ];
    expect(await new ConnectionStreams(db, settings).record(late)).toMatchObject({ appended: 2, duplicates: 1 });

    // From the summaries.
    const fromSummaries = await replay(db, null, { batchSize: 1000, shouldStop: () => false, log: () => undefined });
    expect(fromSummaries.eventsApplied).toBe(6002);
    ({ app, url } = await startService(ApiModule, settings));
    const store = new ApiKeyStore(db);
    for (let o = 0; o < ORGS; o++)
      keys.set(`org_${o}`, (await store.create(`org_${o}`, ['connections:read'], 'test')).key);
    const expected = await answers();
    expect(expected.join('\n')).toContain('"created_at":"2026-11-24T06:00:00.000Z"');

    // From the archive, as an operator runs it.
    const run = await runOps(env, 'replay', '--from-archive', dir);
    expect(run.stdout).toContain(`from the archive in ${dir} (3 partition(s))`);
    expect(run.stdout).toContain(
      'archived partitions still in the log, read from the log: ' + partitionOf(today - DAY),
    );
    expect(await live()).toBe(fromSummaries.generation + 1);
    const [{ events_applied }] = await db.query(
      `SELECT events_applied::int AS events_applied FROM projection_progress WHERE status = 'live'`,
    );
    expect(events_applied).toBe(6002);
    await new Promise((r) => setTimeout(r, 1100)); // the API re-reads the live generation every second
    expect(await answers()).toEqual(expected);
    // The archive's staging summaries are gone.
    expect(await db.query(`SELECT name FROM log_summary_set ORDER BY name`)).toEqual([{ name: 'compacted' }]);
  });

  it('refuses an archive whose file does not match its manifest, or that lacks a dropped partition', async () => {
    const generations = async () => (await db.query(`SELECT count(*)::int AS n FROM projection_generation`))[0].n;
    const count = await generations();
    const corrupt = mkdtempSync(join(tmpdir(), 'psp-archive-bad-'));
    const partial = mkdtempSync(join(tmpdir(), 'psp-archive-partial-'));
    try {
      cpSync(dir, corrupt, { recursive: true });
      const file = join(corrupt, `${partitionOf(today - 3 * DAY)}.ndjson.gz`);
      const bytes = readFileSync(file);
      bytes[bytes.length - 20] ^= 0xff;
      writeFileSync(file, bytes);
      await expect(runOps(env, 'replay', '--from-archive', corrupt)).rejects.toMatchObject({
        code: 1,
        stderr: expect.stringContaining('does not match its manifest entry'),
      });

      cpSync(dir, partial, { recursive: true });
      const manifest = JSON.parse(readFileSync(join(partial, 'manifest.json'), 'utf8'));
      manifest.files = manifest.files.filter(
        (f: { partition: string }) => f.partition !== partitionOf(today - 3 * DAY),
      );
      writeFileSync(join(partial, 'manifest.json'), JSON.stringify(manifest));
      await expect(runOps(env, 'replay', '--from-archive', partial)).rejects.toMatchObject({
        code: 1,
        stderr: expect.stringContaining(
          `lacks 1 partition(s) that are no longer in the log: ${partitionOf(today - 3 * DAY)}`,
        ),
      });
      expect(await generations()).toBe(count); // nothing was built
      expect((await runOps(env, 'log', 'archive', '--help')).stdout).toContain('--to <dir>');
      expect((await runOps(env, 'replay', '--help')).stdout).toContain('--from-archive <dir>');
    } finally {
      rmSync(corrupt, { recursive: true, force: true });
      rmSync(partial, { recursive: true, force: true });
    }
  });

  it('archives to LOG_ARCHIVE_DIR before retention drops a partition', async () => {
    const retainDir = mkdtempSync(join(tmpdir(), 'psp-archive-retain-'));
    const retain = isolatedSettings('archretain', { LOG_RETAIN_DAYS: '2', LOG_ARCHIVE_DIR: retainDir });
    const other = await openDatabase(retain);
    try {
      await ensureLogPartitions(other, { widthDays: 1, aheadDays: 3 }, { from: today - 4 * DAY });
      for (const d of days) await appendAt(other, d.rows, d.recordedAt);
      await projectAll(new Projection(other, 1, null, 1000));
      const writer = new LogMaintenance(other, retain);
      await writer.tick();
      const gone = (await readLogPartitions(other)).filter((p) => p.table === 'dropped');
      expect(gone.map((p) => [p.name, p.state])).toEqual([
        [partitionOf(today - 4 * DAY), 'archived'],
        [partitionOf(today - 3 * DAY), 'archived'],
      ]);
      expect((await readManifest(retainDir)).files.map((f) => [f.partition, f.rows])).toEqual(
        gone.map((p) => [p.name, 1200]),
      );
      await writer.onApplicationShutdown();
    } finally {
      await other.destroy();
      await dropIsolated(retain);
      rmSync(retainDir, { recursive: true, force: true });
    }
  });
});

function at(connectionId: string): { orgId: string; connectionId: string } {
  return { orgId: 'org_1', connectionId };
}

function src(offset: number): SourcedEvent['source'] {
  return { topic: 'psp.calls', partition: 0, offset: String(offset) };
}
