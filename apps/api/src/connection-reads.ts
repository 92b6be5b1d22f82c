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
  statsStreamTime,
  summariseLabels,
  withHealth,
} from '@psp/domain';
import { SETTINGS, Settings } from '@psp/config';
import { apiMetrics, ReadTier } from './metrics';
import { SingleFlight } from './single-flight';
import { Batcher } from './batcher';
import { orgBytes, parsedOrgBytes, ReadCaches, RenderedBody } from './read-caches';
import { liveReadModel, parseStoredDocument, readOrgsThroughTiers, RedisReadModel } from '@psp/read-model';

export type { RenderedBody } from './read-caches';

let nextOrgEntryId = 1;

/**
 * The minute a stored document was rendered at (its health window's `r`), read without parsing the
 * document: the window line starts `{"r":<minute or null>,` (healthWindowText).
 */
export function renderedAtOf(stored: string): number | null {
  const line = stored.indexOf('\n') + 1;
  if (line > 0 && stored.startsWith('{"r":', line)) {
    const end = stored.indexOf(',', line + 5);
    const text = stored.slice(line + 5, end);
    if (text === 'null') return null;
    const r = Number(text);
    if (end > 0 && Number.isInteger(r)) return r;
  }
  return parseStoredDocument(stored).window.renderedAt;
}

/**
 * One org's read model as this API instance holds it, per version: the stored documents as read,
 * kept outside the JavaScript heap (one Buffer of their UTF-8 bytes), and parsed only when a body is
 * to be rendered (`ParsedOrg`, cached apart). What every request needs (the version, when it was last
 * checked, the minute it is served at) is here without parsing anything. Off the heap, 20,000 orgs
 * cost the garbage collector nothing to trace and do not make V8 grow its heap (V8 lets the heap
 * grow to a multiple of what is live on it).
 */
class OrgEntry {
  /** This version's identity: its rendered bodies and its parsed form are cached under it. */
  readonly id = nextOrgEntryId++;
  /** What it is counted at against API_ORG_CACHE_BYTES. */
  readonly bytes: number;
  /** The newest minute any of its connections was rendered at: it is never served at an older one. */
  readonly renderedUpTo: number | null;
  /** When this instance last compared the version with PostgreSQL's. */
  checkedInPostgresAt = Date.now();
  /** When this instance last compared the version with Redis's (or PostgreSQL's). */
  verifiedAt = 0;
  /** The documents' UTF-8 bytes, one after the other. */
  private readonly data: Buffer;
  /** Per connection id, where its document ends in `data` (it starts where the previous one ends). */
  private readonly ends = new Map<string, number>();

  constructor(
    readonly version: number,
    documents: Map<string, string>,
  ) {
    let renderedUpTo: number | null = null;
    let length = 0;
    for (const text of documents.values()) {
      const r = renderedAtOf(text);
      if (r !== null && (renderedUpTo === null || r > renderedUpTo)) renderedUpTo = r;
      length += Buffer.byteLength(text, 'utf8');
    }
    this.data = Buffer.allocUnsafeSlow(length);
    let at = 0;
    for (const [id, text] of documents) {
      at += this.data.write(text, at, 'utf8');
      this.ends.set(id, at);
    }
    this.renderedUpTo = renderedUpTo;
    this.bytes = orgBytes(documents.values());
  }

  has(connectionId: string): boolean {
    return this.ends.has(connectionId);
  }

  /** The stored documents by connection id, as read. */
  documents(): Map<string, string> {
    const documents = new Map<string, string>();
    let start = 0;
    for (const [id, end] of this.ends) {
      documents.set(id, this.data.toString('utf8', start, end));
      start = end;
    }
    return documents;
  }

  /** The minute this org is served at, given the live stream time's minute. */
  servedMinute(streamMinute: number | null): number | null {
    if (streamMinute === null) return this.renderedUpTo;
    return this.renderedUpTo === null || streamMinute > this.renderedUpTo ? streamMinute : this.renderedUpTo;
  }
}

/**
 * An org version parsed. Each connection is stored as rendered when it last changed, with its
 * health window; its bytes at a later minute of stream time get the health of that window at that
 * minute (`documentAt`), so one response shows every connection's health at the same stream time,
 * and a new minute re-renders nothing anywhere but here, lazily, for what is read.
 */
class ParsedOrg {
  readonly views: ConnectionView[] = [];
  private readonly stored = new Map<
    ConnectionView,
    { connection: string; window: HealthWindow; statsWindow: string }
  >();
  readonly byId = new Map<string, ConnectionView>();

  constructor(documents: Map<string, string>) {
    for (const [id, text] of documents) {
      const stored = parseStoredDocument(text);
      const view = JSON.parse(stored.connection) as ConnectionView;
      this.views.push(view);
      this.stored.set(view, stored);
      this.byId.set(id, view);
    }
  }

  /** The stored stats window (CONTRACT 1.5) of a connection, unparsed, and its validation cap. */
  statsWindowOf(view: ConnectionView): { statsWindow: string; capped: boolean } {
    const { statsWindow, window } = this.stored.get(view)!;
    return { statsWindow, capped: window.capped };
  }

