/**
 * Checks the byte estimates that bound the caches in memory against what the heap really holds
 * (node --expose-gc; heapUsed before and after filling, N entries each):
 *  - the writer's stream versions: typed arrays outside the heap, sized by WRITER_STREAM_CACHE_BYTES
 *    up front (apps/writer/src/stream-versions.ts): what they take against the bound, and how many
 *    streams they hold;
 *  - the projector's state cache: each state's stored JSON in a Buffer, counted at its bytes +
 *    CACHED_STATE_OVERHEAD_BYTES + 2 × key length (libs/read-model/src/projection.ts);
 *  - a replay's changed states held as objects until written: STATE_BASE_BYTES +
 *    STATE_BYTES_PER_JSON_BYTE × their stored JSON + STATE_BYTES_PER_BUCKET × their minute buckets,
 *    configured only and with a full 60-minute window.
 * An estimate / measured ratio ≥ 1 means the byte bound is conservative.
 * Then what packing a state costs (libs/read-model/src/state-packing.ts): µs to pack and to unpack a
 * state with 3, 11 and 60 minutes of calls, and its size, with Snappy (packState, as shipped) and with
 * the zlib raw deflate level 1 that packed states before, in the same process one after the other.
 * Run: npm run bench:memory [-- N]
 */
import {
  applyEvent,
  ConnectionState,
  initialConnectionState,
  MINUTE_MS,
  stateFromJson,
  stateToJson,
} from '@psp/domain';
import { callEvent, configuredEvent, T0 } from '@psp/domain/testing/events';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import {
  CACHED_STATE_OVERHEAD_BYTES,
  packState,
  unpackState,
  STATE_BASE_BYTES,
  STATE_BYTES_PER_BUCKET,
  STATE_BYTES_PER_JSON_BYTE,
} from '@psp/read-model';
import { STREAM_VERSION_ENTRY_BYTES, streamKey, StreamVersions } from '../apps/writer/src/stream-versions';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const N = Number(process.argv[2] ?? 100_000);

