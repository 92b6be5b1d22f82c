/** Tables of stream versions, youngest first (see StreamVersions). */
const GENERATIONS = 4;

/**
 * Bytes one cached stream costs at most: GENERATIONS tables of 8-byte slots (32 bits of the stream
 * key's hash and the version), each at most 70% full, of which GENERATIONS - 1 are always kept:
 * 4 / 3 × 8 / 0.7 ≈ 15.2, rounded up. A stream is never counted at less, whatever its key's length.
 */
export const STREAM_VERSION_ENTRY_BYTES = 16;

/** The most the tables take, whatever they are given (WRITER_STREAM_CACHE_BYTES's maximum). */
const MAX_BYTES = 4096 * 1024 * 1024;
/** Slots of a generation's table may be filled up to this share before the generations turn. */
const MAX_LOAD = 0.7;
const EMPTY = 0;
const DELETED = -1;

/**
 * One generation: an open-addressing table (linear probing) of (tag, version + 1) pairs. A key's
 * home slot comes from one 32-bit half of its hash, its tag is the other half: two keys are taken
 * for one only if their tags are equal and the second lies in the first's probe run (a few slots
 * from its home), about 1 in 2^32 per lookup times the run's length.
 */
class Generation {
  /** Live entries and tombstones: the generation turns when this reaches its capacity. */
  filled = 0;
  live = 0;
  private readonly slots: Int32Array;

  constructor(readonly slotCount: number) {
    // A zeroed ArrayBuffer: outside the V8 heap, and pages untouched until a stream hashes there.
    this.slots = new Int32Array(slotCount * 2);
  }

  /** The slot index holding (h1, h2), or -1. */
  find(h1: number, h2: number): number {
    const s = this.slots;
    for (let i = (h1 >>> 0) % this.slotCount, n = 0; n < this.slotCount; n++) {
      const v = s[i * 2 + 1];
      if (v === EMPTY) return -1;
      if (v !== DELETED && s[i * 2] === h2) return i;
      if (++i === this.slotCount) i = 0;
    }
    return -1;
  }

  version(slot: number): number {
    return this.slots[slot * 2 + 1] - 1;
  }

  /** Sets (h1, h2) to `version`; the caller made sure there is room (filled < capacity). */
  put(h1: number, h2: number, version: number): void {
    const s = this.slots;
    let reuse = -1;
    for (let i = (h1 >>> 0) % this.slotCount, n = 0; n < this.slotCount; n++) {
      const v = s[i * 2 + 1];
      if (v === EMPTY) {
        if (reuse < 0) {
          reuse = i;
          this.filled++;
        }
        this.live++;
        s[reuse * 2] = h2;
        s[reuse * 2 + 1] = version + 1;
        return;
      }
      if (v === DELETED) {
        if (reuse < 0) reuse = i;
      } else if (s[i * 2] === h2) {
        s[i * 2 + 1] = version + 1;
        return;
      }
      if (++i === this.slotCount) i = 0;
    }
    // Only tombstones and live entries on the whole way round (not reached while filled < slots).
    if (reuse < 0) throw new Error('stream version table is full');
    this.live++;
    s[reuse * 2] = h2;
    s[reuse * 2 + 1] = version + 1;
  }

  remove(h1: number, h2: number): void {
    const slot = this.find(h1, h2);
    if (slot < 0) return;
    this.slots[slot * 2 + 1] = DELETED; // a tombstone: later keys of the probe run stay reachable
    this.live--;
  }

  /** Empties the table, keeping its (already resident) memory. */
  reset(): void {
    this.slots.fill(0);
    this.filled = 0;
    this.live = 0;
  }

  get bytes(): number {
    return this.slots.byteLength;
  }
}

let h1 = 0;
let h2 = 0;

/** Sets h1 (the home slot) and h2 (the tag): a 64-bit hash of `key` (cyrb53's two 32-bit lanes). */
function hashKey(key: string): void {
  let a = 0xdeadbeef;
  let b = 0x41c6ce57;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    a = Math.imul(a ^ c, 2654435761);
    b = Math.imul(b ^ c, 1597334677);
  }
  a = Math.imul(a ^ (a >>> 16), 2246822507);
  a ^= Math.imul(b ^ (b >>> 13), 3266489909);
  b = Math.imul(b ^ (b >>> 16), 2246822507);
  b ^= Math.imul(a ^ (a >>> 13), 3266489909);
  h1 = a | 0;
  h2 = b | 0;
}