  /**
   * The stream time (ms) the connection's stats window was stored at, parsed once per org version:
   * a stats request needs it to find its cached body, and parsing the whole window per request to
   * read it cost more than the rest of the request.
   */
  statsStoredAt(view: ConnectionView): number | null {
    let at = this.statsTimes.get(view);
    if (at === undefined) {
      at = parseStatsWindow(this.stored.get(view)!.statsWindow).streamTimeMs;
      this.statsTimes.set(view, at);
    }
    return at;
  }

  private readonly statsTimes = new Map<ConnectionView, number | null>();

  /**
   * The connection's bytes with its health at minute `b`. Not kept: a body is made once per org
   * version, minute and query and then served from the rendered bodies, and keeping each document
   * at the minute for the next body saved 0.9 µs per document while holding a copy of every
   * document read on the heap (issue 20, docs/api.md "The read path").
   */
  documentAt(view: ConnectionView, b: number | null): string {
    const { connection, window } = this.stored.get(view)!;
    const health = healthOfWindow(window, b);
    return health.score === view.health_score && health.status === view.health_status
      ? connection
      : withHealth(connection, health);
  }
}

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
/** At most this many orgs are read through the tiers together (one MGET, one statement). */
const ORG_BATCH = 500;
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
  private readonly orgLoads = new Batcher<string, OrgEntry>((keys) => this.loadOrgs(keys), ORG_BATCH);
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
      const parsed = this.parsed(org);
      const { connections, total } = selectConnections(parsed.views, query);
      const items = connections.map((v) => parsed.documentAt(v, minute)).join(',');
      return `{"connections":[${items}],"pagination":${JSON.stringify({ total, limit: query.limit, offset: query.offset })}}`;
    });
  }

  async one(orgId: string, connectionId: string): Promise<RenderedBody | null> {
    const { org, minute } = await this.org(orgId);
    if (!org.has(connectionId)) return null;
    return this.caches.render(org, `${minute}|one:${connectionId}`, () => {
      const parsed = this.parsed(org);
      return parsed.documentAt(parsed.byId.get(connectionId)!, minute);
    });
  }

  /**
   * GET /v1/connections/{id}/stats (CONTRACT 1.5, 1.5b) at the live stream time (or the time the
   * connection was rendered at, if that is newer): computed from the stored stats window and the
   * validation cap of the stored health window (the outlook honours it).
   */
  async stats(orgId: string, connectionId: string): Promise<RenderedBody | null> {
    const { org } = await this.org(orgId);
    if (!org.has(connectionId)) return null;
    const { streamTime } = await this.live();
    const parsed = this.parsed(org);
    const view = parsed.byId.get(connectionId)!;
    const at = statsStreamTime(parsed.statsStoredAt(view), streamTime);
    return this.caches.render(org, `${at}|stats:${connectionId}`, () => {
      const { statsWindow, capped } = parsed.statsWindowOf(view);
      return JSON.stringify(connectionStats(connectionId, parseStatsWindow(statsWindow).buckets, at, capped));
    });
  }

  async labels(orgId: string): Promise<RenderedBody> {
    const { org } = await this.org(orgId);
    return this.caches.render(org, 'labels', () => JSON.stringify(summariseLabels(this.parsed(org).views)));
  }

  /** The org version parsed: from the parsed-org cache, else parsed now (and kept there). */
  private parsed(org: OrgEntry): ParsedOrg {
    return this.caches.parsed(org, () => {
      const documents = org.documents();
      return { value: new ParsedOrg(documents), bytes: parsedOrgBytes(documents.values()) };
    });
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
    const entry = await this.orgLoads.load(cacheKey);
    entry.verifiedAt = Date.now();
    return { org: entry, minute: entry.servedMinute(streamMinute) };
  }

  /**
   * The orgs asked for since the last turn of the event loop, through the tiers together (one MGET,
   * at most one PostgreSQL version statement, one Redis pipeline, one PostgreSQL read): the round
   * trips per request do not grow with the number of orgs served. Keys are `<generation>:<org id>`.
   */
  private async loadOrgs(cacheKeys: string[]): Promise<OrgEntry[]> {
    const byGeneration = new Map<number, number[]>();
    cacheKeys.forEach((key, i) => {
      const generation = Number(key.slice(0, key.indexOf(':')));
      const list = byGeneration.get(generation);
      if (list) list.push(i);
      else byGeneration.set(generation, [i]);
    });
    const entries: OrgEntry[] = new Array(cacheKeys.length);
    for (const [generation, indices] of byGeneration) {
      const held = indices.map((i) => this.caches.org(cacheKeys[i]));
      const reads = await readOrgsThroughTiers(
        this.db,
        this.readModel,
        generation,
        indices.map((i, j) => ({ orgId: cacheKeys[i].slice(cacheKeys[i].indexOf(':') + 1), held: held[j] })),
        POSTGRES_RECHECK_MS,
      );
      reads.forEach(({ documents, tier, redisError }, j) => {
        const i = indices[j];
        const cached = held[j];
        if (redisError !== undefined)
          this.logger.debug?.(`redis unavailable, reading PostgreSQL: ${(redisError as Error).message}`);
        this.lastSource = tier;
        if (documents === null) entries[i] = cached!;
        else if (cached && cached.version === documents.version) entries[i] = cached;
        else {
          const entry = new OrgEntry(documents.version, documents.documents);
          this.caches.keepOrg(cacheKeys[i], entry);
          entries[i] = entry;
        }
      });
    }
    return entries;
  }
}