/** Collects garbage until what was let go is freed (zlib's handles and chunks go after a turn of the loop). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function heapAfter(fill: () => unknown): Promise<{ bytes: number; external: number; kept: unknown }> {
  await settle();
  const before = process.memoryUsage();
  const kept = fill();
  await settle();
  const after = process.memoryUsage();
  return { bytes: after.heapUsed - before.heapUsed, external: after.arrayBuffers - before.arrayBuffers, kept };
}

function line(what: string, measured: number, estimated: number): void {
  console.log(
    `${what}: measured ${measured.toFixed(0)} B each, estimated ${estimated.toFixed(0)} B each, estimate / measured ${(estimated / measured).toFixed(2)}`,
  );
}

async function main(): Promise<void> {
  // The writer's stream versions: typed arrays outside the heap, allocated up front for the bound.
  const writerBound = 24 * 1024 * 1024;
  const versions = await heapAfter(() => {
    const cache = new StreamVersions(writerBound);
    for (let i = 0; i < N; i++) cache.set(streamKey(`org_${i % 20000}`, `paystack_gh_primary_${i}`), i + 1);
    return cache;
  });
  let held = 0;
  for (let i = 0; i < N; i++)
    if ((versions.kept as StreamVersions).get(streamKey(`org_${i % 20000}`, `paystack_gh_primary_${i}`)) === i + 1)
      held++;
  console.log(
    `writer stream versions: bound ${writerBound} B; heap ${versions.bytes} B + outside the heap ${versions.external} B ` +
      `for ${N} streams set, ${held} held (at least ${Math.floor(writerBound / STREAM_VERSION_ENTRY_BYTES)} by the bound); ` +
      `(heap + outside) / bound ${((versions.bytes + versions.external) / writerBound).toFixed(2)}`,
  );

  // The projector's state cache: each state packed (its stored JSON, Snappy) in a Buffer of its own.
  {
    const count = N / 10;
    let estimated = 0;
    const cached = await heapAfter(() => {
      const cache = new Map<string, Buffer>();
      for (let i = 0; i < count; i++) {
        const where = { orgId: `org_${i % 20000}`, connectionId: `paystack_gh_primary_${i}` };
        const state = initialConnectionState(where.orgId, where.connectionId);
        applyEvent(state, configuredEvent(`cfg-${i}`, T0, { labels: ['ghana', 'primary'] }, where));
        for (let m = 0; m < 10; m++) applyEvent(state, callEvent(`c-${i}-${m}`, T0 + m * MINUTE_MS, {}, where));
        const bytes = packState(stateToJson(state));
        const k = `${where.orgId}:${where.connectionId}`;
        cache.set(k, bytes);
        estimated += bytes.length + CACHED_STATE_OVERHEAD_BYTES + 2 * k.length;
      }
      return cache;
    });
    line(
      `projector state cache (${count} states with 10 minutes of calls, packed: heap + outside the heap)`,
      (cached.bytes + cached.external) / count,
      estimated / count,
    );
    void cached.kept;
  }

  // States as objects (what a step makes one at a time, the largest counted in its working set):
  // The projector's connection states: configured only, and with calls in all 60 minutes of the window.
  for (const minutes of [0, 60]) {
    let jsonChars = 0;
    const count = N / 10;
    const states = await heapAfter(() => {
      const kept: ConnectionState[] = [];
      for (let i = 0; i < count; i++) {
        const where = { orgId: `org_${i % 20000}`, connectionId: `paystack_gh_primary_${i}` };
        const state = initialConnectionState(where.orgId, where.connectionId);
        applyEvent(state, configuredEvent(`cfg-${i}`, T0, { labels: ['ghana', 'primary'] }, where));
        for (let m = 0; m < minutes; m++)
          applyEvent(
            state,
            callEvent(
              `c-${i}-${m}`,
              T0 + m * MINUTE_MS,
              m % 7 === 0 ? { outcome: 'failure', error_code: 'timeout' } : {},
              where,
            ),
          );
        jsonChars += stateToJson(state).length;
        kept.push(state);
      }
      return kept;
    });
    line(
      `projector states (${count}, ${minutes} minutes with calls, JSON of ${(jsonChars / count).toFixed(0)} characters)`,
      states.bytes / count,
      STATE_BASE_BYTES + (STATE_BYTES_PER_JSON_BYTE * jsonChars) / count + STATE_BYTES_PER_BUCKET * minutes,
    );
    void states.kept;
  }

  packingCosts();
}

/** µs per call of `f`, over `n` calls after 1,000 to warm up. */
function microseconds(n: number, f: () => unknown): number {
  for (let i = 0; i < 1000; i++) f();
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f();
  return Number(process.hrtime.bigint() - started) / 1000 / n;
}

function packingCosts(): void {
  console.log('packing a state (µs per call; bytes): Snappy as shipped, and zlib raw deflate level 1 as before');
  for (const minutes of [3, 11, 60]) {
    const where = { orgId: 'org_123', connectionId: 'paystack_gh_primary_456' };
    const state = initialConnectionState(where.orgId, where.connectionId);
    applyEvent(state, configuredEvent('cfg', T0, { labels: ['ghana', 'primary'] }, where));
    for (let m = 0; m < minutes; m++)
      for (let c = 0; c < 3; c++)
        applyEvent(
          state,
          callEvent(
            `c-${m}-${c}`,
            T0 + m * MINUTE_MS + c * 1000,
            c === 2
              ? { outcome: 'failure', error_code: 'timeout', method: 'card', currency: 'GHS' }
              : { method: 'card' },
            where,
          ),
        );
    const json = stateToJson(state);
    const snappy = packState(json);
    const deflated = deflateRawSync(json, { level: 1 });
    const n = 20000;
    const snappyPack = microseconds(n, () => packState(json));
    const snappyUnpack = microseconds(n, () => unpackState(snappy));
    const deflatePack = microseconds(n, () => deflateRawSync(json, { level: 1 }));
    const deflateUnpack = microseconds(n, () => stateFromJson(inflateRawSync(deflated).toString('utf8')));
    console.log(
      `  ${minutes} minutes of calls, JSON ${json.length} B: Snappy ${snappy.length} B, pack ${snappyPack.toFixed(1)} µs, ` +
        `unpack ${snappyUnpack.toFixed(1)} µs; deflate ${deflated.length} B, pack ${deflatePack.toFixed(1)} µs, ` +
        `unpack ${deflateUnpack.toFixed(1)} µs (unpack includes JSON.parse)`,
    );
  }
}

void main();