/**
 * The write side's memory: the version (number of events in the log) of the streams it wrote
 * recently, bounded in bytes (WRITER_STREAM_CACHE_BYTES). A forgotten stream costs one index probe to
 * look up again (`readStreamVersions`). This is all the append needs: the contract's counters and
 * health are folded once, by the projection.
 *
 * Compact, not an LRU of strings: a stream is a hash of its key and its version in typed arrays
 * (8 bytes a slot, outside the V8 heap), 11-16 bytes a stream instead of ~210 B of heap in
 * `lru-cache` (which took 30 MB of the writer's 128 MB heap at 1,000,000 streams, its largest
 * part). GENERATIONS tables approximate least-recently-used order: a stream found or set goes into
 * the youngest; when that one is full, the oldest is forgotten and its table, emptied, becomes the
 * youngest. So the cache holds between GENERATIONS - 1 and GENERATIONS tables' worth of the most
 * recently used streams: at least `maxBytes / STREAM_VERSION_ENTRY_BYTES`. Under memory pressure
 * `shedOlder` forgets the older half of the generations.
 *
 * Taking one stream for another (see Generation) can only make an append expect a wrong version:
 * the log refuses it (`event_log_stream_version`), the writer forgets the append's streams, reads
 * them from the log and appends again. The log's trigger, not this cache, keeps versions gap-free.
 */
export class StreamVersions {
  /** Youngest first. */
  private generations: Generation[];
  /** Entries a generation takes before the oldest is forgotten. */
  private readonly capacity: number;
  private readonly slotCount: number;
  /** Times the older half was forgotten because memory ran short (not counting turns). */
  shed = 0;

  constructor(maxBytes: number) {
    const bytes = Math.min(maxBytes, MAX_BYTES);
    const streams = Math.floor(bytes / STREAM_VERSION_ENTRY_BYTES);
    this.capacity = Math.max(1, Math.floor(streams / (GENERATIONS - 1)));
    this.slotCount = Math.max(this.capacity + 1, Math.ceil(this.capacity / MAX_LOAD));
    this.generations = Array.from({ length: GENERATIONS }, () => new Generation(this.slotCount));
  }

  /** The stream's version, marked as just used; undefined when it is not in memory. */
  get(key: string): number | undefined {
    hashKey(key);
    const g = this.generations;
    for (let i = 0; i < g.length; i++) {
      const slot = g[i].find(h1, h2);
      if (slot < 0) continue;
      const version = g[i].version(slot);
      if (i > 0) this.putYoungest(h1, h2, version);
      return version;
    }
    return undefined;
  }

  set(key: string, version: number): void {
    hashKey(key);
    this.putYoungest(h1, h2, version);
  }

  delete(key: string): void {
    hashKey(key);
    for (const g of this.generations) g.remove(h1, h2);
  }

  clear(): void {
    for (const g of this.generations) g.reset();
  }

  /**
   * Forgets the less recently used half: the older half of the generations (their memory is given
   * back once the garbage collector frees the arrays; new ones are written as streams come).
   * Returns the number of entries forgotten.
   */
  shedOlder(): number {
    const keep = Math.ceil(GENERATIONS / 2);
    let dropped = 0;
    for (let i = keep; i < GENERATIONS; i++) {
      dropped += this.generations[i].live;
      this.generations[i] = new Generation(this.slotCount);
    }
    // The kept ones stay the youngest; the new, empty ones take the places of the dropped.
    this.shed += 1;
    return dropped;
  }

  /** Entries in memory (a stream counts once per generation it is in). */
  get size(): number {
    let n = 0;
    for (const g of this.generations) n += g.live;
    return n;
  }

  /** What the tables take (allocated; pages never written are not resident). */
  get bytes(): number {
    let n = 0;
    for (const g of this.generations) n += g.bytes;
    return n;
  }

  /** Streams the cache holds at least (GENERATIONS - 1 generations' worth) and at most (all). */
  get streams(): { min: number; max: number } {
    return { min: (GENERATIONS - 1) * this.capacity, max: GENERATIONS * this.capacity };
  }

  private putYoungest(a: number, b: number, version: number): void {
    const g = this.generations;
    if (g[0].filled >= this.capacity && g[0].find(a, b) < 0) {
      // The youngest is full: the oldest is forgotten, its table emptied (its memory kept: no
      // allocation at every turn) and made the youngest.
      const recycled = g.pop()!;
      recycled.reset();
      g.unshift(recycled);
    }
    g[0].put(a, b, version);
  }
}

export function streamKey(orgId: string, connectionId: string): string {
  // org ids never contain ':' (CONTRACT 2.2), so this key is unambiguous.
  return `${orgId}:${connectionId}`;
}
