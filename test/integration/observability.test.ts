import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { ChildProcess } from 'node:child_process';
import { Producer } from 'kafkajs';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { ApiKeyStore } from '@psp/api-keys';
import {
  dropIsolated,
  eventually,
  isolatedEnv,
  isolatedSettings,
  openDatabase,
  testProducer,
} from '../support/isolated-stack';
import { freePort, startProcess, stopProcess, waitForHttp } from '../support/processes';

/**
 * Issue 13: GET /metrics from every process (CONTRACT 1.4) and structured logs. A writer, a projector
 * and an API, each run alone as a real process, get traffic for one org; then their scrapes are in
 * the Prometheus text format, carry the metrics that matter with the right counts, and hold no org
 * id, connection id, key or key hash; their logs are JSON lines with a request id per request, the
 * key header redacted and no secret anywhere.
 */
describe('metrics and logs (issue 13)', () => {
  const suffix = randomBytes(4).toString('hex');
  const ORG = `org_obs_${suffix}`;
  const CONNECTIONS = [`conn_obs_${suffix}_a`, `conn_obs_${suffix}_b`];
  const SECRET = `sk_live_obs_${randomBytes(12).toString('hex')}`;
  const base = Math.floor((Date.now() - 10 * 60000) / 60000) * 60000;
  let env: Record<string, string>;
  let settings: Settings;
  let db: DataSource;
  let producer: Producer;
  let key: string;
  let apiUrl: string;
  let writerMetricsUrl: string;
  let projectorMetricsUrl: string;
  const children: Record<'writer' | 'projector' | 'api', ChildProcess & { output: string[] }> = {} as never;
  const scrapes: Record<string, string> = {};

  const envelope = (type: string, conn: string, atMs: number, data: object, eventId = randomUUID()) =>
    JSON.stringify({
      event_id: eventId,
      type,
      schema_version: 1,
      org_id: ORG,
      connection_id: conn,
      occurred_at: new Date(atMs).toISOString(),
      data,
    });

  async function scrape(url: string): Promise<{ status: number; contentType: string | null; text: string }> {
    const res = await fetch(url);
    return { status: res.status, contentType: res.headers.get('content-type'), text: await res.text() };
  }

  /** The value of one sample (`name{labels}` exactly as rendered, labels in prom-client's order), or undefined. */
  function sample(text: string, series: string): number | undefined {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  }

  beforeAll(async () => {
    const [apiPort, writerPort, projectorPort] = await Promise.all([freePort(), freePort(), freePort()]);
    env = isolatedEnv('observability', {
      LOG_LEVEL: 'debug',
      LOG_FORMAT: 'json',
      KAFKAJS_NO_PARTITIONER_WARNING: '1',
    });
    settings = isolatedSettings('unused', env);
    db = await openDatabase(settings);
    ({ producer } = await testProducer(settings, { createTopics: true }));
    key = (await new ApiKeyStore(db).create(ORG, ['connections:read'], 'test')).key;
    apiUrl = `http://127.0.0.1:${apiPort}`;
    writerMetricsUrl = `http://127.0.0.1:${writerPort}/metrics`;
    projectorMetricsUrl = `http://127.0.0.1:${projectorPort}/metrics`;
    children.writer = startProcess('writer', { ...env, METRICS_PORT: String(writerPort) });
    children.projector = startProcess('projector', { ...env, METRICS_PORT: String(projectorPort) });
    // 401s are limited per address (2 a minute): the last test meets the limit, nothing before it.
    children.api = startProcess('api', { ...env, HTTP_PORT: String(apiPort), RATE_LIMIT_FAILED_AUTH_PER_MINUTE: '2' });
    await Promise.all([
      waitForHttp(writerMetricsUrl, children.writer),
      waitForHttp(projectorMetricsUrl, children.projector),
      waitForHttp(`${apiUrl}/healthz`, children.api),
    ]);

    // Traffic for ORG: two connections (one with credentials), four calls, one call re-sent (a
    // duplicate), a message that is not JSON and one without its data (both to the DLQ).
    const t = settings.topics;
    const resent = envelope('psp.call.completed', CONNECTIONS[0], base + 5000, { outcome: 'success', latency_ms: 90 });
    await producer.send({
      topic: t.connections,
      acks: -1,
      messages: [
        {
          key: `${ORG}:${CONNECTIONS[0]}`,
          value: envelope('connection.configured', CONNECTIONS[0], base, {
            provider: 'paystack',
            labels: ['ghana'],
            credentials: { secret_key: SECRET },
          }),
        },
        {
          key: `${ORG}:${CONNECTIONS[1]}`,
          value: envelope('connection.configured', CONNECTIONS[1], base, { provider: 'hubtel' }),
        },
        {
          key: `${ORG}:${CONNECTIONS[1]}`,
          value: JSON.stringify({
            event_id: randomUUID(),
            type: 'connection.configured',
            schema_version: 1,
            org_id: ORG,
            connection_id: CONNECTIONS[1],
            occurred_at: new Date(base).toISOString(),
          }),
        },
      ],
    });
    await producer.send({
      topic: t.calls,
      acks: -1,
      messages: [
        ...[1, 2, 3].map((i) => ({
          key: `${ORG}:${CONNECTIONS[i % 2]}`,
          value: envelope('psp.call.completed', CONNECTIONS[i % 2], base + i * 1000, {
            outcome: i === 2 ? 'failure' : 'success',
            latency_ms: 100 * i,
            ...(i === 2 ? { error_code: 'timeout' } : {}),
          }),
        })),
        { key: `${ORG}:${CONNECTIONS[0]}`, value: resent },
        { key: `${ORG}:${CONNECTIONS[0]}`, value: `{"org_id":"${ORG}","connection_id":"${CONNECTIONS[0]}"` },
      ],
    });
    await producer.send({ topic: t.calls, acks: -1, messages: [{ key: `${ORG}:${CONNECTIONS[0]}`, value: resent }] });

    // Until the API lists both connections with their four calls.
    await eventually(
      async () => {
        const res = await fetch(`${apiUrl}/v1/connections`, { headers: { 'X-Reevit-Key': key, 'X-Org-Id': ORG } });
        return res.status === 200 ? ((await res.json()) as { connections: { total_calls: number }[] }) : null;
      },
      (body) =>
        body !== null && body.connections.length === 2 && body.connections.reduce((n, c) => n + c.total_calls, 0) === 4,
      60000,
      'both connections with their 4 calls',
    );
  });

  afterAll(async () => {
    await Promise.all(Object.values(children).map((c) => stopProcess(c)));
    await producer?.disconnect();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  describe('GET /metrics', () => {
    beforeAll(async () => {
      // API traffic: a hit, a 404 on a route with a parameter, a 401, the labels route.
      const headers = { 'X-Reevit-Key': key, 'X-Org-Id': ORG };
      expect((await fetch(`${apiUrl}/v1/connections/${CONNECTIONS[0]}`, { headers })).status).toBe(200);
      expect((await fetch(`${apiUrl}/v1/connections/${CONNECTIONS[0]}_missing`, { headers })).status).toBe(404);
      expect((await fetch(`${apiUrl}/v1/connections/labels`, { headers })).status).toBe(200);
      expect((await fetch(`${apiUrl}/v1/connections`, { headers: { 'X-Org-Id': ORG } })).status).toBe(401);
      expect((await fetch(`${apiUrl}/no/such/route/${ORG}`)).status).toBe(404);
      // The writer's counts and its group's lag (read at most every 5 s) settle.
      await eventually(
        () => scrape(writerMetricsUrl).then((s) => s.text),
        (text) =>
          sample(text, `psp_writer_messages_consumed_total{topic="${settings.topics.calls}"}`) === 6 &&
          sample(text, `psp_writer_consumer_lag_messages{topic="${settings.topics.calls}"}`) === 0 &&
          sample(text, `psp_writer_consumer_lag_messages{topic="${settings.topics.connections}"}`) === 0,
        30000,
        "the writer's counts and a lag of 0",
      );
      scrapes.writer = (await scrape(writerMetricsUrl)).text;
      // The projector's reading of PostgreSQL is reused for up to a second: wait for one taken after
      // it applied the last event (on a loaded machine the first scrape can predate it).
      await eventually(
        () => scrape(projectorMetricsUrl).then((s) => s.text),
        (text) => sample(text, 'psp_projector_stream_time_seconds') === (base + 5000) / 1000,
        30000,
        "the projector's reading after the last event",
      );
      scrapes.projector = (await scrape(projectorMetricsUrl)).text;
      scrapes.api = (await scrape(`${apiUrl}/metrics`)).text;
    });

    it('answers in the Prometheus text format, without auth, from every process', async () => {
      for (const url of [writerMetricsUrl, projectorMetricsUrl, `${apiUrl}/metrics`]) {
        const res = await scrape(url);
        expect(res.status).toBe(200);
        expect(res.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
      }
      const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
      const sampleLine =
        // prom-client writes NaN as `Nan`; Prometheus reads special values case-insensitively.
        /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.e+-]+|[Nn]a[Nn]|[+-]Inf)$/;
      for (const [process, text] of Object.entries(scrapes)) {
        const typed = new Set<string>();
        for (const line of text.split('\n')) {
          if (line === '') continue;
          if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) {
            const [, , name, rest] = line.split(' ');
            expect({ process, name, ok: metricName.test(name) }).toEqual({ process, name, ok: true });
            if (line.startsWith('# TYPE ')) {
              expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).toContain(rest);
              typed.add(name);
            }
            continue;
          }
          expect({ process, line, ok: sampleLine.test(line) }).toEqual({ process, line, ok: true });
        }
        // Our metrics: the psp_ prefix, units in the names; the default process metrics are there.
        const ours = [...typed].filter((n) => n.startsWith('psp_'));
        expect(ours.length).toBeGreaterThan(5);
        for (const name of ours)
          expect(name).toMatch(/_(total|seconds|messages|events|ratio|generation|in_progress|streams|shards)$/);
        expect(typed.has('process_cpu_seconds_total')).toBe(true);
        expect(typed.has('nodejs_eventloop_lag_seconds')).toBe(true);
      }
    });

    it("the writer: consumed, appended, duplicates and DLQ'd by topic and reason, append histograms, consumer lag", () => {
      const w = scrapes.writer;
      const { calls, connections } = settings.topics;
      expect(sample(w, `psp_writer_messages_consumed_total{topic="${calls}"}`)).toBe(6);
      expect(sample(w, `psp_writer_messages_consumed_total{topic="${connections}"}`)).toBe(3);
      expect(sample(w, `psp_writer_events_appended_total{topic="${calls}"}`)).toBe(4);
      expect(sample(w, `psp_writer_events_appended_total{topic="${connections}"}`)).toBe(2);
      expect(sample(w, `psp_writer_duplicates_total{topic="${calls}"}`)).toBe(1);
      expect(sample(w, `psp_writer_dlq_messages_total{topic="${calls}",reason="invalid_json"}`)).toBe(1);
      expect(sample(w, `psp_writer_dlq_messages_total{topic="${connections}",reason="missing_field"}`)).toBe(1);
      expect(sample(w, `psp_writer_dlq_messages_total{topic="${calls}",reason="unstorable"}`)).toBe(0);
      expect(sample(w, 'psp_writer_append_duration_seconds_count')).toBeGreaterThanOrEqual(1);
      expect(sample(w, 'psp_writer_append_group_events_sum')).toBe(7); // 4 + 2 + the duplicate
      expect(sample(w, `psp_writer_consumer_lag_messages{topic="${calls}"}`)).toBe(0);
      expect(sample(w, 'psp_writer_append_failures_total')).toBe(0);
    });

    it('the projector: lag in events and seconds, stream time, events applied, replay progress', () => {
      const p = scrapes.projector;
      expect(sample(p, 'psp_projector_events_applied_total')).toBe(6);
      expect(sample(p, 'psp_projector_lag_events')).toBe(0);
      expect(sample(p, 'psp_projector_lag_seconds')).toBe(0);
      expect(sample(p, 'psp_projector_stream_time_seconds')).toBe((base + 5000) / 1000);
      expect(sample(p, 'psp_projector_stalled_seconds')).toBe(0);
      expect(sample(p, 'psp_read_model_live_generation')).toBe(1);
      expect(sample(p, 'psp_replay_in_progress')).toBe(0);
      expect(sample(p, 'psp_replay_progress_ratio')).toBe(0);
    });

    it('the API: requests by route pattern and status, latency, cache tiers, key cache, rate limits', () => {
      const a = scrapes.api;
      expect(sample(a, 'psp_http_requests_total{method="GET",route="/v1/connections/:id",status="200"}')).toBe(1);
      expect(sample(a, 'psp_http_requests_total{method="GET",route="/v1/connections/:id",status="404"}')).toBe(1);
      expect(sample(a, 'psp_http_requests_total{method="GET",route="/v1/connections/labels",status="200"}')).toBe(1);
      expect(sample(a, 'psp_http_requests_total{method="GET",route="/v1/connections",status="401"}')).toBe(1);
      expect(sample(a, 'psp_http_requests_total{method="GET",route="unmatched",status="404"}')).toBe(1);
      expect(sample(a, 'psp_http_request_duration_seconds_count{method="GET",route="/v1/connections/:id"}')).toBe(2);
      expect(a).toContain(
        'psp_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/connections/:id"}',
      );
      const reads = ['memory', 'redis', 'postgres'].map(
        (tier) => sample(a, `psp_read_model_reads_total{tier="${tier}"}`)!,
      );
      expect(reads.every((n) => n >= 0)).toBe(true);
      expect(reads[0] + reads[1] + reads[2]).toBeGreaterThanOrEqual(3);
      expect(reads[2]).toBeGreaterThanOrEqual(1); // the first read of the org came from PostgreSQL
      expect(sample(a, 'psp_cache_misses_total{cache="read_model_redis"}')).toBe(reads[2]);
      expect(
        sample(a, 'psp_cache_hits_total{cache="api_key"}')! + sample(a, 'psp_cache_misses_total{cache="api_key"}')!,
      ).toBeGreaterThanOrEqual(3);
      expect(a).toContain('# TYPE psp_http_rate_limited_total counter');
    });

    it('holds no org id, connection id, key, key hash or message content in any scrape', () => {
      const hash = createHash('sha256').update(key, 'utf8').digest();
      const needles = [
        ORG,
        ...CONNECTIONS,
        key,
        key.slice(9),
        hash.toString('hex'),
        hash.toString('base64'),
        hash.toString('base64url'),
        SECRET,
        'paystack',
        'hubtel',
        'ghana',
      ];
      for (const [process, text] of Object.entries(scrapes))
        for (const needle of needles)
          expect({ process, needle, found: text.includes(needle) }).toEqual({ process, needle, found: false });
    });
  });

  describe('logs', () => {
    const apiLines = () =>
      children.api.output
        .join('')
        .split('\n')
        .filter((l) => l.trim() !== '');

    it('echoes a sane X-Request-Id and logs the request under it as JSON, the key header redacted', async () => {
      const id = `obs-test.1:${suffix}_x`;
      const res = await fetch(`${apiUrl}/v1/connections`, {
        headers: { 'X-Reevit-Key': key, 'X-Org-Id': ORG, 'X-Request-Id': id },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toBe(id);
      const line = await eventually(
        async () => apiLines().find((l) => l.includes(id)),
        (l) => l !== undefined,
        5000,
        'the request log line',
      );
      const entry = JSON.parse(line!);
      expect(entry).toMatchObject({ level: 'debug', process: 'api', request_id: id, msg: 'GET 200' });
      expect(entry.req.url).toBe('/v1/connections');
      expect(entry.req.headers['x-reevit-key']).toBe('[redacted]');
      expect(entry.req.headers['x-org-id']).toBe(ORG);
      expect(typeof entry.time).toBe('string');
    });

    it('generates a request id when there is none or the incoming one is not a sane token', async () => {
      const ids: string[] = [];
      for (const incoming of [undefined, 'has spaces', 'x'.repeat(129), 'quote"d', 'é']) {
        const res = await fetch(`${apiUrl}/healthz`, {
          headers: incoming === undefined ? {} : { 'X-Request-Id': incoming },
        });
        const id = res.headers.get('x-request-id')!;
        expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        ids.push(id);
      }
      expect(new Set(ids).size).toBe(ids.length);
      const longest = 'y'.repeat(128);
      expect(
        (await fetch(`${apiUrl}/healthz`, { headers: { 'X-Request-Id': longest } })).headers.get('x-request-id'),
      ).toBe(longest);
      // Also on a route that does not exist, on an error answer, on a path Fastify refuses itself.
      expect(
        (await fetch(`${apiUrl}/nope`, { headers: { 'X-Request-Id': 'r-404' } })).headers.get('x-request-id'),
      ).toBe('r-404');
      expect(
        (await fetch(`${apiUrl}/v1/connections`, { headers: { 'X-Request-Id': 'r-401' } })).headers.get('x-request-id'),
      ).toBe('r-401');
      const malformed = await fetch(`${apiUrl}/v1/connections/%E0%A4%A`, { headers: { 'X-Request-Id': 'r-400' } });
      expect([malformed.status, malformed.headers.get('x-request-id')]).toEqual([400, 'r-400']);
    });

    it('every process writes one JSON object a line, and none holds a key, a key hash or a credential', () => {
      const hash = createHash('sha256').update(key, 'utf8').digest();
      const needles = [
        key,
        key.slice(9),
        hash.toString('hex'),
        hash.toString('base64'),
        hash.toString('base64url'),
        SECRET,
      ];
      for (const [process, child] of Object.entries(children)) {
        const lines = child.output
          .join('')
          .split('\n')
          .filter((l) => l.trim() !== '');
        expect(lines.length).toBeGreaterThan(3);
        for (const line of lines) {
          let entry: { level?: unknown; time?: unknown; msg?: unknown; process?: unknown } | null = null;
          try {
            entry = JSON.parse(line);
          } catch {
            entry = null;
          }
          expect({ process, line, json: entry !== null }).toEqual({ process, line, json: true });
          expect(entry).toMatchObject({ process, level: expect.any(String), time: expect.any(String) });
          for (const needle of needles)
            expect({ process, needle, found: line.includes(needle) }).toEqual({ process, needle, found: false });
        }
      }
      // The writer said what it consumes, in JSON, with its component as `context`.
      const writerLines = children.writer.output
        .join('')
        .split('\n')
        .filter((l) => l.includes('"context":"EventIntake"'));
      expect(writerLines.some((l) => JSON.parse(l).msg.startsWith('consuming '))).toBe(true);
    });
  });

  describe('rate limits', () => {
    it('counts a request refused by a rate limit by the limit it met', async () => {
      let limited = 0;
      for (let i = 0; i < 5 && limited === 0; i++) {
        const res = await fetch(`${apiUrl}/v1/connections/labels`, {
          headers: { 'X-Reevit-Key': `pfk_test_${'0'.repeat(32)}`, 'X-Org-Id': ORG },
        });
        if (res.status === 429) limited += 1;
        else expect(res.status).toBe(401);
      }
      expect(limited).toBe(1);
      const a = (await scrape(`${apiUrl}/metrics`)).text;
      expect(sample(a, 'psp_http_rate_limited_total{reason="failed_auth"}')).toBe(1);
      expect(sample(a, 'psp_http_rate_limited_total{reason="org"}')).toBe(0);
      expect(sample(a, 'psp_http_requests_total{method="GET",route="/v1/connections/labels",status="429"}')).toBe(1);
    });
  });
});
