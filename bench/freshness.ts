/**
 * npm run bench:freshness [-- --rate 2000] [--seconds 60] [--connections 200]
 *
 * Produce-to-visible latency: how long after an event is produced the API shows it. On an isolated
 * stack of the COMPILED writer, projector and API (chaos/stack.ts), it sends `rate` call events/s
 * over `connections` connections for `seconds`, and every 100 ms a probe: a failed validation of a
 * probe connection whose error text names the probe. A poller reads the probe connection from the
 * API every 5 ms; a probe is visible when the API shows it or a later one. Baseline, same run: the
 * same probes with no other traffic for 10 s. Prints p50/p90/p99/max for both and the projector lag.
 * The probes and the load are in support/freshness-probes.ts (bench:scale uses them too).
 *
 * In both phases, alongside: the health-change probe (support/health-probe.ts), from the produce of
 * the call that flips a connection's health_status to a consumer of the health topic seeing the
 * `connection.health_changed` (the projector's outbox and relay, docs/read-model.md "Health changes").
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ChaosStack } from '../chaos/stack';
import { envelope, measure, percentile, PROBE_ORG } from './support/freshness-probes';
import { flipLatencies, HealthProbe, HealthProbeRun } from './support/health-probe';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
      messages: [
        { key: 'org_0:probe', value: envelope('connection.configured', PROBE_ORG, 'probe', { provider: 'paystack' }) },
      ],
    });
    while ((await stack.get('/v1/connections/probe', 'org_0', stack.apiKey)).status !== 200) await sleep(50);
    const health = await HealthProbe.start(stack, PROBE_ORG, 'health_probe');
    const [idle, idleHealth] = await Promise.all([
      measure(stack, 10, 0, connections, 'baseline (no traffic)', 'idle'),
      health.run(10, 'baseline'),
    ]);
    const [loaded, loadedHealth] = await Promise.all([
      measure(stack, seconds, rate, connections, `${rate} events/s`, 'load'),
      health.run(seconds, `${rate} events/s`),
    ]);
    await health.stop();
    const lag = await fetch(`${stack.apiUrl}/readyz`).then(
      (r) => r.json() as Promise<{ projection?: { lag_events: number; lag_seconds: number } }>,
    );
    const row = (name: string, l: number[]) =>
      `| ${name} | ${l.length} | ${percentile(l, 50)} | ${percentile(l, 90)} | ${percentile(l, 99)} | ${l[l.length - 1]} |`;
    const healthRow = (name: string, r: HealthProbeRun) => {
      const l = flipLatencies(r);
      return `| ${name} | ${r.calls} | ${l.length} | ${r.flips.length - l.length} | ${percentile(l, 50)} | ${percentile(l, 90)} | ${percentile(l, 99)} | ${l[l.length - 1]} | ${r.untimed} |`;
    };
    const loadedFlips = flipLatencies(loadedHealth);
    const healthMet =
      loadedFlips.length > 0 && loadedFlips.length === loadedHealth.flips.length && percentile(loadedFlips, 99) <= 1000;
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
        `health changes: produce of the call that flips health_status → connection.health_changed seen by a consumer of ${stack.settings.topics.health} (onHealthChange), probe connection ${PROBE_ORG}/health_probe, PROJECTOR_IDLE_MS ${stack.settings.projectorIdleMs}`,
        '| load | probe calls | flips seen | flips not seen in 10 s | p50 ms | p90 ms | p99 ms | max ms | changes not after a probe call |',
        '|---|---|---|---|---|---|---|---|---|',
        healthRow('baseline: no other traffic', idleHealth),
        healthRow(`${rate} events/s for ${seconds} s`, loadedHealth),
        '',
        `target p99 ≤ 1000 ms under load, every flip seen: ${healthMet ? 'met' : 'MISSED'}`,
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
