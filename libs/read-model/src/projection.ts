import { DataSource } from 'typeorm';
import {
  advanceStreamTime,
  applyEvent,
  ConnectionState,
  healthAt,
  healthWindowAt,
  initialConnectionState,
  isListed,
  minuteBucket,
  nextStatusChange,
  pruneHealthWindow,
  toConnectionView,
  statsWindowText,
  stateFromJson,
  stateToJson,
  validationCapApplies,
} from '@psp/domain';
import { storedDocument } from './stored-document';
import { LoggedEvent, LogPosition, readLogAfter, Sql } from '@psp/storage';
import { allShards } from '@psp/domain';
import { generationLag, readShardCheckpoint, ShardCheckpoint, writeShardCheckpoint } from './shard-checkpoints';
import { currentShardLease } from './shard-leases';
import { leaseStillHeld } from './shard-assignment';
import { shardLockKey } from './shard-lock';
import { Checkpoint, readCheckpoint } from './generations';
import { bumpOrgVersions } from './org-read-model';
import { connectionKey, HealthChain, readStoredStates, upsertConnectionRows } from './connection-rows';
import { LRUCache } from 'lru-cache';
import { HealthChangedInput, sweepHealthChanges, writeHealthChanges } from './health-changes';
import { tracingOn } from '@psp/observability';
import { StepTrace } from './step-tracing';
import { OrgChange, RedisReadModel } from './redis-read-model';

/** A generation's checkpoint: where in the log it stands, and its stream time. */
export interface ProjectionStep {
  applied: number;
  connectionsWritten: number;
  orgsChanged: number;
  /** connection.health_changed messages written to the outbox by this step. */
  healthChanges: number;
  checkpoint: Checkpoint;
}

/**
 * What a state held as an object (a replay's changed connections waiting for their write) is counted
 * at: STATE_BASE_BYTES + STATE_BYTES_PER_JSON_BYTE × the length of its stored JSON (`stateToJson`) +
 * STATE_BYTES_PER_BUCKET × its minute buckets, whose arrays weigh far more in the heap than in JSON.
 * `npm run bench:memory`: 1.27 KB of heap for a state with no calls (953 B of JSON), 28.2 KB with
 * calls in all 60 minutes (5.2 KB of JSON); the estimate is 1.05-1.2× that.
 */
export const STATE_BASE_BYTES = 256;
export const STATE_BYTES_PER_JSON_BYTE = 1.4;
export const STATE_BYTES_PER_BUCKET = 450;
/** A state's estimated weight in the heap, from the length of its stored JSON. */
function estimatedStateBytes(state: ConnectionState, stateJsonBytes: number): number {
  return Math.ceil(
    STATE_BASE_BYTES + stateJsonBytes * STATE_BYTES_PER_JSON_BYTE + state.buckets.length * STATE_BYTES_PER_BUCKET,
  );
}

/**
 * The state cache holds each state as its stored JSON in UTF-8 bytes, outside the JavaScript heap
 * (parsed again when an event needs it, ~1 µs per 100 B): exact in bytes, ~3× fewer bytes than the
 * object, and nothing for the garbage collector to trace (as objects, 100,000 cached states made GC
 * 31% of the projector's CPU at 100,000 connections). An entry is counted at its bytes +
 * CACHED_STATE_OVERHEAD_BYTES + 2 per key character (the entry, the Buffer and its backing store;
 * `npm run bench:memory`: 1.02× what 10,000 states take).
 */
export const CACHED_STATE_OVERHEAD_BYTES = 320;

function cachedState(stateJson: string): Buffer {
  // Not from Buffer's shared pool: a pooled slice would keep its whole 8 KiB slab alive.
  const bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(stateJson));
  bytes.write(stateJson);
  return bytes;
}

/** Default bound of the projection's state cache (PROJECTOR_STATE_CACHE_BYTES). */
export const DEFAULT_STATE_CACHE_BYTES = 256 * 1024 * 1024;

const key = connectionKey;

/**
 * The connection states a projector process keeps in memory, shared by the shards it projects: each
 * state as its stored JSON in bytes, least recently used forgotten first, bounded in bytes; and the
 * health-change chain tail of each connection whose state is held (kept exactly as long as its state).
 */
export class StateCache {
  readonly states: LRUCache<string, Buffer>;
  readonly chains = new Map<string, HealthChain>();

