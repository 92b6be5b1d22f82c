import { ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  ArchiveManifest,
  COMPACTED,
  COMPACTING,
  EventToAppend,
  ensureLogPartitions,
  readLogPartitions,
  readManifest,
  readSummarySet,
} from '@psp/storage';
import { appendAt, DAY } from '../test/support/log-history';
import { wireEnvelope } from '@psp/domain/testing/events';
import { mixedEvents } from '../test/support/seed';
import { expectedConnections, WireEvent } from './expected-model';
import type { Scenario } from './scenarios';
import type { ChaosStack } from './stack';

/**
 * Faults of the log's history (issue 19, item 6; docs/reliability.md): the process running a
 * compaction (`ops log compact --drop`) or an archive (`ops log archive`) killed with SIGKILL midway,
 * then run again. Before the traffic, each scenario writes a history of HISTORY_DAYS days into the
 * partitions of the days before today (orgs `hist_*`, apart from the traffic's, as if appended then)
 * and waits until the projector has read it. After the kill and the second run, the read model is
 * rebuilt (`ops replay`: from the summaries, or `--from-archive`) while the traffic goes on; the run's
 * reconciliation then compares the traffic's orgs with the oracle, and `verify` the history's orgs
 * (every field, health included), the summaries' or the archive's event counts (nothing lost, nothing
 * folded or archived twice) and what the operation left behind (no fold in progress, no partial file).
 */

const ROOT = join(__dirname, '..');
const HISTORY_DAYS = 3;
const PER_DAY = 20_000;
const HISTORY_ORGS = 3;
const BUSY = /another compaction, archive or drop of the event log is running/;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const todayStart = () => Math.floor(Date.now() / DAY) * DAY;
const isoDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** The history: the same events every run (fixed seed), its orgs renamed apart from the traffic's. */
function historyEvents(): EventToAppend[] {
  const events = mixedEvents({
    orgs: HISTORY_ORGS,
    connections: 25,
    events: Math.ceil(HISTORY_DAYS * PER_DAY * 1.02),
    seed: 19,
    start: todayStart() - (HISTORY_DAYS + 1) * DAY,
  })
    // mixedEvents deletes about 1% of events' connections: over 60,000 events, every connection (a
    // deletion wins as the newest register); keep the deletions of one connection per org only.
    .filter((e) => e.type !== 'connection.deleted' || e.connectionId === 'conn.0:x')
    .slice(0, HISTORY_DAYS * PER_DAY)
    .map((e) => ({ ...e, orgId: e.orgId.replace('org_', 'hist_') }));
  const versions = new Map<string, number>();
  return events.map((event, i) => {
    const key = `${event.orgId}:${event.connectionId}`;
    versions.set(key, (versions.get(key) ?? 0) + 1);
    return { event, streamVersion: versions.get(key)!, source: { topic: 'history', partition: 0, offset: String(i) } };
  });
}

function wire(rows: EventToAppend[]): WireEvent[] {
  return rows.map(({ event }) => wireEnvelope(event));
}

/** Writes the history into the partitions of the HISTORY_DAYS days before today; waits until it is projected. */
async function writeHistory(stack: ChaosStack, rows: EventToAppend[]): Promise<void> {
  const today = todayStart();
  await ensureLogPartitions(stack.db, { widthDays: 1, aheadDays: 3 }, { from: today - HISTORY_DAYS * DAY });
  for (let d = 0; d < HISTORY_DAYS; d++) {
    const day = rows.slice(d * PER_DAY, (d + 1) * PER_DAY);
    for (let i = 0; i < day.length; i += 5000)
      await appendAt(stack.db, day.slice(i, i + 5000), today - (HISTORY_DAYS - d) * DAY + 12 * 3600_000);
  }
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const ready = await fetch(`${stack.apiUrl}/readyz`)
      .then((r) => r.json() as Promise<{ projection?: { lag_events: number } }>)
      .catch(() => null);
    if (ready?.projection?.lag_events === 0) return;
    await sleep(200);
  }
  throw new Error('the projector did not read the history within 120 s');
}

