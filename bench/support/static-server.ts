/**
 * The query bench's ceiling: a bare node:http server answering each known URL with the exact bytes
 * (status 200, the same content-type / etag / cache-control headers and body) the API answered,
 * without looking at the request. BENCH_STATIC_FILE: JSON { [url]: { headers, body (base64) } };
 * BENCH_STATIC_PORT: the port (127.0.0.1). Prints "listening <port>".
 */
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';

const routes = new Map<string, { headers: Record<string, string>; body: Buffer }>();
const spec = JSON.parse(readFileSync(process.env.BENCH_STATIC_FILE!, 'utf8')) as Record<
  string,
  { headers: Record<string, string>; body: string }
>;
for (const [url, r] of Object.entries(spec)) {
  const body = Buffer.from(r.body, 'base64');
  routes.set(url, { headers: { ...r.headers, 'content-length': String(body.length) }, body });
}
const server = createServer((req, res) => {
  const route = routes.get(req.url ?? '');
  if (!route) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, route.headers).end(route.body);
});
server.keepAliveTimeout = 72000; // as Fastify's default
server.listen(Number(process.env.BENCH_STATIC_PORT), '127.0.0.1', () =>
  process.stdout.write(`listening ${process.env.BENCH_STATIC_PORT}\n`),
);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
