/**
 * The freshness probes (bench:freshness, bench:scale): while producing `rate` psp.call.completed
 * events/s, every 100 ms a probe is produced, a failed connection.validation.completed of connection
 * `probe` of the probe org whose error text names it (`probe-<tag>-<n>`); a poller reads
 * GET /v1/connections/probe every 5 ms, and a probe is visible when the API shows it or a later one.
 * Every event's occurred_at is the wall clock when it is built, so stream time advances in real time
 * and crosses minute boundaries as the wall clock does.
 */
import { randomUUID } from 'node:crypto';
import type { Producer } from 'kafkajs';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the probes need of a running stack (chaos/stack.ts's ChaosStack has it; so does bench:scale's). */
export interface ProbeStack {
  producer: Producer;
  settings: { topics: { calls: string; validations: string } };
  apiKey: string;
  get(path: string, org: string, key: string): Promise<{ status: number; body: string }>;
}

/** One probe: when it was produced (epoch ms, just before the produce call) and when the API first showed it. */
export interface Probe {
  sentAt: number;
  visibleAt: number | null;
}

export interface ProbeRun {
  probes: Probe[];
  /** Load events produced (probes not counted). */
  sent: number;
  /** Wall seconds the load ran. */
  seconds: number;
  startedAt: number;
  endedAt: number;
}

export const PROBE_ORG = 'org_0';

/** The value of one event, occurred_at = now. */
export function envelope(type: string, orgId: string, connectionId: string, data: object): string {
  return JSON.stringify({
    event_id: randomUUID(),
    type,
    schema_version: 1,
    org_id: orgId,
    connection_id: connectionId,
    occurred_at: new Date().toISOString(),
    data,
  });
}

/** ⌊p/100 · n⌋-th of the sorted values (so with 100 values p99 is the maximum). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Runs the load and the probes for `seconds`. `traffic(n)` names the connection of the n-th load event
 * (by default connection `c<n mod connections>` of the probe org, as bench:freshness always did).
 */
export async function runProbes(
  stack: ProbeStack,
  o: {
    seconds: number;
    rate: number;
    connections: number;
    label: string;
    tag: string;
    traffic?: (n: number) => { org: string; conn: string };
    /** Progress lines (stderr by default). */
    report?: (line: string) => void;
    /** How long after the load the poller still waits for the last probe (default 30 s). */
    settleMs?: number;
    /** Called when the load has ended, before waiting for the last probes. */
    onLoadEnd?: () => Promise<void>;
  },
): Promise<ProbeRun> {
  const traffic = o.traffic ?? ((n: number) => ({ org: PROBE_ORG, conn: `c${n % o.connections}` }));
  const report = o.report ?? ((line: string) => process.stderr.write(`${line}\n`));
  const sentAt = new Map<number, number>();
  const visibleAt = new Map<number, number>();
  let probe = 0;
  let newestSeen = -1;
  let running = true;
  const poller = (async () => {
    while (running || newestSeen < probe - 1) {
      const res = await stack.get('/v1/connections/probe', PROBE_ORG, stack.apiKey).catch(() => null);
      if (res?.status === 200) {
        const m = new RegExp(`probe-${o.tag}-(\\d+)`).exec(res.body);
        const seen = m ? Number(m[1]) : -1;
        const now = Date.now();
        for (let i = newestSeen + 1; i <= seen; i++) visibleAt.set(i, now);
        newestSeen = Math.max(newestSeen, seen);
      }
      if (!running && Date.now() - (sentAt.get(probe - 1) ?? 0) > (o.settleMs ?? 30000)) break;
      await sleep(5);
    }
  })();
  const started = Date.now();
  let sent = 0;
  let nextProbe = started;
  let lastReport = started;
  while (Date.now() - started < o.seconds * 1000) {
    const tick = Date.now();
    const due = Math.floor(((tick - started) / 1000) * o.rate) - sent;
    const messages = [];
    for (let i = 0; i < due; i++) {
      const n = sent + i;
      const { org, conn } = traffic(n);
      messages.push({
        key: `${org}:${conn}`,
        value: envelope('psp.call.completed', org, conn, {
          outcome: n % 20 === 0 ? 'failure' : 'success',
          latency_ms: n % 900,
        }),
      });
    }
    if (messages.length > 0) await stack.producer.send({ topic: stack.settings.topics.calls, acks: 1, messages });
    sent += due;
    if (tick >= nextProbe) {
      const id = probe++;
      sentAt.set(id, Date.now());
      await stack.producer.send({
        topic: stack.settings.topics.validations,
        acks: 1,
        messages: [
          {
            key: `${PROBE_ORG}:probe`,
            value: envelope('connection.validation.completed', PROBE_ORG, 'probe', {
              result: 'failure',
              error: `probe-${o.tag}-${id}`,
            }),
          },
        ],
      });
      nextProbe += 100;
    }
    if (tick - lastReport >= 5000) {
      lastReport = tick;
      report(
        `  ${o.label}: ${((tick - started) / 1000).toFixed(0)}/${o.seconds} s, ${sent} events sent (${Math.round(sent / ((tick - started) / 1000))}/s), ${visibleAt.size}/${probe} probes visible`,
      );
    }
    await sleep(Math.max(0, 20 - (Date.now() - tick)));
  }
  const endedAt = Date.now();
  if (o.onLoadEnd) await o.onLoadEnd();
  running = false;
  await poller;
  const probes = [...sentAt].map(([id, at]) => ({ sentAt: at, visibleAt: visibleAt.get(id) ?? null }));
  const missing = probes.filter((p) => p.visibleAt === null).length;
  if (missing > 0) report(`  ${o.label}: ${missing} probe(s) never became visible`);
  return { probes, sent, seconds: (endedAt - started) / 1000, startedAt: started, endedAt };
}

/** The latencies (ms) of the probes that became visible, sorted. */
export function latencies(run: ProbeRun): number[] {
  return run.probes
    .filter((p) => p.visibleAt !== null)
    .map((p) => p.visibleAt! - p.sentAt)
    .sort((a, b) => a - b);
}

/** bench:freshness's measurement: the sorted latencies of one run of probes over `connections` connections of the probe org. */
export async function measure(
  stack: ProbeStack,
  seconds: number,
  rate: number,
  connections: number,
  label: string,
  tag: string,
): Promise<number[]> {
  return latencies(await runProbes(stack, { seconds, rate, connections, label, tag }));
}
