import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { expectedConnections, WireEvent } from './expected-model';
import { HISTORY_FAULTS } from './history-faults';
import { auditHealthChanges, HealthAudit, healthChangesWritten, healthOutboxSize } from './health-audit';
import { poisonStorm } from './poison-storm';
import { PROJECTOR_FAULTS } from './projector-faults';
import { ChaosStack } from './stack';
import { DEFAULT_TRAFFIC, generateTraffic, Sent, TrafficOptions } from './traffic';

const ROOT = join(__dirname, '..');

/** One reconciled scenario: the row of docs/reliability.md's table. */
export interface ScenarioRow {
  scenario: string;
  produced: number;
  applied: number;
  dlq: number;
  duplicatesIgnored: number;
  lost: number;
  countedTwice: number;
  mismatches: number;
  /** Broken rules of the health-change topic (docs/contract.md 2.5), see chaos/health-audit.ts. */
  healthBreaks: number;
  recoverySeconds: number;
  notes: string[];
}

/** What a scenario's own steps share with the run: its extra messages, the orgs' API keys. */
export interface ScenarioRun {
  /**
   * Messages the scenario produces itself, besides the generated traffic (push each once it is
   * produced): reconciled with the traffic (good ones in the oracle, bad ones counted in the DLQ).
   */
  extra: Sent[];
  /** An API key for each org of the traffic. */
  keys: Map<string, string>;
  /** The health-change topic as reconciled (set before `verify` runs). */
  health?: HealthAudit;
}

/** A message read back from the run's DLQ. */
export interface DlqCopy {
  /** `dlq-topic/dlq-partition/dlq-offset`: where the original was consumed. */
  source: string;
  reason: string;
  detail: string;
  key: string | null;
  value: Buffer | null;
}

export interface Scenario {
  name: string;
  traffic?: Partial<TrafficOptions>;
  /** Pause between the traffic's 20 chunks (100 ms unless said): longer keeps traffic flowing through a long fault. */
  chunkPauseMs?: number;
  /** Prepares the stack once it is up, before any traffic. */
  setup?: (stack: ChaosStack) => Promise<void>;
  /** Disturbs the stack while traffic flows; resolves when the disturbance is over. */
  fault?: (stack: ChaosStack, notes: string[], run: ScenarioRun) => Promise<void>;
  /** Checks of its own after the reconciliation (add a note starting with FAILED when one breaks). */
  verify?: (stack: ChaosStack, notes: string[], run: ScenarioRun, dlq: DlqCopy[]) => Promise<void>;
  /** Restarts a machine service (Kafka, PostgreSQL, Redis): not for a shared machine's test suite. */
  disruptive?: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sh(command: string): void {
  execFileSync('bash', ['-c', command], { cwd: ROOT, stdio: 'ignore', timeout: 180_000 });
}

/** Like sh(), without blocking this process: the traffic goes on while the command runs. */
function shInBackground(command: string): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile('bash', ['-c', command], { cwd: ROOT, timeout: 180_000 }, (error) => (error ? reject(error) : resolve())),
  );
}

