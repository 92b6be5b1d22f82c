import { randomBytes } from 'node:crypto';
import { request as httpRequest, Server } from 'node:http';
import { connect } from 'node:net';
import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import { ApiModule } from '../../apps/api/src/api.module';
import { ConnectionReads } from '../../apps/api/src/connection-reads';
import { READINESS_FRESH_MS } from '../../apps/api/src/health.controller';
import { dropIsolated, eventually, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { startService } from '../support/service';

/**
 * The API's HTTP hardening against the real servers: header, request and keep-alive timeouts answered
 * with the contract's 408 body, the connection cap, the key lookup caches kept apart, and /readyz
 * computed at most once a second.
 */

const JSON_CT = 'application/json; charset=utf-8';
const HEADERS_TIMEOUT_MS = 500;
const REQUEST_TIMEOUT_MS = 1200;
const KEEP_ALIVE_TIMEOUT_MS = 400;
// The check runs every quarter of the header timeout (at most 1 s): a 408 comes at most that late,
// plus scheduling slack on a busy machine.
const LATE_MS = 1000;

interface RawExchange {
  /** Everything the server sent before it closed the connection. */
  text: string;
  /** From connecting to the server closing the connection. */
  ms: number;
  /** A connection error (e.g. ECONNRESET), if the connection ended with one. */
  error?: string;
}

/** Opens a TCP connection, sends `payload` (possibly an incomplete request), and reads until the server closes it. */
function rawExchange(url: string, payload: string, giveUpMs = 20000): Promise<RawExchange> {
  const target = new URL(url);
  return new Promise((resolve) => {
    const started = Date.now();
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const socket = connect(Number(target.port), target.hostname, () => {
      if (payload !== '') socket.write(payload);
    });
    const giveUp = setTimeout(() => {
      error = 'still open';
      socket.destroy();
    }, giveUpMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    socket.on('close', () => {
      clearTimeout(giveUp);
      resolve({ text: Buffer.concat(chunks).toString('utf8'), ms: Date.now() - started, error });
    });
  });
}

/** The status, headers and body of a raw HTTP response. */
function parseResponse(text: string): { status: number; headers: Record<string, string>; body: string } {
  const end = text.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: text.slice(end + 4) };
}

function expect408(exchange: RawExchange): void {
  const res = parseResponse(exchange.text);
  expect(res.status).toBe(408);
  expect(res.headers['content-type']).toBe(JSON_CT);
  expect(JSON.parse(res.body)).toEqual({
    error: 'bad_request',
    code: 'request_timeout',
    message: 'The request took too long to arrive.',
  });
}

function get(
  url: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: target.hostname, port: target.port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString() }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('HTTP hardening of the API', () => {
  let settings: Settings;
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  const apps: NestFastifyApplication[] = [];

  beforeAll(async () => {
    settings = isolatedSettings('httphardening', {
      HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      HTTP_KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_TIMEOUT_MS),
    });
    db = await openDatabase(settings);
    ({ app, url } = await startService(ApiModule, settings));
    apps.push(app);
  });

  afterAll(async () => {
    for (const a of apps) await a.close().catch(() => undefined);
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  describe('timeouts', () => {
    it('a partial request line, partial headers or nothing at all get a 408 with the contract body within the header timeout', async () => {
      const [requestLine, headers, nothing] = await Promise.all([
        rawExchange(url, 'GET /v1/connecti'),
        rawExchange(url, 'GET /v1/connections HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Org-Id: org_a\r\n'),
        rawExchange(url, ''),
      ]);
      for (const exchange of [requestLine, headers, nothing]) {
        expect408(exchange);
        expect(exchange.ms).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
        expect(exchange.ms).toBeLessThan(HEADERS_TIMEOUT_MS + LATE_MS);
        // Nothing of the request is echoed.
        expect(exchange.text).not.toContain('org_a');
      }
    });

    it('headers sent slowly, one byte at a time, still get the 408 at the header timeout', async () => {
      const target = new URL(url);
      const started = Date.now();
      const chunks: Buffer[] = [];
      const socket = connect(Number(target.port), target.hostname);
      const header = 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ' + 'a'.repeat(200);
      let i = 0;
      const drip = setInterval(() => {
        if (i < header.length && socket.writable) socket.write(header[i++]);
      }, 20);
      const text = await new Promise<string>((resolve) => {
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('error', () => undefined);
        socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
      });
      clearInterval(drip);
      const ms = Date.now() - started;
      expect408({ text, ms });
      expect(ms).toBeLessThan(HEADERS_TIMEOUT_MS + LATE_MS);
    });

    it('a request whose body does not all arrive gets a 408 at the request timeout', async () => {
      const exchange = await rawExchange(
        url,
        'POST /v1/connections HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":',
      );
      expect408(exchange);
      expect(exchange.ms).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50);
      expect(exchange.ms).toBeLessThan(REQUEST_TIMEOUT_MS + LATE_MS);
    });

    it('an idle keep-alive connection is closed after the keep-alive timeout', async () => {
      const exchange = await rawExchange(
        url,
        'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n',
      );
      const res = parseResponse(exchange.text);
      expect(res.status).toBe(200);
      expect(res.headers.connection).toBe('keep-alive');
      expect(res.headers['keep-alive']).toMatch(/^timeout=\d+/);
      // Node holds the socket up to 1 s past the timeout it announces, so that the client closes first.
      expect(exchange.ms).toBeGreaterThanOrEqual(KEEP_ALIVE_TIMEOUT_MS - 50);
      expect(exchange.ms).toBeLessThan(KEEP_ALIVE_TIMEOUT_MS + 1000 + LATE_MS);
    });

    it('a complete request is answered at once, and the server keeps its settings', async () => {
      const res = await get(url, '/healthz');
      expect(res.status).toBe(200);
      const server = app.getHttpServer() as Server & { connectionsCheckingInterval: number };
      expect(server.headersTimeout).toBe(HEADERS_TIMEOUT_MS);
      expect(server.requestTimeout).toBe(REQUEST_TIMEOUT_MS);
      expect(server.keepAliveTimeout).toBe(KEEP_ALIVE_TIMEOUT_MS);
      expect(server.connectionsCheckingInterval).toBe(125);
      expect(server.maxConnections).toBe(10000);
    });
  });

  describe('connection cap', () => {
    it('connections past HTTP_MAX_CONNECTIONS are closed without an answer; the others are served', async () => {
      const capped = await startService(ApiModule, {
        ...settings,
        httpMaxConnections: 3,
        httpHeadersTimeoutMs: 20000,
        httpRequestTimeoutMs: 30000,
      });
      apps.push(capped.app);
      const server = capped.app.getHttpServer() as Server;
      const connections = () => new Promise<number>((r) => server.getConnections((_e, n) => r(n)));
      const target = new URL(capped.url);
      const held = await Promise.all(
        [1, 2, 3].map(
          () =>
            new Promise<ReturnType<typeof connect>>((resolve, reject) => {
              const s = connect(Number(target.port), target.hostname, () => resolve(s));
              s.on('error', reject);
            }),
        ),
      );
      await eventually(connections, (n) => n === 3, 5000, 'three open connections');

      // The fourth: accepted by the kernel, closed by the server, never answered.
      const refused = await rawExchange(capped.url, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 5000);
      expect(refused.text).toBe('');
      expect(refused.error).not.toBe('still open');
      expect(await connections()).toBe(3);

      // A held connection is served.
      const answer = new Promise<string>((resolve) => {
        const chunks: Buffer[] = [];
        held[0].on('data', (c: Buffer) => {
          chunks.push(c);
          if (Buffer.concat(chunks).toString().includes('"ok"')) resolve(Buffer.concat(chunks).toString());
        });
      });
      held[0].write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      expect(parseResponse(await answer).status).toBe(200);

      // With one of them gone, a new connection is served again.
      held[1].destroy();
      await eventually(connections, (n) => n === 2, 5000, 'a connection closed');
      expect((await get(capped.url, '/healthz')).status).toBe(200);
      for (const s of held) s.destroy();
    });
  });

  describe('/readyz', () => {
    it('many calls in one second compute the answer once; concurrent callers share it', async () => {
      const db = app.get(DataSource);
      const reads = app.get(ConnectionReads);
      const queries = jest.spyOn(db, 'query');
      const pings = jest.spyOn(reads.redisClient, 'ping');
      try {
        await get(url, '/readyz');
        await sleep(READINESS_FRESH_MS + 100);
        queries.mockClear();
        pings.mockClear();

        // One computation's queries.
        const single = await get(url, '/readyz');
        expect(single.status).toBe(200);
        const perComputation = queries.mock.calls.length;
        expect(perComputation).toBeGreaterThanOrEqual(2);
        expect(pings).toHaveBeenCalledTimes(1);

        await sleep(READINESS_FRESH_MS + 100);
        queries.mockClear();
        pings.mockClear();
        const started = Date.now();
        const answers = await Promise.all(Array.from({ length: 40 }, () => get(url, '/readyz')));
        const more = await Promise.all(Array.from({ length: 10 }, () => get(url, '/readyz')));
        const elapsed = Date.now() - started;
        const computations = pings.mock.calls.length;
        // At most one computation per second that passed (one, unless this machine is very slow).
        expect(computations).toBeGreaterThanOrEqual(1);
        expect(computations).toBeLessThanOrEqual(Math.floor(elapsed / READINESS_FRESH_MS) + 1);
        expect(queries.mock.calls.length).toBe(computations * perComputation);
        // The 40 concurrent callers shared one answer: identical bytes.
        expect(new Set(answers.map((a) => a.text)).size).toBe(1);
        for (const a of [...answers, ...more]) {
          expect(a.status).toBe(200);
          expect(a.headers['content-type']).toBe(JSON_CT);
          expect(Object.keys(JSON.parse(a.text))).toEqual(['status', 'checks', 'projection']);
        }
        if (elapsed < READINESS_FRESH_MS) expect(computations).toBe(1);
      } finally {
        queries.mockRestore();
        pings.mockRestore();
      }
    });

    it('after a second the answer is computed again', async () => {
      const reads = app.get(ConnectionReads);
      const pings = jest.spyOn(reads.redisClient, 'ping');
      try {
        await get(url, '/readyz');
        const before = pings.mock.calls.length;
        await sleep(READINESS_FRESH_MS + 100);
        expect((await get(url, '/readyz')).status).toBe(200);
        expect(pings.mock.calls.length).toBe(before + 1);
      } finally {
        pings.mockRestore();
      }
    });
  });

  describe('API key lookups', () => {
    it('a flood of unknown keys does not push a valid key out of the cache', async () => {
      const keyed = await startService(ApiModule, {
        ...settings,
        apiKeyCacheMs: 5000,
        apiKeyMissCacheEntries: 10,
        httpHeadersTimeoutMs: 20000,
        httpRequestTimeoutMs: 30000,
      });
      apps.push(keyed.app);
      const { key } = await new ApiKeyStore(db).create('org_keys', ['connections:read'], 'test');
      const keyedDb = keyed.app.get(DataSource);
      const queries = jest.spyOn(keyedDb, 'query');
      const keyLookups = () =>
        queries.mock.calls.filter(([sql]) => typeof sql === 'string' && sql.includes('FROM api_key WHERE key_hash'))
          .length;
      try {
        const headers = (k: string) => ({ 'X-Reevit-Key': k, 'X-Org-Id': 'org_keys' });
        expect((await get(keyed.url, '/v1/connections', headers(key))).status).toBe(200);
        expect(keyLookups()).toBe(1);
        // 200 unknown, well-formed keys: each is looked up once and fills only the (10-entry) miss cache.
        for (let batch = 0; batch < 8; batch++) {
          const unknown = Array.from({ length: 25 }, () => `pfk_test_${randomBytes(24).toString('base64url')}`);
          const answers = await Promise.all(unknown.map((k) => get(keyed.url, '/v1/connections', headers(k))));
          for (const [i, res] of answers.entries()) {
            expect(res.status).toBe(401);
            expect(res.text).not.toContain(unknown[i]);
          }
        }
        expect(keyLookups()).toBe(201);
        // The valid key is still cached: no lookup.
        expect((await get(keyed.url, '/v1/connections', headers(key))).status).toBe(200);
        expect(keyLookups()).toBe(201);
        // A miss is cached too (a repeated unknown key is not looked up again), but only the 10 most recent.
        const unknown = () => `pfk_test_${randomBytes(24).toString('base64url')}`;
        const repeated = unknown();
        expect((await get(keyed.url, '/v1/connections', headers(repeated))).status).toBe(401);
        expect((await get(keyed.url, '/v1/connections', headers(repeated))).status).toBe(401);
        expect(keyLookups()).toBe(202);
        for (let i = 0; i < 10; i++) await get(keyed.url, '/v1/connections', headers(unknown()));
        expect(keyLookups()).toBe(212);
        expect((await get(keyed.url, '/v1/connections', headers(repeated))).status).toBe(401);
        expect(keyLookups()).toBe(213);
        expect((await get(keyed.url, '/v1/connections', headers(key))).status).toBe(200);
        expect(keyLookups()).toBe(213);
      } finally {
        queries.mockRestore();
      }
    });
  });
});