/** The ops command line (compiled after `npm run build`, else from source) in its own process. */
function spawnOps(stack: ChaosStack, args: string[], output: string[]): ChildProcess {
  const compiled = join(ROOT, 'dist/apps/ops/src/main.js');
  const entry = existsSync(compiled)
    ? ['-r', join(ROOT, 'scripts/register-paths.js'), compiled]
    : ['-r', 'ts-node/register/transpile-only', '-r', 'tsconfig-paths/register', join(ROOT, 'apps/ops/src/main.ts')];
  const child = spawn(process.execPath, [...entry, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...stack.env, CI: '1', TS_NODE_PROJECT: join(ROOT, 'tsconfig.json') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
  return child;
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/**
 * Runs an ops command to its end; while the killed run's session still holds the log-maintenance
 * lock (its backend has not noticed the client is gone), tries again, for up to 30 s.
 */
async function runOps(stack: ChaosStack, args: string[], notes: string[]): Promise<boolean> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const output: string[] = [];
    const code = await exited(spawnOps(stack, args, output));
    if (code === 0) return true;
    const text = output.join('');
    if (BUSY.test(text) && Date.now() < deadline) {
      await sleep(500);
      continue;
    }
    notes.push(`FAILED: ops ${args.join(' ')} exited with ${code}: ${text.trim().split('\n').slice(-3).join(' | ')}`);
    return false;
  }
}

/** SIGKILLs `child` as soon as `midway()` says so; false when the child ended first. */
async function killMidway(child: ChildProcess, midway: () => Promise<boolean>): Promise<boolean> {
  while (child.exitCode === null && child.signalCode === null) {
    if (await midway().catch(() => false)) {
      child.kill('SIGKILL');
      await exited(child);
      return true;
    }
    await sleep(5);
  }
  return false;
}

/** The history's orgs through the API against the oracle, every field (health included). */
async function checkHistoryOrgs(stack: ChaosStack, history: EventToAppend[], notes: string[]): Promise<void> {
  // The service's stream time is the traffic's (now): a marker at now puts the oracle's there too
  // (it lists nothing: no connection.configured).
  const marker: WireEvent = {
    event_id: 'stream-time-marker',
    type: 'psp.call.completed',
    schema_version: 1,
    org_id: 'marker',
    connection_id: 'marker',
    occurred_at: new Date().toISOString(),
    data: { outcome: 'success', latency_ms: 1 },
  };
  const expected = expectedConnections([...wire(history), marker]);
  const orgs = [...new Set(history.map((r) => r.event.orgId))];
  const keys = await stack.keysFor(orgs);
  let mismatches = 0;
  let listed = 0;
  let calls = 0;
  for (const org of orgs) {
    const res = await stack.get('/v1/connections?limit=200', org, keys.get(org)!);
    const got = new Map(
      (JSON.parse(res.body) as { connections: Record<string, unknown>[] }).connections.map((c) => [
        `${org}/${c.id}`,
        c,
      ]),
    );
    listed += got.size;
    for (const [k, e] of expected) {
      if (!k.startsWith(`${org}/`)) continue;
      const { org: _org, ...fields } = e;
      const c = got.get(k);
      calls += Number(c?.total_calls ?? 0);
      if (!c || Object.entries(fields).some(([f, v]) => JSON.stringify(c[f]) !== JSON.stringify(v))) mismatches++;
      got.delete(k);
    }
    mismatches += got.size;
  }
  notes.push(
    `history: ${history.length} events over ${HISTORY_DAYS} partitions, ${listed} connections of the hist_* orgs listed after the replay, ${calls} calls, ${mismatches} differing from the oracle`,
  );
  if (mismatches > 0 || listed === 0)
    notes.push(`FAILED: ${mismatches} connection(s) of the history differ from the oracle (${listed} listed)`);
}

async function knownIds(stack: ChaosStack, history: EventToAppend[]): Promise<number> {
  const [{ n }]: { n: number }[] = await stack.db.query(
    `SELECT count(*)::int AS n FROM event_log_ids WHERE event_id = ANY($1::text[])`,
    [history.map((r) => r.event.eventId)],
  );
  return n;
}

/**
 * kill -9 of `ops log compact --drop` while it folds the second partition (the first already swapped
 * in and detached), then the same command again: it resumes the fold (or starts it afresh) and
 * finishes. The summaries must then hold every history event exactly once, the partitions be
 * compacted and dropped, no fold left, every event id still known (a late duplicate is refused);
 * `ops replay` from the summaries must answer as the oracle, for the traffic and the history.
 */
function killCompaction(): Scenario {
  let history: EventToAppend[] = [];
  return {
    name: 'kill -9 log compaction',
    setup: async (stack) => {
      history = historyEvents();
      await writeHistory(stack, history);
    },
    fault: async (stack, notes) => {
      const before = isoDay(todayStart());
      const first = spawnOps(stack, ['log', 'compact', '--before', before, '--drop'], []);
      let atKill = '';
      const killed = await killMidway(first, async () => {
        const [compacted, compacting] = await Promise.all([
          readSummarySet(stack.db, COMPACTED),
          readSummarySet(stack.db, COMPACTING),
        ]);
        const midway = (compacted?.partitions.length ?? 0) >= 1 && (compacting?.events ?? 0) > 0;
        if (midway)
          atKill = `${compacted!.partitions.length} partition(s) compacted (${compacted!.events} events), ${compacting!.events} events of ${compacting!.folding} folded`;
        return midway;
      });
      if (!killed) notes.push('FAILED: the compaction ended before it could be killed midway');
      const compacting = await readSummarySet(stack.db, COMPACTING);
      notes.push(
        `compaction killed with ${atKill || '(nothing)'}; after the kill: fold of ${compacting?.folding ?? 'nothing'} kept at ${compacting?.events ?? 0} events`,
      );
      if (!(await runOps(stack, ['log', 'compact', '--before', before, '--drop'], notes))) return;
      const summaries = await readSummarySet(stack.db, COMPACTED);
      const left = await readSummarySet(stack.db, COMPACTING);
      const parts = (await readLogPartitions(stack.db)).filter(
        (p) => p.to <= todayStart() && p.from >= todayStart() - HISTORY_DAYS * DAY,
      );
      const dropped = parts.filter((p) => p.state === 'compacted' && p.table === 'dropped').length;
      const ids = await knownIds(stack, history);
      notes.push(
        `after the second run: summaries of ${summaries?.partitions.length ?? 0} partitions hold ${summaries?.events ?? 0} events (${history.length} written), ${dropped}/${HISTORY_DAYS} partitions compacted and dropped, fold left: ${left ? left.folding : 'none'}, event ids known ${ids}/${history.length}`,
      );
      if (summaries?.events !== history.length || summaries.partitions.length !== HISTORY_DAYS)
        notes.push(`FAILED: the summaries hold ${summaries?.events ?? 0} events, ${history.length} were compacted`);
      if (left !== null || dropped !== HISTORY_DAYS || ids !== history.length)
        notes.push(
          'FAILED: the compaction did not finish cleanly (a fold left, a partition not dropped, or ids forgotten)',
        );
      await runOps(stack, ['replay'], notes);
    },
    verify: async (stack, notes) => checkHistoryOrgs(stack, history, notes),
  };
}

/** Every file of the archive against the manifest and the history: sha256, bytes, rows, ids once. */
function checkArchive(dir: string, manifest: ArchiveManifest, history: EventToAppend[], notes: string[]): void {
  const ids = new Map<string, number>();
  let broken = 0;
  for (const f of manifest.files) {
    const bytes = readFileSync(join(dir, f.file));
    const sha = createHash('sha256').update(bytes).digest('hex');
    const lines = gunzipSync(bytes)
      .toString('utf8')
      .split('\n')
      .filter((l) => l !== '');
    const header = JSON.parse(lines[0]) as { partition: string; rows: number };
    if (
      sha !== f.sha256 ||
      bytes.length !== f.bytes ||
      header.partition !== f.partition ||
      header.rows !== f.rows ||
      lines.length - 1 !== f.rows
    )
      broken++;
    for (const l of lines.slice(1)) {
      const id = (JSON.parse(l) as { event_id: string }).event_id;
      ids.set(id, (ids.get(id) ?? 0) + 1);
    }
  }
  const wanted = new Set(history.map((r) => r.event.eventId));
  const missing = [...wanted].filter((id) => !ids.has(id)).length;
  const twice = [...ids.values()].filter((n) => n > 1).length + [...ids.keys()].filter((id) => !wanted.has(id)).length;
  const partial = readdirSync(dir).filter((f) => f.endsWith('.partial'));
  notes.push(
    `archive: ${manifest.files.length} file(s) in the manifest, ${ids.size} events archived (${missing} missing, ${twice} twice or foreign), ${broken} file(s) not matching the manifest, partial files left: ${partial.length}`,
  );
  if (manifest.files.length !== HISTORY_DAYS || new Set(manifest.files.map((f) => f.partition)).size !== HISTORY_DAYS)
    notes.push(`FAILED: the manifest lists ${manifest.files.length} file(s), ${HISTORY_DAYS} partitions were archived`);
  if (missing > 0 || twice > 0 || broken > 0 || partial.length > 0)
    notes.push(
      'FAILED: the archive lost or repeated events, a file does not match its manifest entry, or a partial file was left',
    );
}

/**
 * kill -9 of `ops log archive` while it writes a file (`….partial`), then the same command again:
 * each partition must be in the archive exactly once (every file matching the manifest, every event
 * once, no partial file left, every archived partition recorded as such); then the partitions are
 * compacted and dropped, and `ops replay --from-archive` must answer as the oracle.
 */
function killArchive(): Scenario {
  let history: EventToAppend[] = [];
  let dir = '';
  return {
    name: 'kill -9 log archive',
    setup: async (stack) => {
      history = historyEvents();
      await writeHistory(stack, history);
    },
    fault: async (stack, notes) => {
      dir = mkdtempSync(join(tmpdir(), 'psp-chaos-archive-'));
      const before = isoDay(todayStart());
      const first = spawnOps(stack, ['log', 'archive', '--before', before, '--to', dir], []);
      let atKill = '';
      const killed = await killMidway(first, async () => {
        const partial = readdirSync(dir).filter((f) => f.endsWith('.ndjson.gz.partial'));
        const midway = partial.length > 0 && statSync(join(dir, partial[0])).size > 0;
        if (midway)
          atKill = `${partial[0]} being written, ${readdirSync(dir).filter((f) => f.endsWith('.ndjson.gz')).length} file(s) complete`;
        return midway;
      });
      if (!killed) notes.push('FAILED: the archive ended before it could be killed midway');
      notes.push(
        `archive killed with ${atKill || '(nothing)'}; manifest then listed ${(await readManifest(dir)).files.length} file(s)`,
      );
      if (!(await runOps(stack, ['log', 'archive', '--before', before, '--to', dir], notes))) return;
      const manifest = await readManifest(dir, { mustExist: true });
      checkArchive(dir, manifest, history, notes);
      const recorded = (await readLogPartitions(stack.db)).filter((p) => p.archiveFile !== null).length;
      if (recorded !== HISTORY_DAYS)
        notes.push(
          `FAILED: ${recorded} partition(s) recorded as archived in the log, ${HISTORY_DAYS} are in the archive`,
        );
      if (!(await runOps(stack, ['log', 'compact', '--before', before, '--drop'], notes))) return;
      await runOps(stack, ['replay', '--from-archive', dir], notes);
    },
    verify: async (stack, notes) => {
      await checkHistoryOrgs(stack, history, notes);
      if (dir !== '') rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const HISTORY_FAULTS: Scenario[] = [killCompaction(), killArchive()];
