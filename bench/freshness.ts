/**
 * npm run bench:freshness [-- --rate 2000] [--seconds 60] [--connections 200]
 *
 * Produce-to-visible latency: how long after an event is produced the API shows it. On an isolated
 * stack of the COMPILED writer, projector and API (chaos/stack.ts), it sends `rate` call events/s
 * over `connections` connections for `seconds`, and every 100 ms a probe: a failed validation of a
 * probe connection whose error text names the probe. A poller reads the probe connection from the
 * API every 5 ms; a probe is visible when the API shows it or a later one. Baseline, same run: the
 * same probes with no other traffic for 10 s. Prints p50/p90/p99/max for both and the projector lag.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ChaosStack } from '../chaos/stack';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function envelope(type: string, connectionId: string, data: object): string {
  return JSON.stringify({
    event_id: randomUUID(),
    type,
    schema_version: 1,
    org_id: 'org_0',
    connection_id: connectionId,
    occurred_at: new Date().toISOString(),
    data,
  });
}

async function measure(
  stack: ChaosStack,
  seconds: number,
  rate: number,
  connections: number,
  label: string,
  tag: string,
): Promise<number[]> {
  const sentAt = new Map<number, number>();
  const visibleAt = new Map<number, number>();
  let probe = 0;
  let newestSeen = -1;
  let running = true;
  const poller = (async () => {
    while (running || newestSeen < probe - 1) {
      const res = await stack.get('/v1/connections/probe', 'org_0', stack.apiKey).catch(() => null);
      if (res?.status === 200) {
        const m = new RegExp(`probe-${tag}-(\\d+)`).exec(res.body);
        const seen = m ? Number(m[1]) : -1;
        const now = Date.now();
        for (let i = newestSeen + 1; i <= seen; i++) visibleAt.set(i, now);
        newestSeen = Math.max(newestSeen, seen);
      }
      if (!running && Date.now() - (sentAt.get(probe - 1) ?? 0) > 30000) break;
      await sleep(5);
    }
  })();
  const started = Date.now();
  let sent = 0;
  let nextProbe = started;
  let lastReport = started;
  while (Date.now() - started < seconds * 1000) {
    const tick = Date.now();
    const due = Math.floor(((tick - started) / 1000) * rate) - sent;
    const messages = [];
    for (let i = 0; i < due; i++) {
      const n = sent + i;
      messages.push({
        key: `org_0:c${n % connections}`,
        value: envelope('psp.call.completed', `c${n % connections}`, {
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
            key: 'org_0:probe',
            value: envelope('connection.validation.completed', 'probe', {
              result: 'failure',
              error: `probe-${tag}-${id}`,
            }),
          },
        ],
      });
      nextProbe += 100;
    }
    if (tick - lastReport >= 5000) {
      lastReport = tick;
      process.stderr.write(
        `  ${label}: ${((tick - started) / 1000).toFixed(0)}/${seconds} s, ${sent} events sent (${Math.round(sent / ((tick - started) / 1000))}/s), ${visibleAt.size}/${probe} probes visible\n`,
      );
    }
    await sleep(Math.max(0, 20 - (Date.now() - tick)));
  }
  running = false;
  await poller;
  const latencies: number[] = [];
  for (const [id, at] of sentAt) {
    const seen = visibleAt.get(id);
    if (seen !== undefined) latencies.push(seen - at);
  }
  if (latencies.length < sentAt.size)
    process.stderr.write(`  ${label}: ${sentAt.size - latencies.length} probe(s) never became visible\n`);
  return latencies.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { rate: { type: 'string' }, seconds: { type: 'string' }, connections: { type: 'string' } },
  });
  const rate = Number(values.rate ?? 2000);
  const seconds = Number(values.seconds ?? 60);
  const connections = Number(values.connections ?? 200);
  process.stderr.write('building the service...\n');
  execFileSync('npm', ['run', '-s', 'build'], { cwd: join(__dirname, '..'), stdio: 'inherit' });
  const stack = new ChaosStack('fresh', 'compiled', { LOG_LEVEL: 'warn' });
  const stop = async () => {
    await stack.stop();
    process.exit(130);
  };
  process.once('SIGINT', () => void stop());
  try {
    await stack.start();
    await stack.producer.send({
      topic: stack.settings.topics.connections,
      acks: -1,
      messages: [{ key: 'org_0:probe', value: envelope('connection.configured', 'probe', { provider: 'paystack' }) }],
    });
    while ((await stack.get('/v1/connections/probe', 'org_0', stack.apiKey)).status !== 200) await sleep(50);
    const idle = await measure(stack, 10, 0, connections, 'baseline (no traffic)', 'idle');
    const loaded = await measure(stack, seconds, rate, connections, `${rate} events/s`, 'load');
    const lag = await fetch(`${stack.apiUrl}/readyz`).then(
      (r) => r.json() as Promise<{ projection?: { lag_events: number; lag_seconds: number } }>,
    );
    const row = (name: string, l: number[]) =>
      `| ${name} | ${l.length} | ${percentile(l, 50)} | ${percentile(l, 90)} | ${percentile(l, 99)} | ${l[l.length - 1]} |`;
    process.stdout.write(
      [
        '',
        `freshness: produce → visible in GET /v1/connections/{id}, ${connections} connections, probes every 100 ms`,
        '| load | probes | p50 ms | p90 ms | p99 ms | max ms |',
        '|---|---|---|---|---|---|',
        row('baseline: no other traffic', idle),
        row(`${rate} events/s for ${seconds} s`, loaded),
        '',
        `p99 under load / p99 baseline: ${(percentile(loaded, 99) / percentile(idle, 99)).toFixed(2)}; target p99 < 1000 ms: ${percentile(loaded, 99) < 1000 ? 'met' : 'MISSED'}`,
        `projector lag after the run: ${lag.projection?.lag_events} events, ${lag.projection?.lag_seconds} s`,
        '',
      ].join('\n'),
    );
  } finally {
    await stack.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:freshness: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