export const SCENARIOS: Scenario[] = [
  { name: 'baseline (no fault)' },
  {
    name: 'kill -9 writer',
    fault: async (stack) => {
      await stack.kill('writer');
      await sleep(1000);
      stack.spawn('writer');
    },
  },
  killProjector(),
  {
    name: 'kill -9 API',
    fault: async (stack) => {
      await stack.kill('api');
      await sleep(500);
      stack.spawn('api');
      await stack.waitForApi(60000);
    },
  },
  {
    name: 'two writers, rebalance',
    fault: async (stack) => {
      const first = stack.processes.get('writer')![0];
      stack.spawn('writer');
      await sleep(5000);
      await stack.kill('writer', 'SIGTERM', first);
    },
  },
  { name: 'bad-message storm (10%)', traffic: { badFraction: 0.1 } },
  poisonStorm,
  { name: 'every event twice', traffic: { duplicateFraction: 1 } },
  { name: 'shuffled across topics', traffic: { shuffleTopics: true, duplicateFraction: 0.2 } },
  ...PROJECTOR_FAULTS,
  ...HISTORY_FAULTS,
  {
    name: 'Kafka broker restart',
    disruptive: true,
    fault: async () => {
      sh('bash scripts/kafka-stop.sh && bash scripts/kafka-start.sh');
    },
  },
  {
    name: 'PostgreSQL restart',
    disruptive: true,
    fault: async () => {
      // While the traffic goes on, so that appends are in flight when the server goes away.
      await shInBackground('pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart');
    },
  },
  {
    name: 'Redis down 30 s',
    disruptive: true,
    fault: async (stack, notes) => {
      sh('redis-cli shutdown nosave || true');
      const until = Date.now() + 30_000;
      let answered = 0;
      let failed = 0;
      let readyReportsRedis = 0;
      while (Date.now() < until) {
        const res = await stack.get('/v1/connections', 'org_0', stack.apiKey).catch(() => ({ status: 0, body: '' }));
        if (res.status === 200) answered += 1;
        else failed += 1;
        const ready = await fetch(`${stack.apiUrl}/readyz`)
          .then(async (r) => ({ status: r.status, body: await r.text() }))
          .catch(() => null);
        if (ready && ready.status === 503 && ready.body.includes('redis')) readyReportsRedis += 1;
        await sleep(500);
      }
      sh(
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log',
      );
      notes.push(
        `while Redis was down the API answered ${answered}/${answered + failed} requests; /readyz named redis ${readyReportsRedis} times`,
      );
      if (failed > 0 || readyReportsRedis === 0)
        notes.push('FAILED: the API did not keep answering from PostgreSQL, or /readyz did not report Redis');
    },
  },
];

/**
 * kill -9 of the projector, which also relays the health changes from its outbox to the health topic:
 * the default traffic's technical failures and failed validations change statuses all along, so the
 * relay dies with changes on the topic, in the outbox and still to come. The kill waits until the
 * relay has produced some (and, for up to 3 s, until others wait in the outbox); the scenario fails
 * unless changes were written both before and after it.
 */
function killProjector(): Scenario {
  let atKill: { written: number; waiting: number } | null = null;
  return {
    name: 'kill -9 projector',
    fault: async (stack) => {
      // Strike once the relay is at work: changes written and some of them relayed, preferably while
      // others wait in the outbox (looked for during 3 s), at most 30 s after the fault began.
      const began = Date.now();
      while (Date.now() - began < 30_000) {
        const written = await healthChangesWritten(stack).catch(() => 0);
        const waiting = await healthOutboxSize(stack).catch(() => 0);
        if (written > waiting && (waiting > 0 || Date.now() - began > 3000)) break;
        await sleep(5);
      }
      atKill = {
        written: await healthChangesWritten(stack).catch(() => -1),
        waiting: await healthOutboxSize(stack).catch(() => -1),
      };
      await stack.kill('projector');
      await sleep(1000);
      stack.spawn('projector');
    },
    verify: async (_stack, notes, run) => {
      const written = run.health?.distinct ?? 0;
      const before = atKill?.written ?? -1;
      notes.push(
        `health changes: ${before} written before the kill of the relaying projector (${atKill?.waiting ?? -1} of them not yet relayed), ${written - before} after it`,
      );
      if (written === 0 || before <= 0 || written - before <= 0)
        notes.push(
          `FAILED: health changes written before the kill ${before}, after it ${written - before}: the scenario did not kill the relay while changes happen`,
        );
      atKill = null;
    },
  };
}

