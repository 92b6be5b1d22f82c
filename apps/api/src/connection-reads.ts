import { Inject, Injectable, Logger } from '@nestjs/common';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import {
  connectionStats,
  ConnectionView,
  HealthWindow,
  healthOfWindow,
  ListQuery,
  minuteBucket,
  parseStatsWindow,
  selectConnections,
  summariseLabels,
  withHealth,
} from '@psp/domain';
import { SETTINGS, Settings } from '@psp/config';
import { apiMetrics, ReadTier } from './metrics';
import { SingleFlight } from './single-flight';
import { orgBytes, ReadCaches, RenderedBody } from './read-caches';
import { liveReadModel, parseStoredDocument, readOrgThroughTiers, RedisReadModel } from '@psp/read-model';

export type { RenderedBody } from './read-caches';

let nextOrgEntryId = 1;

/**
 * One org's read model as this API instance holds it, parsed once per version. Each connection is
 * stored as rendered when it last changed, with its health window; its bytes at a later minute of
 * stream time get the health of that window at that minute (`documentAt`), so one response shows
 * every connection's health at the same stream time, and a new minute re-renders nothing anywhere
 * but here, lazily, for what is read.
 */
class OrgEntry {
  /** This parsed version's identity: its rendered bodies are cached under it. */
  readonly id = nextOrgEntryId++;
  /** What it is counted at against API_ORG_CACHE_BYTES. */
  readonly bytes: number;
  readonly views: ConnectionView[];
  private readonly stored = new Map<
    ConnectionView,
    { connection: string; window: HealthWindow; statsWindow: string }
  >();
  readonly byId = new Map<string, ConnectionView>();
  /** The newest minute any of its connections was rendered at: it is never served at an older one. */
  readonly renderedUpTo: number | null;
  private documents: { minute: number | null; byView: Map<ConnectionView, string> } = {
    minute: null,
    byView: new Map(),
  };
  /** When this instance last compared the version with PostgreSQL's. */
  checkedInPostgresAt = Date.now();
  /** When this instance last compared the version with Redis's (or PostgreSQL's). */
  verifiedAt = 0;

  constructor(
    readonly version: number,
    documents: Map<string, string>,
  ) {
    const views: ConnectionView[] = [];
    let renderedUpTo: number | null = null;
    for (const [id, text] of documents) {
      const stored = parseStoredDocument(text);
      const view = JSON.parse(stored.connection) as ConnectionView;
      views.push(view);
      this.stored.set(view, stored);
      this.byId.set(id, view);
      const r = stored.window.renderedAt;
      if (r !== null && (renderedUpTo === null || r > renderedUpTo)) renderedUpTo = r;
    }
    this.views = views;
    this.renderedUpTo = renderedUpTo;
    this.bytes = orgBytes(documents.values());
  }

  /** The minute this org is served at, given the live stream time's minute. */
  servedMinute(streamMinute: number | null): number | null {
    if (streamMinute === null) return this.renderedUpTo;
    return this.renderedUpTo === null || streamMinute > this.renderedUpTo ? streamMinute : this.renderedUpTo;
  }

  /** The stored stats window (CONTRACT 1.5) of a connection, unparsed. */
  statsWindowOf(view: ConnectionView): string {
    return this.stored.get(view)!.statsWindow;
  }

  /** The connection's bytes with its health at minute `b`. */
  documentAt(view: ConnectionView, b: number | null): string {
    if (this.documents.minute !== b) this.documents = { minute: b, byView: new Map() };
    let document = this.documents.byView.get(view);
    if (document === undefined) {
      const { connection, window } = this.stored.get(view)!;
      const health = healthOfWindow(window, b);
      document =
        health.score === view.health_score && health.status === view.health_status
          ? connection
          : withHealth(connection, health);
      this.documents.byView.set(view, document);
    }
    return document;
  }
}

/** At most this many parsed orgs, whatever they weigh (API_ORG_CACHE_BYTES bounds their bytes). */
const ORG_CACHE_LIMIT = 5000;
/** Rendered bodies kept per org version (API_RESPONSE_CACHE_BYTES bounds all orgs' bodies together). */
const RESPONSES_PER_ORG = 256;
/** The generation the API serves and its stream time (ms) and minute bucket. */
interface LiveReadModel {
  generation: number;
  streamTime: number | null;
  streamMinute: number | null;
}

/** How long the live generation and its stream time read from PostgreSQL are reused. */
const LIVE_TTL_MS = 50;
const POSTGRES_RECHECK_MS = 1000;
/** For this long after a version check, an org is served from memory without asking Redis again. */
const ORG_VERIFY_MS = 50;

/**
 * Serves the read model: from Redis when it holds the org, from PostgreSQL otherwise (then refilling
 * Redis). Both hold the same rendered documents at the same version, so the bytes are identical
 * either way. Parsed orgs are kept per version; a request costs one small Redis GET (the version).
 */