  constructor(readonly maxBytes = DEFAULT_STATE_CACHE_BYTES) {
    this.states = new LRUCache<string, Buffer>({
      maxSize: maxBytes,
      sizeCalculation: (bytes, k) => bytes.length + CACHED_STATE_OVERHEAD_BYTES + 2 * k.length,
      dispose: (_state, k, reason) => {
        if (reason !== 'set') this.chains.delete(k);
      },
    });
  }

  clear(): void {
    this.states.clear();
    this.chains.clear();
  }

  /**
   * Lets the least recently used states go until the cache holds at most `fraction` of what it held
   * (memory pressure: the process's resident memory passed its budget). Returns the bytes let go.
   */
  shed(fraction = 0.5): number {
    const before = this.states.calculatedSize;
    const target = before * fraction;
    while (this.states.calculatedSize > target && this.states.size > 0) this.states.pop();
    return before - this.states.calculatedSize;
  }
}

/** A step's commit was refused: another process took the shard (its lease moved on). */
export class ShardLeaseLost extends Error {
  constructor(
    readonly shard: number,
    readonly taken: string | null,
    readonly current: string,
  ) {
    super(`shard ${shard} was taken by another projector (lease ${current}, this process took ${taken ?? 'none'})`);
    this.name = 'ShardLeaseLost';
  }
}

function later(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}

/**
 * Projects one shard of the event log (the events of the orgs `psp_shard(org_id)` puts in it) into
 * one generation of the read model. Each step reads the shard's next events in the log's order and,
 * in ONE PostgreSQL transaction, writes the connections they change and the shard's checkpoint
 * (exactly-once: a crash rolls both back). Redis is written after the commit, version-guarded. A step
 * writes only the connections its events touch, rendered at the generation's stream time (the
 * greatest of all shards'; readers evaluate each stored health window at the stream time they serve).
 *
 * A step holds the shard's transaction-level advisory lock (one step of a shard at a time, whoever
 * runs it) and, when the process took the shard under a lease (`lease`), commits only while that
 * lease is current (ShardLeases: fencing).
 */
export class ShardProjection {
  private readonly cache: StateCache;
  private cachedAt: LogPosition | null = null;
  /** Orgs whose last update did not reach Redis. */
  private readonly staleInRedis = new Set<string>();
  /** The Redis update of the latest step (updateRedis never rejects). */
  private redisInFlight: Promise<void> = Promise.resolve();
  /** The lease this process holds the shard under (null: no fencing, e.g. a replay's own steps). */
  lease: string | null = null;

  constructor(
    private readonly db: DataSource,
    readonly generation: number,
    readonly shard: number,
    private readonly redis: RedisReadModel | null,
    private readonly batchSize: number,
    options: { deferWrites?: boolean; cache?: StateCache; stateCacheBytes?: number } = {},
  ) {
    this.deferWrites = options.deferWrites ?? false;
    this.cache = options.cache ?? new StateCache(options.stateCacheBytes ?? DEFAULT_STATE_CACHE_BYTES);
    this.flushBytes = Math.floor(this.cache.maxBytes / 2);
  }

  private get states(): LRUCache<string, Buffer> {
    return this.cache.states;
  }

  private get chains(): Map<string, HealthChain> {
    return this.cache.chains;
  }

  /**
   * The first event the latest step read from the log (null when it failed before reading any): after
   * a failed step of one event, the event the projection cannot get past.
   */
  firstAttempted: LoggedEvent | null = null;

  /**
   * Building a generation that is not served yet (a replay): the connections a step changes are kept
   * in memory and written together once they weigh half the state cache or the log is read to its
   * end, with the checkpoint of that moment, in one transaction. A connection changed by many batches
   * is then written once, not once per batch. Until then nothing is committed: a crash or an
   * interruption resumes from the last write, exactly once as before.
   */
  private readonly deferWrites: boolean;
  /** The chains of the connections the current step loaded (kept even if the cache let them go). */
  private stepChains = new Map<string, HealthChain>();
  private readonly flushBytes: number;
  private pending: {
    at: LogPosition;
    streamTime: number | null;
    eventsApplied: number;
    dirty: Map<string, ConnectionState>;
    bytes: number;
  } | null = null;