async function dlqDistinct(
  stack: ChaosStack,
  timeoutMs: number,
  atLeast: number,
): Promise<{ distinct: number; raw: number; copies: DlqCopy[] }> {
  const admin = stack.kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(stack.settings.topics.dlq);
  await admin.disconnect();
  const high = offsets.reduce((n, p) => n + Number(p.high), 0);
  if (high === 0) return { distinct: 0, raw: 0, copies: [] };
  const consumer = stack.kafka.consumer({ groupId: `${stack.settings.writerGroupId}.dlq-audit.${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic: stack.settings.topics.dlq, fromBeginning: true });
  const seen = new Set<string>();
  const copies: DlqCopy[] = [];
  let raw = 0;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    void consumer.run({
      eachMessage: async ({ message }) => {
        raw += 1;
        const h = (n: string) => String(message.headers?.[n] ?? '');
        const source = `${h('dlq-topic')}/${h('dlq-partition')}/${h('dlq-offset')}`;
        seen.add(source);
        copies.push({
          source,
          reason: h('dlq-reason'),
          detail: h('dlq-detail'),
          key: message.key?.toString() ?? null,
          value: message.value,
        });
        if (raw >= high && seen.size >= atLeast) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  return { distinct: seen.size, raw, copies };
}

/**
 * Runs one scenario on a fresh isolated stack: traffic in 20 chunks, the fault a third of the way
 * in, then waits for the service to settle and reconciles what was produced with the log, the DLQ
 * and the API, against the independent oracle in expected-model.ts.
 */
export async function runScenario(
  scenario: Scenario,
  options: { mode: 'compiled' | 'source'; events: number; log?: (line: string) => void },
): Promise<ScenarioRow> {
  const notes: string[] = [];
  const stack = new ChaosStack(
    scenario.name
      .replace(/[^a-z0-9]/gi, '')
      .slice(0, 12)
      .toLowerCase(),
    options.mode,
  );
  try {
    await stack.start();
    await scenario.setup?.(stack);
    const traffic = generateTraffic(
      { ...DEFAULT_TRAFFIC, ...scenario.traffic, events: options.events },
      stack.settings.topics,
    );
    const orgs = [...new Set(traffic.filter((s) => s.kind === 'good').map((s) => s.event!.org_id))];
    const keys = await stack.keysFor(orgs);
    const run: ScenarioRun = { extra: [], keys };
    const chunks = 20;
    const size = Math.ceil(traffic.length / chunks);
    let fault: Promise<void> = Promise.resolve();
    let faultEnded = 0;
    for (let i = 0; i < chunks; i++) {
      if (i === Math.floor(chunks / 3) && scenario.fault) {
        options.log?.(`  fault: ${scenario.name}`);
        fault = scenario.fault(stack, notes, run).then(() => {
          faultEnded = Date.now();
        });
      }
      await stack.produce(traffic.slice(i * size, (i + 1) * size));
      await sleep(scenario.chunkPauseMs ?? 100);
    }
    await fault;
    const settleFrom = Math.max(Date.now(), faultEnded);
    const sent = [...traffic, ...run.extra];
    const good = sent.filter((s) => s.kind === 'good');
    const bad = sent.filter((s) => s.kind === 'bad').length;
    const expected = expectedConnections(good.map((s) => s.event as WireEvent));
    const goodIds = new Set(good.map((s) => s.event!.event_id));

    // Settle: every good event in the log, the projector caught up, the API answering the oracle.
    let mismatches = Infinity;
    let api = new Map<string, Record<string, unknown>>();
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      const [{ n }] = await stack.db.query(`SELECT count(*)::int AS n FROM event_log`).catch(() => [{ n: -1 }]);
      const ready = await fetch(`${stack.apiUrl}/readyz`)
        .then((r) => r.json() as Promise<{ projection?: { lag_events: number } }>)
        .catch(() => null);
      if (n >= goodIds.size && ready?.projection?.lag_events === 0) {
        api = new Map();
        for (const org of orgs) {
          const res = await stack.get('/v1/connections?limit=200', org, keys.get(org)!).catch(() => null);
          if (!res || res.status !== 200) continue;
          for (const c of (JSON.parse(res.body) as { connections: Record<string, unknown>[] }).connections)
            api.set(`${org}/${c.id}`, c);
        }
        mismatches = 0;
        for (const [k, e] of expected) {
          const got = api.get(k);
          const { org: _org, ...fields } = e;
          if (!got || Object.entries(fields).some(([f, v]) => JSON.stringify(got[f]) !== JSON.stringify(v)))
            mismatches += 1;
        }
        for (const k of api.keys()) if (!expected.has(k)) mismatches += 1;
        if (mismatches === 0) break;
      }
      await sleep(500);
    }
    const recoverySeconds = (Date.now() - settleFrom) / 1000;
    const logged: { event_id: string }[] = await stack.db.query(`SELECT event_id FROM event_log`);
    const loggedIds = new Set(logged.map((r) => r.event_id));
    const dlq = await dlqDistinct(stack, 20000, bad);
    if (dlq.raw > dlq.distinct)
      notes.push(`${dlq.raw - dlq.distinct} DLQ message(s) produced twice (same source offset) after a crash`);
    let lost = [...goodIds].filter((id) => !loggedIds.has(id)).length + Math.max(0, bad - dlq.distinct);
    let countedTwice = logged.length - loggedIds.size + [...loggedIds].filter((id) => !goodIds.has(id)).length;
    for (const [k, e] of expected) {
      const got = api.get(k);
      if (!got) continue;
      const diff = (got.total_calls as number) - (e.total_calls as number);
      if (diff > 0) countedTwice += diff;
      if (diff < 0) lost += -diff;
    }
    if (mismatches > 0) notes.push(`${mismatches} connection(s) differ from the contract's answer`);
    // The health-change topic (docs/contract.md 2.5): every chain whole after de-duplication, each
    // listed connection's latest change the status the API serves.
    const served = new Map([...api].map(([k, c]) => [k, String(c.health_status)]));
    run.health = await auditHealthChanges(stack, served);
    notes.push(
      `health topic: ${run.health.distinct} distinct change(s) over ${run.health.chains} connection(s), ${run.health.duplicates} duplicate(s) by event_id (re-sends; a re-send that is not byte-identical is a break)`,
    );
    if (run.health.breaks.length > 0)
      notes.push(
        `FAILED: ${run.health.breaks.length} broken health-change rule(s): ${run.health.breaks.slice(0, 5).join('; ')}${run.health.breaks.length > 5 ? '; …' : ''}`,
      );
    const writerLog = stack.output.filter((l) => l.startsWith('[writer')).join('');
    const failedAppends = writerLog.match(/append to the event log failed/g)?.length ?? 0;
    if (failedAppends > 0)
      notes.push(
        `writer: ${failedAppends} failed append(s), consumption restarted from the committed offsets ${writerLog.match(/consumption restarted from the committed offsets/g)?.length ?? 0} time(s)`,
      );
    const crashes = writerLog.match(/Kafka consumer of group \S+ crashed \([^)]*\)/g) ?? [];
    if (crashes.length > 0)
      notes.push(`writer: ${crashes.length} Kafka consumer crash(es): ${crashes.slice(0, 3).join('; ')}`);
    await scenario.verify?.(stack, notes, run, dlq.copies);
    const row: ScenarioRow = {
      scenario: scenario.name,
      produced: sent.length,
      applied: logged.length,
      dlq: dlq.distinct,
      duplicatesIgnored: sent.length - logged.length - dlq.distinct,
      lost,
      countedTwice,
      mismatches,
      healthBreaks: run.health.breaks.length,
      recoverySeconds: Math.round(recoverySeconds * 10) / 10,
      notes,
    };
    // A failed scenario shows what the processes said last (the writer's, projector's and API's logs).
    if (!passed(row)) options.log?.(`  last output of the processes:\n${stack.output.slice(-40).join('')}`);
    return row;
  } finally {
    await stack.stop();
  }
}

export function passed(row: ScenarioRow): boolean {
  return (
    row.lost === 0 &&
    row.countedTwice === 0 &&
    row.mismatches === 0 &&
    row.healthBreaks === 0 &&
    !row.notes.some((n) => n.startsWith('FAILED'))
  );
}

export const TABLE_HEADER =
  '| scenario | produced | applied | DLQ | duplicates ignored | lost | counted twice | API mismatches | health-chain breaks | s to recover | result |\n|---|---|---|---|---|---|---|---|---|---|---|';

export function tableRow(r: ScenarioRow): string {
  return `| ${r.scenario} | ${r.produced} | ${r.applied} | ${r.dlq} | ${r.duplicatesIgnored} | ${r.lost} | ${r.countedTwice} | ${r.mismatches} | ${r.healthBreaks} | ${r.recoverySeconds} | ${passed(r) ? 'pass' : 'FAIL'} |`;
}
