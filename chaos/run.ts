import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { passed, runScenario, SCENARIOS, TABLE_HEADER, tableRow } from './scenarios';

/**
 * npm run chaos [-- --events N] [--only NAME] [--safe]
 * Runs every scenario (or those matching --only; --safe skips the ones that restart Kafka,
 * PostgreSQL or Redis) against the compiled service and prints one reconciled row each.
 */
async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { events: { type: 'string' }, only: { type: 'string' }, safe: { type: 'boolean' } },
  });
  const events = Number(values.events ?? 20000);
  const chosen = SCENARIOS.filter(
    (s) => (!values.only || s.name.toLowerCase().includes(values.only.toLowerCase())) && !(values.safe && s.disruptive),
  );
  process.stderr.write(`building the service...\n`);
  execFileSync('npm', ['run', '-s', 'build'], { cwd: join(__dirname, '..'), stdio: 'inherit' });
  process.stdout.write(`chaos: ${chosen.length} scenario(s), ${events} messages each\n\n${TABLE_HEADER}\n`);
  let failures = 0;
  for (const [i, scenario] of chosen.entries()) {
    process.stderr.write(`[${i + 1}/${chosen.length}] ${scenario.name}...\n`);
    const started = Date.now();
    const row = await runScenario(scenario, { mode: 'compiled', events, log: (l) => process.stderr.write(`${l}\n`) });
    process.stdout.write(`${tableRow(row)}\n`);
    for (const n of row.notes) process.stderr.write(`  note: ${n}\n`);
    process.stderr.write(`  done in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    if (!passed(row)) failures += 1;
  }
  process.stdout.write(`\n${chosen.length - failures} passed, ${failures} failed\n`);
  return failures === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`chaos: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