@Injectable()
export class ConnectionReads {
  private readonly logger = new Logger('ConnectionReads');
  private readonly caches: ReadCaches<OrgEntry>;
  private liveCache: { value: LiveReadModel; until: number } | null = null;
  private readonly liveLoad = new SingleFlight<LiveReadModel>();
  private readonly orgLoad = new SingleFlight<OrgEntry>();
  /** Where the last org read came from: 'redis' or 'postgres' (for tests and ops); each one is counted in the metrics. */
  get lastSource(): ReadTier {
    return this.source;
  }
  set lastSource(tier: ReadTier) {
    this.source = tier;
    apiMetrics().readFrom(tier);
  }
  private source: ReadTier = 'memory';

  constructor(
    @Inject(DataSource) private readonly db: DataSource,
    @Inject(SETTINGS) settings: Settings,
    @Inject(Redis) private readonly redis: Redis,
    @Inject(RedisReadModel) private readonly readModel: RedisReadModel,
  ) {
    this.caches = new ReadCaches<OrgEntry>({
      orgBytes: settings.apiOrgCacheBytes,
      orgEntries: ORG_CACHE_LIMIT,
      responseBytes: settings.apiResponseCacheBytes,
      responsesPerOrg: RESPONSES_PER_ORG,
    });
  }

  /** What the in-memory caches hold (entries and bytes), for tests and ops. */
  cacheStats(): ReturnType<ReadCaches<OrgEntry>['stats']> {
    return this.caches.stats();
  }

  get redisClient(): Redis {
    return this.redis;
  }

  async list(orgId: string, query: ListQuery): Promise<RenderedBody> {
    const { org, minute } = await this.org(orgId);
    const cacheKey = `${minute}|list:${query.label ?? ''}|${query.provider ?? ''}|${query.status ?? ''}|${query.limit}|${query.offset}`;
    return this.caches.render(org, cacheKey, () => {
      const { connections, total } = selectConnections(org.views, query);
      const items = connections.map((v) => org.documentAt(v, minute)).join(',');
      return `{"connections":[${items}],"pagination":${JSON.stringify({ total, limit: query.limit, offset: query.offset })}}`;
    });
  }

  async one(orgId: string, connectionId: string): Promise<RenderedBody | null> {
    const { org, minute } = await this.org(orgId);
    const view = org.byId.get(connectionId);
    if (view === undefined) return null;
    return this.caches.render(org, `${minute}|one:${connectionId}`, () => org.documentAt(view, minute));
  }

  /**
   * GET /v1/connections/{id}/stats (CONTRACT 1.5) at the live stream time (or the time the
   * connection was rendered at, if that is newer): computed from the stored stats window.
   */
  async stats(orgId: string, connectionId: string): Promise<RenderedBody | null> {
    const { org } = await this.org(orgId);
    const view = org.byId.get(connectionId);
    if (view === undefined) return null;
    const { streamTime } = await this.live();
    const stored = parseStatsWindow(org.statsWindowOf(view));
    const at =
      stored.streamTimeMs === null || (streamTime !== null && streamTime > stored.streamTimeMs)
        ? streamTime
        : stored.streamTimeMs;
    return this.caches.render(org, `${at}|stats:${connectionId}`, () =>
      JSON.stringify(connectionStats(connectionId, stored.buckets, at)),
    );
  }

  async labels(orgId: string): Promise<RenderedBody> {
    const { org } = await this.org(orgId);
    return this.caches.render(org, 'labels', () => JSON.stringify(summariseLabels(org.views)));
  }

  /** The live generation and the minute bucket of its stream time, read at most every LIVE_TTL_MS. */
  private async live(): Promise<LiveReadModel> {
    if (this.liveCache && this.liveCache.until > Date.now()) return this.liveCache.value;
    return this.liveLoad.run('live', async () => {
      const { generation, streamTime } = await liveReadModel(this.db);
      const value = { generation, streamTime, streamMinute: streamTime === null ? null : minuteBucket(streamTime) };
      this.liveCache = { value, until: Date.now() + LIVE_TTL_MS };
      return value;
    });
  }

  /** The org's read model, and the minute of stream time it is served at (one per response). */
  private async org(orgId: string): Promise<{ org: OrgEntry; minute: number | null }> {
    const { generation, streamMinute } = await this.live();
    const cacheKey = `${generation}:${orgId}`;
    const cached = this.caches.org(cacheKey);
    if (cached && Date.now() - cached.verifiedAt < ORG_VERIFY_MS) {
      this.lastSource = 'memory';
      return { org: cached, minute: cached.servedMinute(streamMinute) };
    }
    const entry = await this.orgLoad.run(cacheKey, () => this.loadOrg(generation, orgId, cacheKey));
    entry.verifiedAt = Date.now();
    return { org: entry, minute: entry.servedMinute(streamMinute) };
  }

  private async loadOrg(generation: number, orgId: string, cacheKey: string): Promise<OrgEntry> {
    const cached = this.caches.org(cacheKey);
    const { documents, tier, redisError } = await readOrgThroughTiers(
      this.db,
      this.readModel,
      generation,
      orgId,
      cached,
      POSTGRES_RECHECK_MS,
    );
    if (redisError !== undefined)
      this.logger.debug?.(`redis unavailable, reading PostgreSQL: ${(redisError as Error).message}`);
    this.lastSource = tier;
    if (documents === null) return cached!;
    if (cached && cached.version === documents.version) return cached;
    const entry = new OrgEntry(documents.version, documents.documents);
    this.caches.keepOrg(cacheKey, entry);
    return entry;
  }
}
