import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { Kafka, Producer } from 'kafkajs';
import { DataSource } from 'typeorm';
import { loadSettings, Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { createKafka, ensureTopics } from '@psp/messaging';
import { createDataSource, migrate } from '@psp/storage';
import { dropIsolated, isolatedEnv } from '../test/support/isolated-stack';
import { freePort } from '../test/support/processes';
import { SERVERS_ENV } from '../test/support/servers';
import type { Sent } from './traffic';

const ROOT = join(__dirname, '..');

export type ProcessName = 'writer' | 'projector' | 'api';

/**
 * Outside jest (npm run chaos, bench:freshness) nothing has pointed the test kit at the servers:
 * DATABASE_URL / REDIS_URL / KAFKA_BROKERS when set, else the local ones (npm run stack:up).
 */
function useServers(): void {
  if (process.env[SERVERS_ENV]) return;
  process.env[SERVERS_ENV] = JSON.stringify({
    databaseUrl: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0',
    kafkaBrokers: process.env.KAFKA_BROKERS ?? '127.0.0.1:9092',
  });
}

/**
 * The real service as separate processes (writer, projector, API) on an isolated database, topics,
 * consumer group and Redis prefix, with the levers a fault needs: kill -9 a process, restart it.
 */
export class ChaosStack {
  readonly env: Record<string, string>;
  readonly settings: Settings;
  db!: DataSource;
  kafka!: Kafka;
  producer!: Producer;
  apiKey!: string;
  apiUrl!: string;
  readonly processes = new Map<ProcessName, ChildProcess[]>();
  readonly output: string[] = [];

  constructor(
    label: string,
    private readonly mode: 'compiled' | 'source',
    overrides: Record<string, string> = {},
  ) {
    // The test kit's isolated run (own database, topics, group, Redis prefix), as tests and benches use.
    useServers();
    this.env = isolatedEnv(`chaos${label}`, {
      LOG_LEVEL: 'warn',
      KAFKAJS_NO_PARTITIONER_WARNING: '1',
      // The suite reconciles every org through the API as fast as it answers: no rate limit.
      RATE_LIMIT_PER_MINUTE: '0',
      ...overrides,
    });
    this.settings = loadSettings(this.env);
  }

  async start(): Promise<void> {
    await migrate(this.settings.databaseUrl);
    this.db = await createDataSource(this.settings.databaseUrl, {
      poolSize: 3,
      applicationName: 'psp-chaos',
    }).initialize();
    this.kafka = createKafka(this.settings, 'chaos', () => undefined);
    await ensureTopics(this.kafka, this.settings);
    this.producer = this.kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 30 } });
    await this.producer.connect();
    this.apiKey = (await new ApiKeyStore(this.db).create('org_0', ['connections:read'], 'test')).key;
    const port = await freePort();
    this.env.HTTP_PORT = String(port);
    this.apiUrl = `http://127.0.0.1:${port}`;
    this.spawn('writer');
    this.spawn('projector');
    this.spawn('api');
    await this.waitForApi(60000);
  }

  /** Keys for every org the traffic uses. */
  async keysFor(orgs: string[]): Promise<Map<string, string>> {
    const store = new ApiKeyStore(this.db);
    const keys = new Map<string, string>();
    for (const org of orgs) keys.set(org, (await store.create(org, ['connections:read'], 'test')).key);
    return keys;
  }

  spawn(name: ProcessName): ChildProcess {
    const entry =
      this.mode === 'compiled'
        ? ['-r', join(ROOT, 'scripts/register-paths.js'), join(ROOT, 'dist/apps', name, 'src/main.js')]
        : [
            '-r',
            'ts-node/register/transpile-only',
            '-r',
            'tsconfig-paths/register',
            join(ROOT, 'apps', name, 'src/main.ts'),
          ];
    const child = spawn(process.execPath, entry, {
      cwd: ROOT,
      env: { ...process.env, ...this.env, TS_NODE_PROJECT: join(ROOT, 'tsconfig.json') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (d: Buffer) => {
      this.output.push(`[${name}] ${d.toString()}`);
      if (this.output.length > 2000) this.output.splice(0, 1000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.processes.set(name, [...(this.processes.get(name) ?? []), child]);
    return child;
  }

  /** Kills every instance of a process (SIGKILL by default), and waits until they are gone. */
  async kill(name: ProcessName, signal: NodeJS.Signals = 'SIGKILL', which?: ChildProcess): Promise<void> {
    const targets = which ? [which] : (this.processes.get(name) ?? []);
    await Promise.all(
      targets.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill(signal);
          }),
      ),
    );
    this.processes.set(
      name,
      (this.processes.get(name) ?? []).filter((c) => !targets.includes(c)),
    );
  }

  async waitForApi(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        if ((await fetch(`${this.apiUrl}/healthz`)).status === 200) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`API did not come up on ${this.apiUrl}: ${this.output.slice(-5).join('')}`);
  }

  /**
   * Produces a batch (acks from all replicas), each message to its topic and, when it names one, to
   * its partition, in order. Messages sent to a chosen partition get their offset filled in from
   * the broker's answer (a batch's messages to one partition take consecutive offsets).
   */
  async produce(batch: Sent[]): Promise<void> {
    const byTopic = new Map<string, Sent[]>();
    for (const s of batch) byTopic.set(s.topic, [...(byTopic.get(s.topic) ?? []), s]);
    const answers = await this.producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, ms]) => ({
        topic,
        messages: ms.map((m) => ({
          key: m.key,
          value: m.value,
          ...(m.partition === undefined ? {} : { partition: m.partition }),
        })),
      })),
    });
    for (const [topic, ms] of byTopic) {
      const next = new Map<number, bigint>();
      for (const m of ms) {
        if (m.partition === undefined) continue;
        let offset = next.get(m.partition);
        if (offset === undefined) {
          const answer = answers.find((a) => a.topicName === topic && a.partition === m.partition);
          if (answer?.baseOffset === undefined) continue;
          offset = BigInt(answer.baseOffset);
        }
        m.offset = offset.toString();
        next.set(m.partition, offset + 1n);
      }
    }
  }

  async get(path: string, org: string, key: string): Promise<{ status: number; body: string }> {
    const res = await fetch(`${this.apiUrl}${path}`, { headers: { 'X-Reevit-Key': key, 'X-Org-Id': org } });
    return { status: res.status, body: await res.text() };
  }

  async stop(): Promise<void> {
    for (const name of ['writer', 'projector', 'api'] as ProcessName[]) await this.kill(name, 'SIGTERM');
    await this.producer?.disconnect().catch(() => undefined);
    const admin = this.kafka?.admin();
    if (admin) {
      await admin.connect().catch(() => undefined);
      await admin.deleteTopics({ topics: Object.values(this.settings.topics) }).catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
    }
    await this.db?.destroy().catch(() => undefined);
    await dropIsolated(this.settings);
  }
}
