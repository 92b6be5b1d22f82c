/**
 * A stand-in OTLP/HTTP receiver for measuring what tracing costs the service (BENCHMARKS.md,
 * section 6): accepts `POST /v1/traces` (OTLP/JSON, as @opentelemetry/exporter-trace-otlp-http
 * sends it), counts the spans, answers 200 and keeps nothing. A real collector does more work, in its
 * own process; what the service pays (making, batching, serialising and sending spans) is the same.
 *
 *   npx ts-node -T bench/support/otlp-sink.ts [port, default 4318]
 *
 * Prints the spans received every 10 s and on SIGINT/SIGTERM.
 */
import { createServer } from 'node:http';

const port = Number(process.argv[2] ?? 4318);
let spans = 0;
let requests = 0;
let bytes = 0;

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    requests += 1;
    bytes += body.length;
    try {
      const parsed = JSON.parse(body.toString('utf8')) as {
        resourceSpans?: { scopeSpans?: { spans?: unknown[] }[] }[];
      };
      for (const r of parsed.resourceSpans ?? []) for (const s of r.scopeSpans ?? []) spans += s.spans?.length ?? 0;
    } catch {
      // not JSON (protobuf): counted as a request only
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});

function report(): void {
  process.stderr.write(`otlp-sink: ${spans} spans in ${requests} requests (${(bytes / 1048576).toFixed(1)} MiB)\n`);
}

server.listen(port, '127.0.0.1', () => process.stderr.write(`otlp-sink: listening on 127.0.0.1:${port}\n`));
setInterval(report, 10_000).unref();
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    report();
    server.close();
    process.exit(0);
  });
