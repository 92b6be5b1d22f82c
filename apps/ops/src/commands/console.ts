import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Kafka, KafkaMessage } from 'kafkajs';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { healthOfWindow, healthSeries, HEALTH_WINDOW_MINUTES, minuteBucket } from '@psp/domain';
import { createKafka, readDlqHeaders } from '@psp/messaging';
import { HealthChange, HealthChangeSequencer } from '@psp/producer';
import { liveReadModel, parseStoredDocument, readOrgsFromPostgres } from '@psp/read-model';
import { createDataSource, migrate } from '@psp/storage';
import { EXIT, say, UsageError } from '../output';
import { readGenerationLags } from './lag';

/** The console's default port (127.0.0.1 only). */
export const CONSOLE_PORT = 8090;
/** Health changes kept for a page that opens the feed (the newest first on the page). */
const RECENT_CHANGES = 50;
/** How often a follower whose topic does not exist yet looks again. */
const TOPIC_RETRY_MS = 5000;
/** A comment on the event stream this often keeps proxies and the browser from closing it. */
const HEARTBEAT_MS = 15000;

/** The page's files (apps/ops/console): the only paths served besides /api/*. */
const STATIC_DIR = join(__dirname, '..', '..', 'console');
const STATIC_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
  '/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
};

export interface ConsoleOptions {
  port: number;
  org?: string;
}

/** One connection of an org as the console shows it: health now, its score over the window, its latest change. */
export interface ConsoleConnection {
  connection_id: string;
  provider: string | null;
  mode: string | null;
  status: string | null;
  health_status: string;
  health_score: number;
  /** the validation cap holds (failed validation): the score is at most 25 */
  capped: boolean;
  /** calls in the window's buckets */
  calls: number;
  /** the score at each minute of the window, oldest first (healthSeries), the last one now */
  series: number[];
  /** the latest change read from the health topic since the console started (or in its history) */
  last_change: HealthChange | null;
}

/** A follower of one topic: a consumer of its own group, from the topic's beginning. */
interface FollowerState {
  topic: string;
  state: 'starting' | 'waiting for the topic' | 'following' | 'failed';
  error: string | null;
}

/**
 * Follows `topic` from its beginning with a consumer group of its own (deleted on stop: no other
 * reader's offsets move), handing each message to `each`; waits for the topic while it does not exist.
 */
function follow(
  kafka: Kafka,
  topic: string,
  groupId: string,
  each: (message: KafkaMessage) => void,
): { state: FollowerState; stop: () => Promise<void> } {
  const state: FollowerState = { topic, state: 'starting', error: null };
  const admin = kafka.admin();
  const consumer = kafka.consumer({ groupId });
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const start = async (): Promise<void> => {
    if (stopped) return;
    try {
      await admin.connect();
      if (!(await admin.listTopics()).includes(topic)) {
        state.state = 'waiting for the topic';
        timer = setTimeout(() => void start(), TOPIC_RETRY_MS);
        return;
      }
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ message }) => each(message),
      });
      state.state = 'following';
      state.error = null;
    } catch (error) {
      state.state = 'failed';
      state.error = error instanceof Error ? error.message : String(error);
      timer = setTimeout(() => void start(), TOPIC_RETRY_MS);
    }
  };
  void start();
  return {
    state,
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      await consumer.disconnect().catch(() => undefined);
      await admin.deleteGroups([groupId]).catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
    },
  };
}

/** The DLQ by reason (and source topic), as read so far. */
interface DlqTally {
  total: number;
  newest: string | null;
  byReason: Map<string, { messages: number; topics: Record<string, number> }>;
}

/** What the console serves; `close` stops the server, the followers and the pool. */
export interface ConsoleServer {
  url: string;
  close(): Promise<void>;
}