  /**
   * Projects up to one batch of the shard (`limit` events, the batch size by default); `applied` is 0
   * when the shard has caught up with the log.
   */
  async step(limit = this.batchSize): Promise<ProjectionStep> {
    this.firstAttempted = null;
    let changes: OrgChange[] = [];
    let result!: ProjectionStep;
    const startedAt = tracingOn() ? Date.now() : 0;
    let stepTrace = null as StepTrace | null; // set in the transaction (when tracing is on)
    try {
      result = await this.db.transaction(async (tx) => {
        // One step of this shard of this generation at a time; without taking a transaction id (no
        // row lock), so this transaction does not hold back the log's xmin while it reads.
        await tx.query(`SELECT pg_advisory_xact_lock(hashtext('psp-connections:projection'), $1)`, [
          shardLockKey(this.generation, this.shard),
        ]);
        const checkpoint = await readShardCheckpoint(tx, this.generation, this.shard);
        if (
          !this.cachedAt ||
          this.cachedAt.transactionId !== checkpoint.at.transactionId ||
          this.cachedAt.position !== checkpoint.at.position
        ) {
          // Someone else advanced this shard: what we hold of it may be stale.
          this.cache.clear();
        }
        this.cachedAt = null;
        const pending = this.pending;
        const logged = await readLogAfter(tx, pending?.at ?? checkpoint.at, limit, this.shard);
        this.firstAttempted = logged[0] ?? null;
        if (checkpoint.status === 'retired') {
          // A replay switched past this generation while this step waited for the lock: nothing more.
          return this.nothing(checkpoint);
        }
        if (logged.length === 0 && pending) {
          // Read to the end: write what was kept back.
          const written = await this.writeDeferred(tx, pending, checkpoint);
          return { applied: 0, ...written };
        }
        if (logged.length === 0) {
          // Caught up: health may still change as stream time has moved (due connections). The states
          // held are still current (a sweep changes chains only, and keeps those held in step).
          this.cachedAt = checkpoint.at;
          const healthChanges =
            checkpoint.status === 'live' && checkpoint.streamTime !== null
              ? await this.sweep(tx, checkpoint.streamTime)
              : 0;
          if (healthChanges > 0) await this.checkLease(tx);
          return { ...this.nothing(checkpoint), healthChanges };
        }

        if (startedAt) stepTrace = new StepTrace(startedAt, this.generation, this.shard, logged);
        const touched = await this.loadStates(
          tx,
          logged.map((l) => l.event),
        );
        // The generation's stream time: the greatest of every shard's, this step's events included.
        let streamTime = later(pending ? pending.streamTime : null, checkpoint.streamTime);
        for (const { event } of logged) {
          applyEvent(touched.get(key(event.orgId, event.connectionId))!, event);
          streamTime = advanceStreamTime(streamTime, event.occurredAt);
        }
        if (this.deferWrites) {
          const kept = pending ?? {
            at: checkpoint.at,
            streamTime: checkpoint.streamTime,
            eventsApplied: checkpoint.eventsApplied,
            dirty: new Map<string, ConnectionState>(),
            bytes: 0,
          };
          for (const [k, state] of touched) {
            if (!kept.dirty.has(k)) kept.bytes += estimatedStateBytes(state, 1000);
            kept.dirty.set(k, state);
          }
          kept.at = logged[logged.length - 1].at;
          kept.streamTime = streamTime;
          kept.eventsApplied += logged.length;
          this.pending = kept;
          if (logged.length === limit && kept.bytes < this.flushBytes) {
            // More to read, and room to keep it: nothing written yet.
            this.cachedAt = checkpoint.at;
            return {
              applied: logged.length,
              connectionsWritten: 0,
              orgsChanged: 0,
              healthChanges: 0,
              checkpoint: { at: kept.at, streamTime, eventsApplied: kept.eventsApplied, status: checkpoint.status },
            };
          }
          const written = await this.writeDeferred(tx, kept, checkpoint);
          return { applied: logged.length, ...written };
        }
        // Health changes of the live read model, in this same transaction (CONTRACT 2.5: exactly once):
        // those of the connections written now, then those of the connections due by the clock.
        const live = checkpoint.status === 'live';
        const { chains, changes: seen } = this.chainBook(live);
        const written = await writeConnections(tx, this.generation, [...touched.values()], streamTime, chains);
        await writeHealthChanges(tx, this.generation, seen, stepTrace?.outboxContexts(seen));
        const healthChanges =
          seen.length + (live && streamTime !== null ? await this.sweep(tx, streamTime, stepTrace?.context) : 0);
        const versions = await bumpOrgVersions(tx, this.generation, written);
        const last = logged[logged.length - 1].at;
        const eventsApplied = checkpoint.eventsApplied + logged.length;
        await writeShardCheckpoint(tx, this.generation, this.shard, { at: last, streamTime, eventsApplied });
        await this.checkLease(tx);
        const byOrg = new Map<string, OrgChange>();
        for (const v of versions) byOrg.set(v.orgId, { orgId: v.orgId, version: v.version, upserts: [], removals: [] });
        for (const w of written) {
          const change = byOrg.get(w.orgId)!;
          if (w.document === null) change.removals.push(w.connectionId);
          else change.upserts.push([w.connectionId, w.document]);
        }
        changes = [...byOrg.values()];
        // Keep each state written, as the JSON just stored.
        for (const w of written) this.states.set(key(w.orgId, w.connectionId), cachedState(w.stateJson));
        this.cachedAt = last;
        return {
          applied: logged.length,
          connectionsWritten: written.length,
          healthChanges,
          orgsChanged: changes.length,
          checkpoint: { at: last, streamTime, eventsApplied, status: checkpoint.status },
        };
      });
    } catch (error) {
      stepTrace?.end(null, error);
      this.cache.clear();
      this.cachedAt = null;
      this.pending = null;
      throw error;
    }
    stepTrace?.end(result);
    if (this.redis) {
      // Redis is updated while the next step reads and writes PostgreSQL: one update in flight at a
      // time, in step order (each is version-guarded anyway). A step that finds nothing new returns
      // only once Redis holds everything committed before it.
      const previous = this.redisInFlight;
      this.redisInFlight = previous.then(() => this.updateRedis(changes));
      await (result.applied === 0 ? this.redisInFlight : previous);
    }
    return result;
  }

