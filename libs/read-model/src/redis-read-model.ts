import Redis from 'ioredis';

/** One org's read model as Redis holds it: the rendered Connection documents by id, at a version. */
export interface OrgDocuments {
  version: number;
  documents: Map<string, string>;
}

/** What one projector batch changed in one org. */
export interface OrgChange {
  orgId: string;
  version: number;
  upserts: [connectionId: string, document: string][];
  removals: string[];
  /**
   * The change is not carried (a step that wrote more documents than it keeps for Redis): Redis
   * drops the org, and the API refills it from PostgreSQL on its next read.
   */
  dropped?: boolean;
}

// KEYS: per org, its documents hash, the version of that hash, the latest version the projector
// committed. ARGV: per org, version, number of upserts, number of removals, then the upserts as
// (id, document) pairs, then the removed ids (-1 upserts: the change is not carried, drop the org).
// For each org: applies the change only on top of the version just before it; anything else is stale
// and is dropped, so the API refills the org from PostgreSQL. Always records the latest committed
// version. Many orgs per call: one script call for a whole chunk of a projector batch, not one per org.
const APPLY_CHANGES = `
local a = 1
for k = 1, #KEYS, 3 do
  local v = tonumber(ARGV[a])
  local n = tonumber(ARGV[a + 1])
  local up = a + 3
  local rm = up + 2 * math.max(n, 0)
  local nxt = rm + tonumber(ARGV[a + 2])
  local latest = tonumber(redis.call('GET', KEYS[k + 2]) or '0')
  if v > latest then redis.call('SET', KEYS[k + 2], ARGV[a]) end
  local cur = redis.call('GET', KEYS[k + 1])
  if cur then
    cur = tonumber(cur)
    if cur < v then
      if n < 0 or cur ~= v - 1 then
        redis.call('DEL', KEYS[k], KEYS[k + 1])
      else
        for i = up, rm - 1, 2 do redis.call('HSET', KEYS[k], ARGV[i], ARGV[i + 1]) end
        for i = rm, nxt - 1 do redis.call('HDEL', KEYS[k], ARGV[i]) end
        redis.call('SET', KEYS[k + 1], ARGV[a])
      end
    end
  end
  a = nxt
end
return 1`;

/**
 * Bounds of one APPLY_CHANGES call: a script blocks Redis while it runs, so a large batch is cut
 * into calls of at most this many orgs or bytes of documents (all sent in one round trip).
 */
const CHANGES_PER_CALL = { orgs: 1000, bytes: 1024 * 1024 };

// Fills an org read from PostgreSQL, unless Redis already has it at that version or a newer one was
// committed since (then the filler's copy is stale and is not cached).
const FILL = `
local latest = tonumber(redis.call('GET', KEYS[3]) or '0')
local v = tonumber(ARGV[1])
if v < latest then return -1 end
local cur = redis.call('GET', KEYS[2])
if cur and tonumber(cur) >= v then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[2], ARGV[1])
if v > latest then redis.call('SET', KEYS[3], ARGV[1]) end
return 1`;

const READ = `
local v = redis.call('GET', KEYS[2])
if not v then return false end
return {v, redis.call('HGETALL', KEYS[1])}`;

type ScriptedRedis = Redis & {
  applyChanges(keyCount: number, ...keysThenArgs: (string | number)[]): Promise<number>;
  fillOrg(docs: string, version: string, latest: string, ...args: (string | number)[]): Promise<number>;
  readOrg(docs: string, version: string): Promise<[string, string[]] | null>;
};

/**
 * The hot copy of the read model in Redis, per generation and org. Written by the projector after its
 * PostgreSQL commit and by the API when it reads an org from PostgreSQL; version-guarded so an older
 * write never overwrites a newer one. See docs/read-model.md.
 */
