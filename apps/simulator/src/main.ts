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
import { Message, Partitioners, Producer } from 'kafkajs';
import { InvalidSettingError, loadSettings } from '@psp/config';
import { createKafka, ensureTopics } from '@psp/messaging';
import { ConnectionEventProducer, topicFor, WireEnvelope } from '@psp/producer';
import {
  describePhase,
  Emission,
  parseSimulatorArgs,
  providersDown,
  SimulatorOptions,
  Tally,
  TrafficGenerator,
  USAGE,
  UsageError,
} from './traffic';

const PROGRESS_EVERY_MS = 2000;

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

/** Sends one slice of emissions: good ones and duplicates through the kit, bad ones raw (the kit would refuse them). */
async function sendSlice(
  events: ConnectionEventProducer,
  raw: Producer,
  topics: Parameters<typeof topicFor>[1],
  slice: Emission[],
  tally: Tally,
): Promise<void> {
  const good: WireEnvelope[] = [];
  const bad = new Map<string, Message[]>();
  for (const e of slice) {
    if (e.kind === 'bad') {
      const topic = topicFor(e.type, topics);
      const list = bad.get(topic) ?? [];
      list.push({ key: e.key, value: e.value });
      bad.set(topic, list);
    } else good.push(e.envelope);
  }
  try {
    if (good.length > 0) await events.sendBatch(good);
    if (bad.size > 0)
      await raw.sendBatch({ acks: -1, topicMessages: [...bad].map(([topic, messages]) => ({ topic, messages })) });
    for (const e of slice) tally.count(e);
  } catch (error) {
    tally.failedSends += slice.length;
    log(
      `send failed (${slice.length} message(s) not counted): ${error instanceof Error ? error.message : String(error)}`,
    );
  }
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
  const orgs = [...new Set(generator.fleet.map((c) => c.orgId))];
  log(
    `${orgs.length} org(s) (${orgs.length <= 3 ? orgs.join(', ') : `${orgs[0]} ... ${orgs[orgs.length - 1]}`}) x ${options.connections} connection(s), ` +
      `${options.rate} msg/s, ${options.durationS > 0 ? `for ${options.durationS} s` : 'until Ctrl-C'}, seed ${options.seed}, ` +
      `brokers ${settings.kafkaBrokers.join(',')}, topics ${settings.topics.calls} / ${settings.topics.validations} / ${settings.topics.connections}`,
  );
  for (const o of options.outages) {
    log(
      `planned: outage of ${o.provider} at ${o.startS} s for ${o.durationS} s${o.everyS ? `, every ${o.everyS} s` : ''}`,
    );
  }

  const started = Date.now();
  await sendSlice(
    events,
    producer,
    settings.topics,
    generator.start(started).map((envelope) => ({ kind: 'event', envelope }) as Emission),
    tally,
  );
  log(`configured and validated ${generator.fleet.length} connection(s)`);

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
      await sendSlice(events, producer, settings.topics, slice, tally);
    }

    if (now - lastProgressAt >= PROGRESS_EVERY_MS) {
      const recent = ((tally.sent - lastProgressSent) * 1000) / (now - lastProgressAt);
      log(
        `${clock(elapsedS)} sent ${tally.sent} (${recent.toFixed(1)}/s), duplicates ${tally.duplicates}, bad ${tally.bad}` +
          `${tally.failedSends ? `, failed ${tally.failedSends}` : ''} | ${describePhase(options.outages, elapsedS)}`,
      );
      lastProgressAt = now;
      lastProgressSent = tally.sent;
    }
    const nextDueAt = started + ((emitted + 1) / options.rate) * 1000;
    await sleep(Math.min(100, Math.max(5, nextDueAt - Date.now())));
  }

  await events.disconnect();
  const seconds = (Date.now() - started) / 1000;
  process.stdout.write(`${tally.summary(seconds)}\n`);
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
