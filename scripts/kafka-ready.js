#!/usr/bin/env node
/*
 * Waits until a Kafka broker answers a metadata request (kafkajs admin: describeCluster + listTopics).
 *
 *   node scripts/kafka-ready.js [--brokers host:port[,host:port]] [--timeout SECONDS] [--pid PID] [--quiet]
 *
 * --brokers  defaults to $KAFKA_BROKERS, else 127.0.0.1:${KAFKA_PORT:-9092}
 * --timeout  total seconds to keep trying (default 90; 0 = a single attempt)
 * --pid      give up at once if this process dies (the broker being started)
 * Exit 0 when ready (prints one line), 1 on timeout / dead process, 2 on bad usage.
 */
'use strict';

const { Kafka, logLevel } = require('kafkajs');

function parseArgs(argv) {
  const args = { timeout: 90, pid: undefined, quiet: false, brokers: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--brokers') args.brokers = next();
    else if (a === '--timeout') args.timeout = Number(next());
    else if (a === '--pid') args.pid = Number(next());
    else if (a === '--quiet') args.quiet = true;
    else usage(`unknown argument ${a}`);
  }
  if (!Number.isFinite(args.timeout) || args.timeout < 0) usage('--timeout must be a number >= 0');
  if (args.pid !== undefined && !Number.isInteger(args.pid)) usage('--pid must be an integer');
  args.brokers = (args.brokers || process.env.KAFKA_BROKERS || `127.0.0.1:${process.env.KAFKA_PORT || 9092}`)
    .split(',')
    .map((b) => b.trim())
    .filter(Boolean);
  return args;
}

function usage(message) {
  console.error(`kafka-ready: ${message}`);
  console.error('usage: node scripts/kafka-ready.js [--brokers host:port] [--timeout SECONDS] [--pid PID] [--quiet]');
  process.exit(2);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if (e.code !== 'EPERM') return false;
  }
  try {
    // An exited broker not yet reaped by its parent is a zombie: count it as dead.
    return !/^State:\s*Z/m.test(require('fs').readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true; // no /proc (not Linux): trust kill(0)
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function attempt(brokers) {
  const kafka = new Kafka({
    clientId: 'kafka-ready',
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2000,
    requestTimeout: 5000,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    const topics = await admin.listTopics();
    return { cluster, topics };
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const deadline = started + args.timeout * 1000;
  let lastError = 'no attempt made';
  for (;;) {
    if (args.pid !== undefined && !alive(args.pid)) {
      console.error(`kafka-ready: broker process ${args.pid} exited before answering (${lastError})`);
      process.exit(1);
    }
    try {
      const { cluster, topics } = await attempt(args.brokers);
      if (!args.quiet) {
        const secs = ((Date.now() - started) / 1000).toFixed(1);
        console.log(
          `kafka-ready: ${args.brokers.join(',')} answers (cluster ${cluster.clusterId}, ` +
            `${cluster.brokers.length} broker(s), controller ${cluster.controller}, ${topics.length} topic(s)) after ${secs}s`,
        );
      }
      process.exit(0);
    } catch (e) {
      lastError = (e && (e.message || e.name)) || String(e);
    }
    if (Date.now() >= deadline) {
      if (!args.quiet) console.error(`kafka-ready: ${args.brokers.join(',')} did not answer within ${args.timeout}s (${lastError})`);
      process.exit(1);
    }
    await sleep(500);
  }
}

main().catch((e) => {
  console.error(`kafka-ready: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
