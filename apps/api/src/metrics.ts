import { Registry, Counter, Histogram } from 'prom-client';
import { oncePerProcess } from '@psp/observability';
import type { ReadTier } from '@psp/read-model';
import type { RateLimitMetrics, RateLimitScope } from './rate-limits';

/** Where an org's read model was served from: this instance's memory, Redis, or PostgreSQL. */
export type { ReadTier };

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** The route label of a request that matched no route (the raw URL is never a label). */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * The API's metrics (CONTRACT 1.4: no label value is an org id, a connection id, a key or anything
 * from a request but its method, its route pattern and its status).
 */
export class ApiMetrics {
  readonly requests: Counter<'method' | 'route' | 'status'>;
  readonly requestSeconds: Histogram<'method' | 'route'>;
  readonly readModelReads: Counter<'tier'>;
  readonly cacheHits: Counter<'cache'>;
  readonly cacheMisses: Counter<'cache'>;
  /** Requests answered 429, by the limit they met (`reason`: a fixed name such as `org` or `failed_auth`). */
  readonly rateLimited: Counter<'reason'>;
  /** Requests let through unchecked because the rate limits' store (Redis) did not answer. */
  readonly rateLimitFailedOpen: Counter<'reason'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: 'psp_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'] as const,
      registers,
    });
    this.requestSeconds = new Histogram({
      name: 'psp_http_request_duration_seconds',
      help: 'Time from the request arriving to its response sent, by method and route pattern',
      labelNames: ['method', 'route'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.readModelReads = new Counter({
      name: 'psp_read_model_reads_total',
      help: "Orgs' read models served, by the tier that answered: memory (a hit), redis (a memory miss), postgres (a miss in both)",
      labelNames: ['tier'] as const,
      registers,
    });
    this.cacheHits = new Counter({
      name: 'psp_cache_hits_total',
      help: 'Cache hits: read_model_memory, read_model_redis, api_key',
      labelNames: ['cache'] as const,
      registers,
    });
    this.cacheMisses = new Counter({
      name: 'psp_cache_misses_total',
      help: 'Cache misses: read_model_memory, read_model_redis, api_key',
      labelNames: ['cache'] as const,
      registers,
    });
    this.rateLimited = new Counter({
      name: 'psp_http_rate_limited_total',
      help: 'Requests answered 429, by the limit they met',
      labelNames: ['reason'] as const,
      registers,
    });
    this.rateLimitFailedOpen = new Counter({
      name: 'psp_http_rate_limit_failed_open_total',
      help: 'Requests let through unchecked because the rate limits could not be counted (Redis did not answer)',
      labelNames: ['reason'] as const,
      registers,
    });
    for (const tier of ['memory', 'redis', 'postgres'] as const) this.readModelReads.inc({ tier }, 0);
    for (const reason of ['org', 'failed_auth'] satisfies RateLimitScope[]) {
      this.rateLimited.inc({ reason }, 0);
      this.rateLimitFailedOpen.inc({ reason }, 0);
    }
    for (const cache of ['read_model_memory', 'read_model_redis', 'api_key']) {
      this.cacheHits.inc({ cache }, 0);
      this.cacheMisses.inc({ cache }, 0);
    }
  }

  /** One answered request: `route` is the matched route's pattern (`/v1/connections/:id`), if any. */
  observeRequest(method: string, route: string | undefined, status: number, seconds: number): void {
    const m = METHODS.has(method) ? method : 'other';
    const r = route ?? UNMATCHED_ROUTE;
    this.requests.inc({ method: m, route: r, status: String(status) });
    this.requestSeconds.observe({ method: m, route: r }, seconds);
  }

  /** An org's read model was served from `tier`. */
  readFrom(tier: ReadTier): void {
    this.readModelReads.inc({ tier });
    if (tier === 'memory') {
      this.cacheHits.inc({ cache: 'read_model_memory' });
      return;
    }
    this.cacheMisses.inc({ cache: 'read_model_memory' });
    (tier === 'redis' ? this.cacheHits : this.cacheMisses).inc({ cache: 'read_model_redis' });
  }

  /** A key lookup was (hit) or was not (miss) answered from the key cache (found keys and known misses alike). */
  keyLookup(hit: boolean): void {
    (hit ? this.cacheHits : this.cacheMisses).inc({ cache: 'api_key' });
  }

  /** The rate limits' counters (RATE_LIMIT_METRICS in apps/api/src/rate-limits.ts): `reason` is the limit met. */
  readonly rateLimitMetrics: RateLimitMetrics = {
    limited: (scope: RateLimitScope): void => this.rateLimited.inc({ reason: scope }),
    failedOpen: (scope: RateLimitScope): void => this.rateLimitFailedOpen.inc({ reason: scope }),
  };
}

/** The API's metrics, registered once per process: `apiMetrics().rateLimited.inc({ reason })`. */
export const apiMetrics = oncePerProcess((registry) => new ApiMetrics(registry));
