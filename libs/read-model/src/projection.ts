import { DataSource } from 'typeorm';
import {
  DEFAULT_PROJECTOR_STATE_CACHE_BYTES,
  DEFAULT_PROJECTOR_STEP_BYTES,
  DEFAULT_PROJECTOR_STEP_MS,
} from '@psp/config';
import {
  advanceStreamTime,
  applyEvent,
  ConnectionEvent,
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
import { packState, unpackState } from './state-packing';
import { LoggedEvent, LogPosition, LogRangeByConnection, planLogRange, readLogAfter, Sql } from '@psp/storage';
import { allShards } from '@psp/domain';
import { generationLag, readShardCheckpoint, ShardCheckpoint, writeShardCheckpoint } from './shard-checkpoints';
import { currentShardLease } from './shard-leases';
import { leaseStillHeld } from './shard-assignment';
import { lockShardStep } from './shard-lock';
import { nextStepLimit } from './step-size';
import { Checkpoint, readCheckpoint } from './generations';
import { bumpOrgVersions } from './org-read-model';
import { connectionKey, HealthChain, readStoredStates, StoredState, upsertConnectionRows } from './connection-rows';
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
  /**
   * What the step held in the heap, estimated (its events, the stored states it read, the documents it
   * wrote, one upsert statement and its largest state as objects; 0 when it read nothing): what bounds
   * the next step's size (nextStepLimit).
   */
  workingBytes: number;
  /** Wall time of the step, ms (what bounds the next step's size in time: nextStepLimit). */
  elapsedMs: number;
}

/**
 * What a state held as an object (the largest one a step makes, for its working set) is counted at: STATE_BASE_BYTES + STATE_BYTES_PER_JSON_BYTE × the length of its stored JSON (`stateToJson`) +
 * STATE_BYTES_PER_BUCKET × its minute buckets, whose arrays weigh far more in the heap than in JSON.
 * `npm run bench:memory`: 1.27 KB of heap for a state with no calls (953 B of JSON), 28.2 KB with
 * calls in all 60 minutes (5.2 KB of JSON); the estimate is 1.05-1.2× that.
 */
export const STATE_BASE_BYTES = 256;
export const STATE_BYTES_PER_JSON_BYTE = 1.4;
export const STATE_BYTES_PER_BUCKET = 450;
/** A logged event read by a step, as held in the heap (its envelope and payload, parsed). */
export const LOGGED_EVENT_BYTES = 700;

/** A state's estimated weight in the heap, from the length of its stored JSON. */
function estimatedStateBytes(state: ConnectionState, stateJsonBytes: number): number {
  return Math.ceil(
    STATE_BASE_BYTES + stateJsonBytes * STATE_BYTES_PER_JSON_BYTE + state.buckets.length * STATE_BYTES_PER_BUCKET,
  );
}

/**
 * The state cache holds each state as its stored JSON, packed (state-packing.ts: Snappy, 2× smaller
 * with 3 minutes of calls, 6.7× with 60), in a Buffer of its own outside the JavaScript heap, unpacked
 * and parsed again when an event needs the state: exact in bytes, ~10-25× fewer bytes than the object,
 * and nothing for the garbage collector to trace (as objects, 100,000 cached states made GC 31% of the
 * projector's CPU at 100,000 connections). Packed, the default 128 MiB holds every state of
 * ~100,000-150,000 connections, where the JSON held ~45,000: a backlog that steps its shards in turn reads
 * each of them again before a least-recently-used cache smaller than all of them gets back to it, so
 * such a cache misses every time. An entry is counted at its bytes + CACHED_STATE_OVERHEAD_BYTES + 2
 * per key character (the entry, the Buffer and its backing store; `npm run bench:memory`).
 */
export const CACHED_STATE_OVERHEAD_BYTES = 320;

/** Default bound of the projection's state cache (PROJECTOR_STATE_CACHE_BYTES). */
export const DEFAULT_STATE_CACHE_BYTES = DEFAULT_PROJECTOR_STATE_CACHE_BYTES;

const key = connectionKey;

