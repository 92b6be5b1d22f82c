/**
 * Traffic simulator: a payment platform's routers, credential validator and config service sending
 * the contract's events to Kafka through the producers' kit, at a steady rate, with outages,
 * duplicates and bad messages on demand. Progress goes to stderr every 2 s; the summary to stdout at
 * the end (--duration elapsed, SIGINT or SIGTERM). Event time is the wall clock.
 *
 *   npm run simulate -- --orgs 1 --connections 6 --rate 20 --org-prefix org_demo --outage paystack:60:60:600
 *
 * The generation logic lives in ./traffic (pure, unit-tested); this file only does the I/O.
 */
import { Partitioners } from 'kafkajs';
import { InvalidSettingError, loadSettings } from '@psp/config';
import { createKafka, ensureTopics } from '@psp/messaging';
import { ConnectionEventProducer } from '@psp/producer';
import { MAX_REQUEST_BYTES } from './batches';
import { BatchSender } from './sender';
import {
  describePhase,
  Emission,
  orgIdAt,
  parseSimulatorArgs,
  providersDown,
  SimulatorOptions,
  Tally,
  TrafficGenerator,
  USAGE,
  UsageError,
} from './traffic';

const PROGRESS_EVERY_MS = 2000;
/** Requests in flight while the fleet is configured (each connection appears once per topic there, so order does not matter). */
const SETUP_IN_FLIGHT = 4;

