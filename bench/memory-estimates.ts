/**
 * Checks the byte estimates that bound the caches in memory against what the heap really holds
 * (node --expose-gc; heapUsed before and after filling, N entries each):
 *  - the writer's stream versions: STREAM_VERSION_ENTRY_BYTES + 2 × key length per entry
 *    (apps/writer/src/stream-versions.ts);
 *  - the projector's connection states: STATE_BASE_BYTES + STATE_BYTES_PER_JSON_BYTE × their stored
 *    JSON + STATE_BYTES_PER_BUCKET × their minute buckets (libs/read-model/src/projection.ts),
 *    configured only and with a full 60-minute window.
 * An estimate / measured ratio ≥ 1 means the byte bound is conservative.
 * Run: npm run bench:memory [-- N]
 */
import { applyEvent, ConnectionState, initialConnectionState, MINUTE_MS, stateToJson } from '@psp/domain';
import { callEvent, configuredEvent, T0 } from '@psp/domain/testing/events';
import { STATE_BASE_BYTES, STATE_BYTES_PER_BUCKET, STATE_BYTES_PER_JSON_BYTE } from '@psp/read-model';
import { STREAM_VERSION_ENTRY_BYTES, streamKey, StreamVersions } from '../apps/writer/src/stream-versions';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const N = Number(process.argv[2] ?? 100_000);

function heapAfter(fill: () => unknown): { bytes: number; kept: unknown } {
  gc!();
  const before = process.memoryUsage().heapUsed;
  const kept = fill();
  gc!();
  return { bytes: process.memoryUsage().heapUsed - before, kept };
}

function line(what: string, measured: number, estimated: number): void {
  console.log(
    `${what}: measured ${measured.toFixed(0)} B each, estimated ${estimated.toFixed(0)} B each, estimate / measured ${(estimated / measured).toFixed(2)}`,
  );
}

// The writer's stream versions.
let keyChars = 0;
const versions = heapAfter(() => {
  const cache = new StreamVersions(Number.MAX_SAFE_INTEGER);
  for (let i = 0; i < N; i++) {
    const key = streamKey(`org_${i % 20000}`, `paystack_gh_primary_${i}`);
    keyChars += key.length;
    cache.set(key, i + 1);
  }
  return cache;
});
line(
  `writer stream versions (${N}, keys of ${(keyChars / N).toFixed(1)} characters)`,
  versions.bytes / N,
  STREAM_VERSION_ENTRY_BYTES + (2 * keyChars) / N,
);

// The projector's connection states: configured only, and with calls in all 60 minutes of the window.
for (const minutes of [0, 60]) {
  let jsonChars = 0;
  const count = N / 10;
  const states = heapAfter(() => {
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
void versions.kept;
