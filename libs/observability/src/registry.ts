import { collectDefaultMetrics, Counter, Registry } from 'prom-client';

/** The Prometheus text format's content type (version 0.0.4), as prom-client renders it. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

let registry: Registry | undefined;

/**
 * The process's one metrics registry: the default process metrics (CPU, memory, event loop lag,
 * GC, handles; their standard names) and every `psp_` metric of the parts of the service this
 * process runs. In the dev process (writer, projector and API in one), all three register here, so
 * the API's /metrics shows them all.
 */
export function metricsRegistry(): Registry {
  if (!registry) {
    registry = new Registry();
    collectDefaultMetrics({ register: registry });
  }
  return registry;
}

/**
 * A metric set registered once per process, created on first use: a process that runs the writer
 * and the API (the dev process, a test) shares one of each, and registering a name twice (which
 * prom-client refuses) never happens.
 */
export function oncePerProcess<T>(create: (registry: Registry) => T): () => T {
  let value: T | undefined;
  return () => (value ??= create(metricsRegistry()));
}

/**
 * Values read at scrape time (from PostgreSQL, Kafka): read at most once per `freshMs`, one read at a
 * time, shared by every gauge of a scrape. A scrape waits for a read at most `timeoutMs`; a failed or
 * late read gives null (the caller keeps its previous values and counts the failure), and a read
 * still running when the next scrape comes is waited for, not doubled.
 */
export class ScrapeTimeReading<T> {
  private last: { at: number; value: T | null } | null = null;
  private inFlight?: Promise<T | null>;

  constructor(
    private readonly read: () => Promise<T>,
    private readonly freshMs = 1000,
    private readonly timeoutMs = 2000,
  ) {}

  get(): Promise<T | null> {
    if (this.last && Date.now() - this.last.at < this.freshMs) return Promise.resolve(this.last.value);
    this.inFlight ??= this.read()
      .then(
        (value) => value,
        () => null,
      )
      .then((value) => {
        this.last = { at: Date.now(), value };
        this.inFlight = undefined;
        return value;
      });
    const reading = this.inFlight;
    return new Promise<T | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), this.timeoutMs);
      timer.unref();
      void reading.then((value) => {
        clearTimeout(timer);
        resolve(value);
      });
    });
  }
}

/**
 * `psp_metrics_reading_failures_total{reading}`: scrape-time readings that failed or took too long
 * (the gauges they feed then show their previous values).
 */
export const readingFailures = oncePerProcess(
  (registry) =>
    new Counter({
      name: 'psp_metrics_reading_failures_total',
      help: 'Scrape-time readings (PostgreSQL, Kafka) that failed or timed out; their gauges kept their previous values',
      labelNames: ['reading'] as const,
      registers: [registry],
    }),
);