function log(line: string): void {
  process.stderr.write(`[simulator] ${line}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function clock(seconds: number): string {
  const s = Math.floor(seconds);
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

async function run(options: SimulatorOptions): Promise<number> {
  const settings = loadSettings(process.env);
  const kafka = createKafka(settings, 'simulator', (level, message) => log(`kafka ${level}: ${message}`));
  await ensureTopics(kafka, settings);
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  const events = new ConnectionEventProducer(producer, { topics: settings.topics });
  await events.connect();

  // The first signal stops after the current send; another one more than a second later quits at
  // once. (Ctrl-C under `npm start` delivers SIGINT from the terminal and SIGTERM from run.sh's
  // trap together: that is one request.)
  let stopping = false;
  let firstSignalAt = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      if (Date.now() - firstSignalAt > 1000) process.exit(130);
      return;
    }
    stopping = true;
    firstSignalAt = Date.now();
    log(`${signal}: stopping after the current send (again to quit at once)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const generator = new TrafficGenerator(options);
  const tally = new Tally();
  const sender = new BatchSender(events, settings.topics, tally, { log });
  const orgs =
    options.orgs <= 3
      ? Array.from({ length: options.orgs }, (_, o) => orgIdAt(options, o)).join(', ')
      : `${orgIdAt(options, 0)} ... ${orgIdAt(options, options.orgs - 1)}`;
  log(
    `${options.orgs} org(s) (${orgs}) x ${options.connections} connection(s), ` +
      `${options.rate} msg/s, ${options.durationS > 0 ? `for ${options.durationS} s` : 'until Ctrl-C'}, seed ${options.seed}, ` +
      `brokers ${settings.kafkaBrokers.join(',')}, topics ${settings.topics.calls} / ${settings.topics.validations} / ${settings.topics.connections}`,
  );
  for (const o of options.outages) {
    log(
      `planned: outage of ${o.provider} at ${o.startS} s for ${o.durationS} s${o.everyS ? `, every ${o.everyS} s` : ''}`,
    );
  }

  // 1. The fleet: every connection configured, then validated, in requests of at most
  // MAX_REQUEST_BYTES, made as they go (a million connections are never in memory at once).
  const setupAt = Date.now();
  const setupMessages = 2 * generator.fleetSize;
  const failure = () =>
    tally.failedSends > 0 ? `, not sent ${tally.failedSends} (${tally.failedBatches} request(s) failed)` : '';
  let lastSetupProgressAt = setupAt;
  const setupEmissions = (function* () {
    for (const envelope of generator.start(setupAt)) yield { kind: 'event', envelope } as Emission;
  })();
  await sender.sendAll(setupEmissions, {
    inFlight: SETUP_IN_FLIGHT,
    shouldStop: () => stopping,
    onSent: () => {
      const now = Date.now();
      if (now - lastSetupProgressAt < PROGRESS_EVERY_MS) return;
      lastSetupProgressAt = now;
      log(
        `${clock((now - setupAt) / 1000)} configuring the fleet: sent ${tally.sent} of ${setupMessages} ` +
          `(${((tally.sent * 1000) / (now - setupAt)).toFixed(0)}/s) in ${sender.requests} request(s)` +
          `${tally.retries ? `, ${tally.retries} tried again` : ''}${failure()}`,
      );
    },
  });
  const setupS = (Date.now() - setupAt) / 1000;
  const setupSent = tally.sent;
  const setupRequests = sender.requests;
  log(
    `configured and validated ${generator.fleetSize} connection(s): ${setupSent} of ${setupMessages} message(s) ` +
      `in ${setupS.toFixed(1)} s, ${setupRequests} request(s) of at most ${MAX_REQUEST_BYTES / 1024} KiB${failure()}`,
  );

  // 2. Traffic at the rate, for --duration from here.
  const started = Date.now();
  let emitted = 0;
  let lastProgressAt = started;
  let lastProgressSent = tally.sent;
  let lastDown: ReadonlySet<string> = new Set<string>();
  for (;;) {
    const now = Date.now();
    const elapsedS = (now - started) / 1000;
    if (stopping || (options.durationS > 0 && elapsedS >= options.durationS)) break;

    const down: ReadonlySet<string> = providersDown(options.outages, elapsedS);
    const began = [...down].filter((p) => !lastDown.has(p));
    const ended = [...lastDown].filter((p) => !down.has(p));
    if (began.length > 0) log(`${clock(elapsedS)} outage ON: ${began.join(', ')} (failing and slow)`);
    if (ended.length > 0) log(`${clock(elapsedS)} outage over: ${ended.join(', ')} back to normal`);
    lastDown = down;

    // Messages due by now; a backlog of more than one second (Kafka was slow) is dropped, not burst.
    const target = Math.floor(options.rate * elapsedS);
    const backlogCap = Math.max(1, Math.ceil(options.rate));
    if (target - emitted > backlogCap) emitted = target - backlogCap;
    const due = target - emitted;
    if (due > 0) {
      const slice: Emission[] = [];
      for (let i = 0; i < due; i++) slice.push(generator.next(elapsedS, now));
      emitted += due;
      await sender.sendAll(slice);
    }

    if (now - lastProgressAt >= PROGRESS_EVERY_MS) {
      const recent = ((tally.sent - lastProgressSent) * 1000) / (now - lastProgressAt);
      log(
        `${clock(elapsedS)} sent ${tally.sent} (${recent.toFixed(1)}/s), duplicates ${tally.duplicates}, bad ${tally.bad}` +
          `${tally.retries ? `, ${tally.retries} request(s) tried again` : ''}${failure()} | ${describePhase(options.outages, elapsedS)}`,
      );
      lastProgressAt = now;
      lastProgressSent = tally.sent;
    }
    const nextDueAt = started + ((emitted + 1) / options.rate) * 1000;
    await sleep(Math.min(100, Math.max(5, nextDueAt - Date.now())));
  }

  await events.disconnect();
  const seconds = (Date.now() - setupAt) / 1000;
  process.stdout.write(
    `${tally.summary(seconds)}\n` +
      `  ${'of which the fleet set-up'.padEnd(34)} ${setupSent} in ${setupS.toFixed(1)} s; traffic ${tally.sent - setupSent} in ${((Date.now() - started) / 1000).toFixed(1)} s\n` +
      `  ${'requests'.padEnd(34)} ${sender.requests} sent, ${tally.failedBatches} failed\n`,
  );
  return tally.failedSends > 0 && tally.sent === 0 ? 1 : 0;
}

async function main(): Promise<void> {
  let options: SimulatorOptions;
  try {
    options = parseSimulatorArgs(process.argv.slice(2));
  } catch (error) {
    if (error instanceof UsageError) {
      if (error.message) process.stderr.write(`simulator: ${error.message}\n`);
      process.stderr.write(`${USAGE}\n`);
      process.exit(error.message ? 2 : 0);
    }
    throw error;
  }
  try {
    process.exitCode = await run(options);
  } catch (error) {
    if (error instanceof InvalidSettingError) {
      process.stderr.write(`simulator: ${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`simulator: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}

void main();