  /** Resolves once every committed step's update has reached Redis (or was marked stale there). */
  settled(): Promise<void> {
    return this.redisInFlight;
  }

  private nothing(checkpoint: ShardCheckpoint): ProjectionStep {
    return { applied: 0, connectionsWritten: 0, orgsChanged: 0, healthChanges: 0, checkpoint };
  }

  /**
   * Fencing: the shard's lease, read FOR SHARE as the transaction's last statement, must still be the
   * one this process took (a claim by another process waits for this commit, or moved the lease
   * already: then nothing of this step is committed).
   */
  private async checkLease(tx: Sql): Promise<void> {
    if (this.lease === null) return;
    const current = await currentShardLease(tx, this.shard);
    if (!leaseStillHeld(this.lease, current)) throw new ShardLeaseLost(this.shard, this.lease, current);
  }

  /** The chains of the connections in memory for writeConnections; `changes` collects the messages. */
  private chainBook(emit: boolean): { chains: HealthChains; changes: HealthChangedInput[] } {
    const changes: HealthChangedInput[] = [];
    const chains: HealthChains = {
      emit,
      get: (k) => this.stepChains.get(k),
      changed: (orgId, connectionId, chain, message) => {
        const k = key(orgId, connectionId);
        this.stepChains.set(k, chain);
        // Its state is cached once written (the chain goes when the cache lets the state go).
        this.chains.set(k, chain);
        changes.push(message);
      },
    };
    return { chains, changes };
  }

  /** The sweep of the shard's connections due by the clock, keeping the chains held in memory right. */
  private sweep(tx: Sql, streamTime: number, traceContext?: string): Promise<number> {
    return sweepHealthChanges(
      tx,
      this.generation,
      this.shard,
      streamTime,
      undefined,
      (orgId, connectionId, chain) => {
        const k = key(orgId, connectionId);
        if (this.chains.has(k)) this.chains.set(k, chain);
      },
      traceContext,
    );
  }

  /** Writes the connections kept back and the checkpoint they reach (deferred writes, see `pending`). */
  private async writeDeferred(
    tx: Sql,
    kept: NonNullable<ShardProjection['pending']>,
    checkpoint: ShardCheckpoint,
  ): Promise<Omit<ProjectionStep, 'applied'>> {
    const states = [...kept.dirty.values()];
    const streamTime = later(kept.streamTime, checkpoint.streamTime);
    const written = await writeConnections(tx, this.generation, states, streamTime, this.chainBook(false).chains);
    await bumpOrgVersions(tx, this.generation, written);
    await writeShardCheckpoint(tx, this.generation, this.shard, { ...kept, streamTime });
    await this.checkLease(tx);
    for (const w of written) this.states.set(key(w.orgId, w.connectionId), cachedState(w.stateJson));
    this.pending = null;
    this.cachedAt = kept.at;
    return {
      connectionsWritten: written.length,
      orgsChanged: new Set(written.map((w) => w.orgId)).size,
      healthChanges: 0,
      checkpoint: { at: kept.at, streamTime, eventsApplied: kept.eventsApplied, status: checkpoint.status },
    };
  }