/**
 * The connection states a projector process keeps in memory, shared by the shards it projects: each
 * state packed (packState), least recently used forgotten first, bounded in bytes; and the
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

  /**
   * Keeps a connection's state (as stored) and its chain's tail, together: a state is never held
   * without its chain (an entry let go while a step ran, and then kept again, gets its chain back).
   */
  keep(key: string, packed: Buffer, chain: HealthChain): void {
    this.states.set(key, packed);
    if (this.states.has(key)) this.chains.set(key, chain);
  }

  /** A connection's state (packed: unpackState) and chain tail, when held. */
  take(key: string): { packed: Buffer; chain: HealthChain } | undefined {
    const packed = this.states.get(key);
    const chain = this.chains.get(key);
    return packed && chain ? { packed, chain } : undefined;
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

/** Where a connection's state before a step comes from: the cache or its stored row, or nowhere yet. */
type StateSource = StoredState | { orgId: string; connectionId: string };

/** A stored state as an object. */
export function storedState(stored: StoredState): ConnectionState {
  return 'packed' in stored ? unpackState(stored.packed) : stateFromJson(stored.stateJson);
}

function stateFrom(source: StateSource): ConnectionState {
  if ('packed' in source || 'stateJson' in source) return storedState(source);
  return initialConnectionState(source.orgId, source.connectionId);
}

/** A chunk of a step's events by connection (in the log's order within each, connections in the order first read). */
type ByConnection = Map<string, ConnectionEvent[]>;

function byConnection(logged: Iterable<LoggedEvent>): ByConnection {
  const events: ByConnection = new Map();
  for (const { event } of logged) {
    const k = key(event.orgId, event.connectionId);
    const list = events.get(k);
    if (list) list.push(event);
    else events.set(k, [event]);
  }
  return events;
}

/**
 * Each touched connection's state with the chunk's events applied, made when asked for and let go
 * once written: a step holds one state as objects at a time, not one per connection it touches
 * (~1.3-28 KB each). The read model is a function of each connection's events in order
 * (order-independence.test.ts), so applying them connection by connection gives what the log's
 * order gives.
 */
function* foldedStates(events: ByConnection, sources: Map<string, StateSource>): Generator<ConnectionState> {
  for (const [k, list] of events) {
    const state = stateFrom(sources.get(k)!);
    for (const event of list) applyEvent(state, event);
    yield state;
  }
}

/** Events a step of a shard that is behind reads from its cursor at a time (catch-up steps hold one chunk). */
export const CATCH_UP_CHUNK_EVENTS = 5000;

/**
 * Bytes of documents one step keeps for its Redis update. The orgs of the connections it writes
 * beyond them are dropped from Redis instead (the API refills each from PostgreSQL on its next read),
 * so a step's memory does not grow with the connections it writes.
 */
export const REDIS_DOCUMENT_BYTES = 16 * 1024 * 1024;

/** A written connection's entry as a step holds it until its commit, besides its document. */
const WRITTEN_ENTRY_BYTES = 120;

/** What a step has written so far, chunk after chunk. */
class StepWrites {
  readonly written: WrittenConnection[] = [];
  healthChanges = 0;
  /** Bytes of the documents kept for Redis. */
  documentBytes = 0;
  /** The most one chunk held at once: its events and the sources of its states. */
  chunkBytes = 0;
  /** The largest state made as objects. */
  stateBytes = 0;
}

/** A step's span (tracing on): when the step began, and the span once it has events. */
interface Traced {
  startedAt: number;
  step: StepTrace | null;
}

/** What a step committed, and the documents to publish to Redis once it has. */
interface Committed {
  result: ProjectionStep;
  changes: OrgChange[];
}

function samePosition(a: LogPosition | null, b: LogPosition): boolean {
  return a !== null && a.transactionId === b.transactionId && a.position === b.position;
}

function nothingDone(checkpoint: ShardCheckpoint, healthChanges = 0): ProjectionStep {
  return {
    applied: 0,
    connectionsWritten: 0,
    orgsChanged: 0,
    healthChanges,
    checkpoint,
    workingBytes: 0,
    elapsedMs: 0,
  };
}

/** The written connections by org, with each org's new version: what Redis gets. */
function orgChanges(versions: { orgId: string; version: number }[], written: WrittenConnection[]): OrgChange[] {
  const byOrg = new Map<string, OrgChange>();
  for (const v of versions) byOrg.set(v.orgId, { orgId: v.orgId, version: v.version, upserts: [], removals: [] });
  for (const w of written) {
    const change = byOrg.get(w.orgId)!;
    if (w.dropped) change.dropped = true;
    else if (w.document === null) change.removals.push(w.connectionId);
    else change.upserts.push([w.connectionId, w.document]);
  }
  for (const change of byOrg.values())
    if (change.dropped) {
      change.upserts = [];
      change.removals = [];
    }
  return [...byOrg.values()];
}

/**
 * Projects one shard of the event log (the events of the orgs `psp_shard(org_id)` puts in it) into
 * one generation of the read model, one step at a time. A step is a pipeline, in ONE PostgreSQL
 * transaction but its last stage:
 *
 *   1. begin: take the shard's step lock (one step of a shard at a time, whoever runs it) and read
 *      its checkpoint;
 *   2. read the log: the shard's next events after the checkpoint, in the log's order;
 *   3. fold: the states of the connections they touch (the cache, else the stored rows, else new),
 *      each event applied in order; the generation's stream time advances;
 *   4. render and write: the touched connections' rows and documents at that stream time, their
 *      health changes (live generation), those of connections due by the clock (the sweep), the
 *      orgs' versions and the shard's checkpoint; the lease checked last (fencing: ShardLeases);
 *   5. publish, after the commit: the orgs' documents to Redis, version-guarded.
 *
 * A crash rolls back stages 1-4 together (exactly once). A shard that has caught up only sweeps.
 *
 * The state cache (StateCache, shared by the shards of a process) is trusted only while this object
 * left the shard where its checkpoint is (`cachedAt`): a step that finds it moved (another process
 * stepped the shard) or that failed clears it.
 */
export class ShardProjection {
  private readonly cache: StateCache;
  /** The position the cached states are current for (this object's latest commit), if any. */
  private cachedAt: LogPosition | null = null;
  /** Orgs whose last update did not reach Redis. */
  private readonly staleInRedis = new Set<string>();
  /** The Redis update of the latest step (updateRedis never rejects). */
  private redisInFlight: Promise<void> = Promise.resolve();
  /** The lease this process holds the shard under (null: no fencing, e.g. a replay's own steps). */
  lease: string | null = null;
  /** Steps that read their events connection by connection (catchUp), since this object was made. */
  catchUpSteps = 0;
  private readonly chunkEvents: number;
  private readonly redisDocumentBytes: number;
  /**
   * The first event the latest step read from the log (null when it failed before reading any): after
   * a failed step of one event, the event the projection cannot get past.
   */
  firstAttempted: LoggedEvent | null = null;

  constructor(
    private readonly db: DataSource,
    readonly generation: number,
    readonly shard: number,
    private readonly redis: RedisReadModel | null,
    private readonly batchSize: number,
    options: {
      cache?: StateCache;
      stateCacheBytes?: number;
      /** Events a catch-up step reads at a time (CATCH_UP_CHUNK_EVENTS; tests make it small). */
      catchUpChunkEvents?: number;
      /** Bytes of documents a step keeps for Redis (REDIS_DOCUMENT_BYTES; tests make it small). */
      redisDocumentBytes?: number;
    } = {},
  ) {
    this.cache = options.cache ?? new StateCache(options.stateCacheBytes ?? DEFAULT_STATE_CACHE_BYTES);
    this.chunkEvents = options.catchUpChunkEvents ?? CATCH_UP_CHUNK_EVENTS;
    this.redisDocumentBytes = options.redisDocumentBytes ?? REDIS_DOCUMENT_BYTES;
  }

  /**
   * Projects up to `limit` events of the shard (the batch size by default); `applied` is 0 when the
   * shard has caught up with the log. A step asked for more than the batch size (its shard is behind:
   * apps/projector grows its steps) reads its events connection by connection (`catchUp`).
   */
  async step(limit = this.batchSize): Promise<ProjectionStep> {
    this.firstAttempted = null;
    const began = Date.now();
    const traced: Traced = { startedAt: tracingOn() ? began : 0, step: null }; // a span once there are events
    let committed: Committed;
    try {
      committed = await this.db.transaction(async (tx) => {
        const checkpoint = await this.begin(tx);
        return limit > this.batchSize
          ? this.catchUp(tx, checkpoint, limit, traced)
          : this.stepInLogOrder(tx, checkpoint, limit, traced);
      });
    } catch (error) {
      traced.step?.end(null, error);
      this.cache.clear();
      this.cachedAt = null;
      throw error;
    }
    committed.result.elapsedMs = Date.now() - began;
    traced.step?.end(committed.result);
    await this.publish(committed.changes, committed.result.applied === 0);
    return committed.result;
  }

  /** Resolves once every committed step's update has reached Redis (or was marked stale there). */
  settled(): Promise<void> {
    return this.redisInFlight;
  }

  /** 1. The shard's step lock and checkpoint; the cache let go if the shard moved without this object. */
  private async begin(tx: Sql): Promise<ShardCheckpoint> {
    await lockShardStep(tx, this.generation, this.shard);
    const checkpoint = await readShardCheckpoint(tx, this.generation, this.shard);
    if (!samePosition(this.cachedAt, checkpoint.at)) this.cache.clear();
    this.cachedAt = null; // until this step commits
    return checkpoint;
  }

  /**
   * Nothing to read. Health may still change as stream time has moved: the live generation sweeps the
   * connections due by the clock. The states held stay current (a sweep changes chains only, and
   * keeps those held in step).
   */
  private async caughtUp(tx: Sql, checkpoint: ShardCheckpoint): Promise<ProjectionStep> {
    this.cachedAt = checkpoint.at;
    if (checkpoint.status !== 'live' || checkpoint.streamTime === null) return nothingDone(checkpoint);
    const healthChanges = await this.sweep(tx, checkpoint.streamTime);
    if (healthChanges > 0) await this.checkLease(tx);
    return nothingDone(checkpoint, healthChanges);
  }

  /** 2-4 for a step of at most the batch size: its events read in the log's order, held, folded, written. */
  private async stepInLogOrder(
    tx: Sql,
    checkpoint: ShardCheckpoint,
    limit: number,
    traced: Traced,
  ): Promise<Committed> {
    const logged = await readLogAfter(tx, checkpoint.at, limit, this.shard);
    this.firstAttempted = logged[0] ?? null;
    // A replay switched past this generation while this step waited for the lock: nothing more.
    if (checkpoint.status === 'retired') return { result: nothingDone(checkpoint), changes: [] };
    if (logged.length === 0) return { result: await this.caughtUp(tx, checkpoint), changes: [] };
    if (traced.startedAt) traced.step = new StepTrace(traced.startedAt, this.generation, this.shard, logged);
    traced.step?.saw(logged);
    // The generation's stream time: the greatest of every shard's, this step's events included.
    let streamTime = checkpoint.streamTime;
    for (const { event } of logged) streamTime = advanceStreamTime(streamTime, event.occurredAt);
    const writes = new StepWrites();
    await this.foldAndWrite(tx, checkpoint, byConnection(logged), streamTime, writes, traced.step, logged.length);
    return this.finish(tx, checkpoint, logged[logged.length - 1].at, streamTime, logged.length, writes, traced.step);
  }

  /**
   * 2-4 for a step of a shard that is behind: the extent of its next `limit` events first (how many,
   * the last one's position, the stream time they reach), then those events in connection order
   * through a cursor, CATCH_UP_CHUNK_EVENTS at a time, each connection folded with all of its events
   * of the step and written once, as a replay folds (docs/read-model.md, "A shard that is behind").
   * Memory holds one chunk, whatever `limit`; a connection written once for all its events of the
   * step is what makes a backlog cheaper per event than steady traffic.
   */
  private async catchUp(tx: Sql, checkpoint: ShardCheckpoint, limit: number, traced: Traced): Promise<Committed> {
    const ahead = await planLogRange(tx, checkpoint.at, { shard: this.shard, limit });
    if (checkpoint.status === 'retired') return { result: nothingDone(checkpoint), changes: [] };
    if (ahead === null) return { result: await this.caughtUp(tx, checkpoint), changes: [] };
    const streamTime =
      ahead.maxOccurredAt === null
        ? checkpoint.streamTime
        : advanceStreamTime(checkpoint.streamTime, ahead.maxOccurredAt);
    this.catchUpSteps++;
    const range = await LogRangeByConnection.open(tx, checkpoint.at, ahead.through, this.shard);
    const writes = new StepWrites();
    let read = 0;
    let carried: LoggedEvent[] = [];
    for (;;) {
      const chunk = await range.next(this.chunkEvents);
      read += chunk.length;
      this.firstAttempted ??= chunk[0] ?? null;
      if (traced.startedAt && !traced.step)
        traced.step = new StepTrace(traced.startedAt, this.generation, this.shard, chunk, ahead.events);
      traced.step?.saw(chunk);
      const last = chunk.length < this.chunkEvents;
      let events = carried.length > 0 ? carried.concat(chunk) : chunk;
      carried = [];
      if (!last && events.length > 0) {
        // The chunk may end within a connection: that connection's events wait for the next chunk.
        const tail = events[events.length - 1].event;
        let from = events.length - 1;
        while (
          from > 0 &&
          events[from - 1].event.orgId === tail.orgId &&
          events[from - 1].event.connectionId === tail.connectionId
        )
          from--;
        carried = events.slice(from);
        events = events.slice(0, from);
      }
      await this.foldAndWrite(
        tx,
        checkpoint,
        byConnection(events),
        streamTime,
        writes,
        traced.step,
        events.length + carried.length,
      );
      if (last) break;
    }
    await range.close();
    if (read !== ahead.events)
      throw new Error(`shard ${this.shard}: the step's range held ${read} events where ${ahead.events} were counted`);
    return this.finish(tx, checkpoint, ahead.through, streamTime, read, writes, traced.step);
  }

  /**
   * 3-4 for one chunk of a step: the states of the connections its events touch (the cache, else the
   * stored rows, else new), each connection's events applied in order, rendered at the step's stream
   * time and written with their health changes (live generation). Each state written is kept in the
   * cache as stored, with its chain's tail (a step that fails clears the cache, so nothing of it
   * outlives a rollback).
   */
  private async foldAndWrite(
    tx: Sql,
    checkpoint: ShardCheckpoint,
    events: ByConnection,
    streamTime: number | null,
    writes: StepWrites,
    trace: StepTrace | null,
    eventsHeld: number,
  ): Promise<void> {
    if (events.size === 0) return;
    const { sources, chains: stepChains, sourceBytes } = await this.loadSources(tx, events);
    const { chains, changes: seen } = this.chainBook(checkpoint.status === 'live', stepChains);
    const written = await writeConnections(
      tx,
      this.generation,
      foldedStates(events, sources),
      streamTime,
      chains,
      (state, stateJsonLength, packed) => {
        const k = key(state.orgId, state.connectionId);
        this.cache.keep(k, packed, stepChains.get(k)!);
        writes.stateBytes = Math.max(writes.stateBytes, estimatedStateBytes(state, stateJsonLength));
      },
    );
    await writeHealthChanges(tx, this.generation, seen, trace?.outboxContexts(seen));
    trace?.written(written);
    writes.healthChanges += seen.length;
    writes.chunkBytes = Math.max(writes.chunkBytes, eventsHeld * LOGGED_EVENT_BYTES + sourceBytes);
    for (const w of written) {
      if (w.document !== null) {
        if (writes.documentBytes + w.document.length > this.redisDocumentBytes) {
          w.document = null;
          w.dropped = true;
        } else writes.documentBytes += w.document.length;
      }
      writes.written.push(w);
    }
  }

  /** 4, the end: the sweep (live), the orgs' versions, the shard's checkpoint, the lease checked last (fencing: ShardLeases). */
  private async finish(
    tx: Sql,
    checkpoint: ShardCheckpoint,
    at: LogPosition,
    streamTime: number | null,
    applied: number,
    writes: StepWrites,
    trace: StepTrace | null,
  ): Promise<Committed> {
    const swept =
      checkpoint.status === 'live' && streamTime !== null ? await this.sweep(tx, streamTime, trace?.context) : 0;
    const versions = await bumpOrgVersions(tx, this.generation, writes.written);
    const eventsApplied = checkpoint.eventsApplied + applied;
    await writeShardCheckpoint(tx, this.generation, this.shard, { at, streamTime, eventsApplied });
    await this.checkLease(tx);
    this.cachedAt = at; // the cached states are current as of `at` once this commits
    const changes = orgChanges(versions, writes.written);
    return {
      result: {
        applied,
        connectionsWritten: writes.written.length,
        orgsChanged: changes.length,
        healthChanges: writes.healthChanges + swept,
        checkpoint: { at, streamTime, eventsApplied, status: checkpoint.status },
        // What the step held at most: a chunk's events and the sources of their states, one upsert
        // statement, the largest state as objects, the documents kept for Redis and the written entries.
        workingBytes:
          writes.chunkBytes +
          UPSERT_CHUNK_CHARS +
          writes.stateBytes +
          writes.documentBytes +
          writes.written.length * WRITTEN_ENTRY_BYTES,
        elapsedMs: 0,
      },
      changes,
    };
  }

  /**
   * 5. After the commit, Redis, updated while the next step reads and writes PostgreSQL: one update
   * in flight at a time, in step order (each is version-guarded anyway). A step that found nothing
   * new returns only once Redis holds everything committed before it.
   */
  private async publish(changes: OrgChange[], caughtUp: boolean): Promise<void> {
    if (!this.redis) return;
    const previous = this.redisInFlight;
    this.redisInFlight = previous.then(() => this.updateRedis(changes));
    await (caughtUp ? this.redisInFlight : previous);
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

  /**
   * The chains of the step's connections for writeConnections (`emit`: the live generation writes
   * messages); `changes` collects the messages, and each new tail is kept with the connection's state.
   */
  private chainBook(
    emit: boolean,
    stepChains: Map<string, HealthChain>,
  ): { chains: HealthChains; changes: HealthChangedInput[] } {
    const changes: HealthChangedInput[] = [];
    const chains: HealthChains = {
      emit,
      get: (k) => stepChains.get(k),
      changed: (orgId, connectionId, chain, message) => {
        // Kept in the cache with the state once written.
        stepChains.set(key(orgId, connectionId), chain);
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
        if (this.cache.chains.has(k)) this.cache.chains.set(k, chain);
      },
      traceContext,
    );
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

  /**
   * Where the states of the connections touched come from, and their chain tails: the cache, else
   * the stored rows (one statement for all of them, the states left as JSON text), else new. The
   * chains are the step's own (the cache may let an entry go while the step runs; the step keeps
   * them back in it as it writes them).
   */
  private async loadSources(
    sql: Sql,
    events: Map<string, ConnectionEvent[]>,
  ): Promise<{ sources: Map<string, StateSource>; chains: Map<string, HealthChain>; sourceBytes: number }> {
    const sources = new Map<string, StateSource>();
    const chains = new Map<string, HealthChain>();
    const missing = new Map<string, { orgId: string; connectionId: string }>();
    let sourceBytes = 0;
    for (const [k, [first]] of events) {
      const held = this.cache.take(k);
      if (held) {
        sources.set(k, { packed: held.packed });
        chains.set(k, held.chain);
      } else missing.set(k, { orgId: first.orgId, connectionId: first.connectionId });
    }
    const found = await readStoredStates(sql, this.generation, [...missing.values()]);
    for (const [k, where] of missing) {
      const row = found.get(k);
      chains.set(k, row?.chain ?? { reported: null, sequence: 0 });
      sources.set(k, row?.stored ?? where);
      sourceBytes += row ? ('packed' in row.stored ? row.stored.packed.length : row.stored.stateJson.length) : 0;
    }
    return { sources, chains, sourceBytes };
  }
}

/**
 * Projects a set of shards of one generation (all of them by default) in one process: each `step`
 * steps every shard once. What tests, benches and a replay's catch-up use; the projector process
 * steps the shards it holds one by one (apps/projector). Without a `limit`, each shard's step size
 * adapts as the projector's does (nextStepLimit, from the batch size up to `maxBatchSize` and within
 * `stepBytes`).
 */
export class Projection {
  readonly shards: ShardProjection[];
  private readonly limits = new Map<number, number>();

  constructor(
    private readonly db: DataSource,
    readonly generation: number,
    redis: RedisReadModel | null,
    private readonly batchSize: number,
    stateCacheBytes = DEFAULT_STATE_CACHE_BYTES,
    private readonly options: {
      shards?: number[];
      maxBatchSize?: number;
      stepBytes?: number;
      stepMillis?: number;
    } = {},
  ) {
    const cache = new StateCache(stateCacheBytes);
    this.shards = (options.shards ?? allShards()).map(
      (shard) => new ShardProjection(db, generation, shard, redis, batchSize, { cache }),
    );
  }

  /**
   * Steps each shard once (up to `limit` events each, or its adaptive step size). `applied` is 0
   * when every shard had caught up; the checkpoint is the generation's (events applied by all
   * shards, its stream time).
   */
  async step(limit?: number): Promise<ProjectionStep> {
    let applied = 0;
    let connectionsWritten = 0;
    let orgsChanged = 0;
    let healthChanges = 0;
    let workingBytes = 0;
    let elapsedMs = 0;
    let last: ProjectionStep | null = null;
    for (const shard of this.shards) {
      const asked = limit ?? this.limits.get(shard.shard) ?? this.batchSize;
      const step = await shard.step(asked);
      if (limit === undefined)
        this.limits.set(
          shard.shard,
          nextStepLimit(
            asked,
            step,
            this.batchSize,
            this.options.maxBatchSize ?? this.batchSize,
            this.options.stepBytes ?? DEFAULT_PROJECTOR_STEP_BYTES,
            this.options.stepMillis ?? DEFAULT_PROJECTOR_STEP_MS,
          ),
        );
      applied += step.applied;
      connectionsWritten += step.connectionsWritten;
      orgsChanged += step.orgsChanged;
      healthChanges += step.healthChanges;
      workingBytes = Math.max(workingBytes, step.workingBytes);
      elapsedMs += step.elapsedMs;
      last = step;
    }
    const progress = await readCheckpoint(this.db, this.generation);
    return {
      applied,
      connectionsWritten,
      orgsChanged,
      healthChanges,
      checkpoint: { ...progress, at: last?.checkpoint.at ?? progress.at },
      workingBytes,
      elapsedMs,
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
  /** The stored document (see stored-document.ts), or null when the connection is not listed (or dropped). */
  document: string | null;
  /** Its document was not kept for Redis (REDIS_DOCUMENT_BYTES): its org is dropped from Redis. */
  dropped?: boolean;
}

/** Characters of rows sent in one upsert of connection_read_model at most (and one row beyond). */
export const UPSERT_CHUNK_CHARS = 4 * 1024 * 1024;

/** Renders and upserts connections at `streamTime` (also how a replay seeds a generation from summaries). */
export async function writeConnections(
  sql: Sql,
  generation: number,
  states: Iterable<ConnectionState>,
  streamTime: number | null,
  chains: HealthChains | null = null,
  /** Told each state as it is stored (the length of its JSON, and packed), once its chain's tail is final. */
  stored?: (state: ConnectionState, stateJsonLength: number, packed: Buffer) => void,
): Promise<WrittenConnection[]> {
  // The rows go as json parameters (json_to_recordset), the stored state spliced in as it is: pg's
  // array literals escape every element in JavaScript, ~7× slower for rows of ~3 KB (and garbage).
  // One statement per UPSERT_CHUNK_CHARS of rows, so that the text sent is bounded whatever the step.
  let rows: string[] = [];
  let rowChars = 0;
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
    const packed = packState(stateJson);
    const line = `${row.slice(0, -1)},"packed_state":"${packed.toString('base64')}"}`;
    rows.push(line);
    rowChars += line.length;
    written.push({ orgId: state.orgId, connectionId: state.connectionId, document });
    stored?.(state, stateJson.length, packed);
    if (rowChars >= UPSERT_CHUNK_CHARS) {
      await upsertConnectionRows(sql, generation, `[${rows.join(',')}]`, chains?.emit ?? false);
      rows = [];
      rowChars = 0;
    }
  }
  // The chain's tail is written only when the caller keeps the chains (the live generation); a
  // generation being built leaves it as stored (the switch continues the retired one's).
  if (rows.length > 0) await upsertConnectionRows(sql, generation, `[${rows.join(',')}]`, chains?.emit ?? false);
  return written;
}