/** Starts the console on 127.0.0.1:`port` (0: any free port). */
export async function startConsole(settings: Settings, options: ConsoleOptions): Promise<ConsoleServer> {
  if (options.port !== 0 && options.port === settings.httpPort)
    throw new UsageError(`--port ${options.port} is the tenant API's port (HTTP_PORT): the console never shares it`);
  await migrate(settings.databaseUrl);
  const db: DataSource = await createDataSource(settings.databaseUrl, {
    poolSize: 2,
    applicationName: 'psp-connections-ops-console',
  }).initialize();

  const kafka = createKafka(settings, `ops-console-${process.pid}`, () => undefined);
  const group = (what: string) =>
    `${settings.kafkaClientId}-ops-console-${what}-${process.pid}-${randomBytes(3).toString('hex')}`;

  // Health changes: de-duplicated and in sequence per connection, the latest of each, the newest few.
  const sequencer = new HealthChangeSequencer();
  const latest = new Map<string, HealthChange>();
  const recent: HealthChange[] = [];
  const streams = new Set<ServerResponse>();
  const health = follow(kafka, settings.topics.health, group('health'), (message) => {
    const accepted = sequencer.accept(message.value);
    if (accepted === null) return;
    const c = accepted.change;
    latest.set(`${c.orgId}\n${c.connectionId}`, c);
    recent.push(c);
    if (recent.length > RECENT_CHANGES) recent.shift();
    const frame = `event: change\ndata: ${JSON.stringify({ ...c, gap: accepted.gap })}\n\n`;
    for (const res of streams) res.write(frame);
  });

  const dlq: DlqTally = { total: 0, newest: null, byReason: new Map() };
  const dlqFollower = follow(kafka, settings.topics.dlq, group('dlq'), (message) => {
    const headers = readDlqHeaders(message.headers);
    const reason = headers.reason || '(no dlq-reason)';
    const source = headers.topic || '(no dlq-topic)';
    const entry = dlq.byReason.get(reason) ?? { messages: 0, topics: {} };
    entry.messages += 1;
    entry.topics[source] = (entry.topics[source] ?? 0) + 1;
    dlq.byReason.set(reason, entry);
    dlq.total += 1;
    const ms = Number(message.timestamp);
    if (Number.isFinite(ms) && ms >= 0) {
      const at = new Date(ms).toISOString();
      if (dlq.newest === null || at > dlq.newest) dlq.newest = at;
    }
  });

  const api: Record<string, (url: URL) => Promise<unknown>> = {
    '/api/config': async () => ({
      org: options.org ?? null,
      window_minutes: HEALTH_WINDOW_MINUTES,
      topics: { health: settings.topics.health, dlq: settings.topics.dlq },
    }),
    '/api/connections': async (url) => {
      const org = url.searchParams.get('org') ?? options.org ?? '';
      if (org === '') return { org: null, connections: [] };
      return { org, ...(await connectionsOf(db, org, latest)) };
    },
    '/api/lag': async () => ({ generations: await readGenerationLags(db) }),
    '/api/dlq': async () => ({
      topic: settings.topics.dlq,
      follower: dlqFollower.state,
      total: dlq.total,
      newest: dlq.newest,
      by_reason: [...dlq.byReason]
        .sort((a, b) => b[1].messages - a[1].messages || (a[0] < b[0] ? -1 : 1))
        .map(([reason, e]) => ({ reason, ...e })),
    }),
    '/api/feed-state': async () => ({ follower: health.state, changes_seen: latest.size }),
  };

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) send(res, 500, 'application/json', JSON.stringify({ error: messageOf(error) }));
      else res.end();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'GET only\n');
    const file = STATIC_FILES[url.pathname];
    if (file) return send(res, 200, file.type, await readFile(join(STATIC_DIR, file.file)));
    if (url.pathname === '/api/feed') return openFeed(req, res);
    const route = api[url.pathname];
    if (!route) return send(res, 404, 'text/plain', 'not found\n');
    try {
      send(res, 200, 'application/json', JSON.stringify(await route(url)));
    } catch (error) {
      send(res, 503, 'application/json', JSON.stringify({ error: messageOf(error) }));
    }
  }

  function openFeed(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    res.write(`retry: 3000\nevent: state\ndata: ${JSON.stringify(health.state)}\n\n`);
    for (const c of recent) res.write(`event: change\ndata: ${JSON.stringify({ ...c, gap: false })}\n\n`);
    streams.add(res);
    const beat = setInterval(() => res.write(`event: state\ndata: ${JSON.stringify(health.state)}\n\n`), HEARTBEAT_MS);
    req.on('close', () => {
      clearInterval(beat);
      streams.delete(res);
    });
  }

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, '127.0.0.1', () => resolve());
    });
  } catch (error) {
    await Promise.all([health.stop(), dlqFollower.stop()]);
    await db.destroy();
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE')
      throw new Error(`127.0.0.1:${options.port} is in use: choose another port with --port`);
    throw error;
  }
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/${options.org ? `?org=${encodeURIComponent(options.org)}` : ''}`,
    close: async () => {
      for (const res of streams) res.end();
      streams.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([health.stop(), dlqFollower.stop()]);
      await db.destroy();
    },
  };
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    // The page loads only its own files and talks only to this server.
    'content-security-policy': "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
  });
  res.end(body);
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** An org's listed connections from the live read model, with health evaluated at its stream time. */
async function connectionsOf(
  db: DataSource,
  org: string,
  latest: Map<string, HealthChange>,
): Promise<{ generation: number; stream_time: string | null; connections: ConsoleConnection[] }> {
  const { generation, streamTime } = await liveReadModel(db);
  const [read] = await readOrgsFromPostgres(db, generation, [org]);
  const b = streamTime === null ? null : minuteBucket(streamTime);
  const connections = [...read.documents]
    .sort(([a], [z]) => (a < z ? -1 : a > z ? 1 : 0))
    .map(([connectionId, text]): ConsoleConnection => {
      const { connection, window } = parseStoredDocument(text);
      const c = JSON.parse(connection) as Record<string, unknown>;
      const now = healthOfWindow(window, b);
      const field = (name: string) => (typeof c[name] === 'string' ? (c[name] as string) : null);
      return {
        connection_id: connectionId,
        provider: field('provider'),
        mode: field('mode'),
        status: field('status'),
        health_status: now.status,
        health_score: now.score,
        capped: window.capped,
        calls: window.buckets.reduce((n, x) => n + x.calls, 0),
        series: b === null ? [] : healthSeries(window, b).map((h) => h.score),
        last_change: latest.get(`${org}\n${connectionId}`) ?? null,
      };
    });
  return { generation, stream_time: streamTime === null ? null : new Date(streamTime).toISOString(), connections };
}

/**
 * `ops console`: a web page on 127.0.0.1 for an operator (README "Ops console"): an org's connections
 * with their health over the window, the live feed of health changes (server-sent events), the lag
 * per projection shard and a replay's progress, the DLQ by reason. Runs until Ctrl-C.
 */
export async function opsConsole(settings: Settings, options: ConsoleOptions): Promise<number> {
  const server = await startConsole(settings, options);
  say(`ops console: ${server.url}  (127.0.0.1 only; Ctrl-C stops it)`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  process.stderr.write('ops console: stopping (leaving its consumer groups)\n');
  await server.close();
  return EXIT.ok;
}