export class RedisReadModel {
  private readonly redis: ScriptedRedis;

  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    redis.defineCommand('applyChanges', { lua: APPLY_CHANGES });
    redis.defineCommand('fillOrg', { numberOfKeys: 3, lua: FILL });
    redis.defineCommand('readOrg', { numberOfKeys: 2, lua: READ });
    this.redis = redis as ScriptedRedis;
  }

  private keys(generation: number, orgId: string): [string, string, string] {
    const base = `${this.prefix}g${generation}:org:${orgId}:`;
    return [`${base}docs`, `${base}version`, `${base}latest`];
  }

  /**
   * Applies a batch's changes: one script call per chunk of orgs (CHANGES_PER_CALL), every call in
   * one round trip.
   */
  async applyChanges(generation: number, changes: OrgChange[]): Promise<void> {
    if (changes.length === 0) return;
    const pipeline = this.redis.pipeline() as unknown as ScriptedRedis & {
      exec(): Promise<[Error | null, unknown][] | null>;
    };
    let keys: string[] = [];
    let args: (string | number)[] = [];
    let bytes = 0;
    const flush = () => {
      if (keys.length === 0) return;
      void pipeline.applyChanges(keys.length, ...keys, ...args);
      keys = [];
      args = [];
      bytes = 0;
    };
    for (const c of changes) {
      keys.push(...this.keys(generation, c.orgId));
      if (c.dropped) args.push(c.version, -1, 0);
      else {
        args.push(c.version, c.upserts.length, c.removals.length);
        for (const [id, doc] of c.upserts) {
          args.push(id, doc);
          bytes += doc.length;
        }
        for (const id of c.removals) args.push(id);
      }
      if (keys.length >= 3 * CHANGES_PER_CALL.orgs || bytes >= CHANGES_PER_CALL.bytes) flush();
    }
    flush();
    const results = await pipeline.exec();
    const failed = results?.find(([error]) => error);
    if (failed) throw failed[0];
  }

  /** Drops orgs' documents (not their latest version), so the next read refills them from PostgreSQL. */
  async invalidate(generation: number, orgIds: string[]): Promise<void> {
    if (orgIds.length === 0) return;
    const keys: string[] = [];
    for (const orgId of orgIds) keys.push(...this.keys(generation, orgId).slice(0, 2));
    await this.redis.del(...keys);
  }

  /** Several orgs' versions in Redis in one MGET: one per org id given, in that order (null: not held). */
  async versions(generation: number, orgIds: string[]): Promise<(number | null)[]> {
    if (orgIds.length === 0) return [];
    const values = await this.redis.mget(orgIds.map((orgId) => this.keys(generation, orgId)[1]));
    return values.map((v) => (v === null ? null : Number(v)));
  }

  /**
   * Several orgs' read models (documents and version, read together by one script each; null when
   * Redis does not hold the org), in one round trip: one per org id given, in that order.
   */
  async readMany(generation: number, orgIds: string[]): Promise<(OrgDocuments | null)[]> {
    if (orgIds.length === 0) return [];
    const pipeline = this.redis.pipeline() as unknown as ScriptedRedis & {
      exec(): Promise<[Error | null, unknown][] | null>;
    };
    for (const orgId of orgIds) {
      const [docs, version] = this.keys(generation, orgId);
      void pipeline.readOrg(docs, version);
    }
    const results = (await pipeline.exec()) ?? [];
    return orgIds.map((_, i) => {
      const [error, reply] = results[i] ?? [new Error('no reply')];
      if (error) throw error;
      if (!reply) return null;
      const [v, flat] = reply as [string, string[]];
      const documents = new Map<string, string>();
      for (let j = 0; j < flat.length; j += 2) documents.set(flat[j], flat[j + 1]);
      return { version: Number(v), documents };
    });
  }

  /**
   * Caches several orgs read from PostgreSQL, in one round trip: each unless Redis already has it at
   * that version or a newer one was committed since (FILL).
   */
  async fillMany(generation: number, orgs: { orgId: string; org: OrgDocuments }[]): Promise<void> {
    if (orgs.length === 0) return;
    const pipeline = this.redis.pipeline() as unknown as ScriptedRedis & {
      exec(): Promise<[Error | null, unknown][] | null>;
    };
    for (const { orgId, org } of orgs) {
      const args: (string | number)[] = [org.version];
      for (const [id, doc] of org.documents) args.push(id, doc);
      void pipeline.fillOrg(...this.keys(generation, orgId), ...args);
    }
    const failed = (await pipeline.exec())?.find(([error]) => error);
    if (failed) throw failed[0];
  }

  /** Drops every key of a generation (after it is retired). Returns how many keys were removed. */
  async dropGeneration(generation: number): Promise<number> {
    let removed = 0;
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${this.prefix}g${generation}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) removed += await this.redis.del(...keys);
    } while (cursor !== '0');
    return removed;
  }
}