  /**
   * After the commit. If Redis is down the API reads PostgreSQL. An org whose update did not reach
   * Redis is remembered and dropped from Redis as soon as Redis answers again, so Redis never keeps
   * serving the version before it (the API also re-checks PostgreSQL's version every second).
   */
  private async updateRedis(changes: OrgChange[]): Promise<void> {
    try {
      if (this.staleInRedis.size > 0) {
        await this.redis!.invalidate(this.generation, [...this.staleInRedis]);
        this.staleInRedis.clear();
      }
      if (changes.length > 0) await this.redis!.applyChanges(this.generation, changes);
    } catch {
      for (const c of changes) this.staleInRedis.add(c.orgId);
    }
  }

  private async loadStates(
    sql: Sql,
    wanted: { orgId: string; connectionId: string }[],
  ): Promise<Map<string, ConnectionState>> {
    const result = new Map<string, ConnectionState>();
    const missing = new Map<string, { orgId: string; connectionId: string }>();
    this.stepChains = new Map();
    for (const w of wanted) {
      const k = key(w.orgId, w.connectionId);
      if (result.has(k) || missing.has(k)) continue;
      // A state kept back for a deferred write is the newest there is, even when the cache let it go.
      const kept = this.pending?.dirty.get(k);
      const bytes = kept ? undefined : this.states.get(k);
      const cached = kept ?? (bytes ? stateFromJson(bytes.toString('utf8')) : undefined);
      const chain = this.chains.get(k);
      if (cached) {
        result.set(k, cached);
        if (chain) this.stepChains.set(k, chain);
      } else missing.set(k, w);
    }
    if (missing.size > 0) {
      const found = await readStoredStates(sql, this.generation, [...missing.values()]);
      for (const [k, w] of missing) {
        const stored = found.get(k);
        const state = stored?.state ?? initialConnectionState(w.orgId, w.connectionId);
        const chain = stored?.chain ?? { reported: null, sequence: 0 };
        this.chains.set(k, chain);
        this.stepChains.set(k, chain);
        result.set(k, state);
      }
    }
    return result;
  }
}

/**
 * Projects a set of shards of one generation (all of them by default) in one process: each `step`
 * steps every shard once. What tests, benches and a replay's catch-up use; the projector process
 * steps the shards it holds one by one (apps/projector).
 */
export class Projection {
  readonly shards: ShardProjection[];

  constructor(
    private readonly db: DataSource,
    readonly generation: number,
    redis: RedisReadModel | null,
    batchSize: number,
    stateCacheBytes = DEFAULT_STATE_CACHE_BYTES,
    options: { deferWrites?: boolean; shards?: number[] } = {},
  ) {
    const cache = new StateCache(stateCacheBytes);
    this.shards = (options.shards ?? allShards()).map(
      (shard) =>
        new ShardProjection(db, generation, shard, redis, batchSize, { deferWrites: options.deferWrites, cache }),
    );
  }

  /**
   * Steps each shard once (up to `limit` events each). `applied` is 0 when every shard had caught
   * up; the checkpoint is the generation's (events applied by all shards, its stream time).
   */
  async step(limit?: number): Promise<ProjectionStep> {
    let applied = 0;
    let connectionsWritten = 0;
    let orgsChanged = 0;
    let healthChanges = 0;
    let last: ProjectionStep | null = null;
    for (const shard of this.shards) {
      const step = await shard.step(limit);
      applied += step.applied;
      connectionsWritten += step.connectionsWritten;
      orgsChanged += step.orgsChanged;
      healthChanges += step.healthChanges;
      last = step;
    }
    const progress = await readCheckpoint(this.db, this.generation);
    return {
      applied,
      connectionsWritten,
      orgsChanged,
      healthChanges,
      checkpoint: { ...progress, at: last?.checkpoint.at ?? progress.at },
    };
  }

  /** Events of its shards' orgs in the log after each shard's checkpoint. */
  async lag(): Promise<number> {
    const lag = await generationLag(this.db, this.generation);
    const mine = new Set(this.shards.map((s) => s.shard));
    return lag.shards.filter((s) => mine.has(s.shard)).reduce((n, s) => n + s.behindEvents, 0);
  }

