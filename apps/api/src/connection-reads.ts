import { Inject, Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import Redis from 'ioredis';
import { DataSource } from 'typeorm';
import { ConnectionView, ListQuery, selectConnections, summariseLabels } from '@psp/domain';
import { SETTINGS, Settings } from '@psp/config';
import { SingleFlight } from './single-flight';
import { orgBytes, ReadCaches, RenderedBody } from './read-caches';
import {
  createRedis,
  liveGeneration,
  OrgDocuments,
  orgVersionInPostgres,
  readOrgFromPostgres,
  RedisReadModel,
} from '@psp/read-model';

export type { RenderedBody } from './read-caches';

let nextOrgEntryId = 1;

/** One org's read model as this API instance holds it, parsed and sorted once per version. */
class OrgEntry {
  /** This parsed version's identity: its rendered bodies are cached under it. */
  readonly id = nextOrgEntryId++;
  /** What it is counted at against API_ORG_CACHE_BYTES. */
  readonly bytes: number;
  readonly views: ConnectionView[];
  readonly documentOf = new Map<ConnectionView, string>();
  readonly byId = new Map<string, string>();
  /** When this instance last compared the version with PostgreSQL's. */
  checkedInPostgresAt = Date.now();
  /** When this instance last compared the version with Redis's (or PostgreSQL's). */
  verifiedAt = 0;

  constructor(
    readonly version: number,
    documents: Map<string, string>,
  ) {
    const views: ConnectionView[] = [];
    for (const [id, document] of documents) {
      const view = JSON.parse(document) as ConnectionView;
      views.push(view);
      this.documentOf.set(view, document);
      this.byId.set(id, document);
    }
    this.views = views;
    this.bytes = orgBytes(documents.values());
  }
}

/** At most this many parsed orgs, whatever they weigh (API_ORG_CACHE_BYTES bounds their bytes). */
const ORG_CACHE_LIMIT = 5000;
/** Rendered bodies kept per org version (API_RESPONSE_CACHE_BYTES bounds all orgs' bodies together). */
const RESPONSES_PER_ORG = 256;
const GENERATION_TTL_MS = 1000;
const POSTGRES_RECHECK_MS = 1000;
/** For this long after a version check, an org is served from memory without asking Redis again. */
const ORG_VERIFY_MS = 50;

/**
 * Serves the read model: from Redis when it holds the org, from PostgreSQL otherwise (then refilling
 * Redis). Both hold the same rendered documents at the same version, so the bytes are identical
 * either way. Parsed orgs are kept per version; a request costs one small Redis GET (the version).
 */
@Injectable()
export class ConnectionReads implements OnModuleDestroy {
  private readonly logger = new Logger('ConnectionReads');
  private readonly redis: Redis;
  private readonly readModel: RedisReadModel;
  private readonly caches: ReadCaches<OrgEntry>;
  private generation: { value: number; until: number } | null = null;
  private readonly generationLoad = new SingleFlight<number>();
  private readonly orgLoad = new SingleFlight<OrgEntry>();
  /** Where the last org read came from: 'redis' or 'postgres' (for tests and ops). */
  lastSource: 'redis' | 'postgres' | 'memory' = 'memory';

  constructor(
    @Inject(DataSource) private readonly db: DataSource,
    @Inject(SETTINGS) settings: Settings,
  ) {
    this.redis = createRedis(settings, 'api');
    this.readModel = new RedisReadModel(this.redis, settings.redisKeyPrefix);
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
    const org = await this.org(orgId);
    const cacheKey = `list:${query.label ?? ''}|${query.provider ?? ''}|${query.status ?? ''}|${query.limit}|${query.offset}`;
    return this.caches.render(org, cacheKey, () => {
      const { connections, total } = selectConnections(org.views, query);
      const items = connections.map((v) => org.documentOf.get(v)!).join(',');
      return `{"connections":[${items}],"pagination":${JSON.stringify({ total, limit: query.limit, offset: query.offset })}}`;
    });
  }

  async one(orgId: string, connectionId: string): Promise<RenderedBody | null> {
    const org = await this.org(orgId);
    const document = org.byId.get(connectionId);
    if (document === undefined) return null;
    return this.caches.render(org, `one:${connectionId}`, () => document);
  }

  async labels(orgId: string): Promise<RenderedBody> {
    const org = await this.org(orgId);
    return this.caches.render(org, 'labels', () => JSON.stringify(summariseLabels(org.views)));
  }

  private async liveGeneration(): Promise<number> {
    if (this.generation && this.generation.until > Date.now()) return this.generation.value;
    return this.generationLoad.run('live', async () => {
      const value = await liveGeneration(this.db);
      this.generation = { value, until: Date.now() + GENERATION_TTL_MS };
      return value;
    });
  }

  private async org(orgId: string): Promise<OrgEntry> {
    const generation = await this.liveGeneration();
    const cacheKey = `${generation}:${orgId}`;
    const cached = this.caches.org(cacheKey);
    if (cached && Date.now() - cached.verifiedAt < ORG_VERIFY_MS) {
      this.lastSource = 'memory';
      return cached;
    }
    const entry = await this.orgLoad.run(cacheKey, () => this.loadOrg(generation, orgId, cacheKey));
    entry.verifiedAt = Date.now();
    return entry;
  }

  private async loadOrg(generation: number, orgId: string, cacheKey: string): Promise<OrgEntry> {
    const cached = this.caches.org(cacheKey);
    let documents: OrgDocuments | null = null;
    try {
      let version = await this.readModel.version(generation, orgId);
      if (version !== null && cached && Date.now() - cached.checkedInPostgresAt > POSTGRES_RECHECK_MS) {
        // Bounded staleness: should an update ever have missed Redis, PostgreSQL's newer version wins.
        const committed = await orgVersionInPostgres(this.db, generation, orgId);
        cached.checkedInPostgresAt = Date.now();
        if (committed > version) version = null;
      }
      if (version !== null) {
        if (cached && cached.version === version) {
          this.lastSource = 'memory';
          return cached;
        }
        documents = await this.readModel.read(generation, orgId);
        if (documents) this.lastSource = 'redis';
      }
      if (!documents) {
        documents = await readOrgFromPostgres(this.db, generation, orgId);
        this.lastSource = 'postgres';
        await this.readModel.fill(generation, orgId, documents);
      }
    } catch (error) {
      // Redis is down or slow: PostgreSQL holds the same read model.
      if (!documents) {
        this.logger.debug?.(`redis unavailable, reading PostgreSQL: ${(error as Error).message}`);
        const version = await orgVersionInPostgres(this.db, generation, orgId);
        if (cached && cached.version === version) {
          this.lastSource = 'memory';
          return cached;
        }
        documents = await readOrgFromPostgres(this.db, generation, orgId);
        this.lastSource = 'postgres';
      }
    }
    if (cached && cached.version === documents.version) return cached;
    const entry = new OrgEntry(documents.version, documents.documents);
    this.caches.keepOrg(cacheKey, entry);
    return entry;
  }

  async onModuleDestroy(): Promise<void> {
    this.redis.disconnect();
  }
}