  settled(): Promise<void> {
    return Promise.all(this.shards.map((s) => s.settled())).then(() => undefined);
  }
}

/** What writeConnections needs to keep the chains (CONTRACT 2.5) of the connections it writes. */
export interface HealthChains {
  /** Write messages (the live generation) or only carry the chains along (a generation being built). */
  emit: boolean;
  get(key: string): HealthChain | undefined;
  /** A change: the chain's new tail and its message. */
  changed(orgId: string, connectionId: string, chain: HealthChain, message: HealthChangedInput): void;
}

interface WrittenConnection {
  orgId: string;
  connectionId: string;
  /** The stored document (see stored-document.ts), or null when the connection is not listed. */
  document: string | null;
  /** The state as stored (`stateToJson`): what the state cache keeps. */
  stateJson: string;
}

/** Renders and upserts connections at `streamTime` (also how a replay seeds a generation from summaries). */
export async function writeConnections(
  sql: Sql,
  generation: number,
  states: ConnectionState[],
  streamTime: number | null,
  chains: HealthChains | null = null,
): Promise<WrittenConnection[]> {
  // The rows go as ONE json parameter (json_to_recordset), the stored state spliced in as it is: pg's
  // array literals escape every element in JavaScript, ~7× slower for rows of ~3 KB (and garbage).
  const rows: string[] = [];
  const written: WrittenConnection[] = [];
  const b = streamTime === null ? null : minuteBucket(streamTime);
  for (const state of states) {
    if (streamTime !== null) pruneHealthWindow(state, streamTime);
    const listed = isListed(state);
    const view = listed ? toConnectionView(state, streamTime) : null;
    const health = healthAt(state, streamTime);
    // The Connection as rendered now, and the health window it was rendered from: readers evaluate
    // the window at the current stream time (docs/read-model.md, "Health at read time").
    const window = healthWindowAt(state.buckets, validationCapApplies(state), b);
    const document = view
      ? storedDocument(JSON.stringify(view), window, statsWindowText(streamTime, state.buckets))
      : null;
    // The health-change chain (CONTRACT 2.5): a listed connection whose status now differs from its
    // chain's tail gets its message here, in the step's transaction; it is due again at the minute
    // its window changes its status by itself (the sweep looks at it then).
    let chain = chains?.get(key(state.orgId, state.connectionId)) ?? null;
    if (chains?.emit && chain === null)
      throw new Error(`the health-change chain of ${state.orgId}/${state.connectionId} is not known`);
    if (chains?.emit && chain !== null && listed && streamTime !== null && health.status !== chain.reported) {
      const previous = chain;
      chain = { reported: health.status, sequence: previous.sequence + 1 };
      chains.changed(state.orgId, state.connectionId, chain, {
        orgId: state.orgId,
        connectionId: state.connectionId,
        sequence: chain.sequence,
        streamTimeMs: streamTime,
        from: previous.reported,
        to: health.status,
        score: health.score,
      });
    }
    const lastCallMinute = state.buckets.length > 0 ? state.buckets[state.buckets.length - 1].minute : null;
    const stateJson = stateToJson(state);
    const row = JSON.stringify({
      org_id: state.orgId,
      connection_id: state.connectionId,
      listed,
      provider: state.provider?.value ?? null,
      status: state.status?.value ?? null,
      labels: state.labels?.value ?? [],
      health_score: health.score,
      health_status: health.status,
      created_at: state.createdAt === null ? null : new Date(state.createdAt).toISOString(),
      updated_at: state.updatedAt === null ? null : new Date(state.updatedAt).toISOString(),
      last_call_minute: lastCallMinute,
      document,
      // Live: due when its status would change by itself. Being built: due at once (the switch makes
      // every connection due anyway).
      health_next_change: listed && b !== null ? (chains?.emit ? nextStatusChange(window, b) : b) : null,
      health_reported: chain?.reported ?? null,
      health_sequence: chain?.sequence ?? 0,
    });
    rows.push(`${row.slice(0, -1)},"state":${stateJson}}`);
    written.push({ orgId: state.orgId, connectionId: state.connectionId, document, stateJson });
  }
  // The chain's tail is written only when the caller keeps the chains (the live generation); a
  // generation being built leaves it as stored (the switch continues the retired one's).
  if (states.length > 0) await upsertConnectionRows(sql, generation, `[${rows.join(',')}]`, chains?.emit ?? false);
  return written;
}
