import { LRUCache } from 'lru-cache';

/**
 * Bytes one cached stream version is counted at beyond twice its key's length: measured with
 * `npm run bench:memory` (bench/memory-estimates.ts: 202-210 B of heap per entry with
 * 35-character keys, for 200,000 and 1,000,000 entries); 150 + 2 x 35 = 220 B keeps the bound above
 * what the heap holds.
 */
export const STREAM_VERSION_ENTRY_BYTES = 150;

/**
 * The write side's memory: the version (number of events in the log) of the streams it wrote
 * recently, least recently used forgotten first, bounded in bytes (WRITER_STREAM_CACHE_BYTES). A
 * forgotten stream costs one index probe to look up again (`readStreamVersions`). This is all the
 * append needs: the contract's counters and health are folded once, by the projection.
 */
export class StreamVersions {
  private readonly cache: LRUCache<string, number>;

  constructor(maxBytes: number) {
    this.cache = new LRUCache<string, number>({
      maxSize: maxBytes,
      sizeCalculation: (_version, key) => STREAM_VERSION_ENTRY_BYTES + 2 * key.length,
    });
  }

  /** The stream's version, marked as just used; undefined when it is not in memory. */
  get(key: string): number | undefined {
    return this.cache.get(key);
  }

  set(key: string, version: number): void {
    this.cache.set(key, version);
  }

  delete(key: string): void {
    this.cache.delete(key);
  }

  clear(): void {
    this.cache.clear();
  }

  get size(): number {
    return this.cache.size;
  }

  /** What the entries cost by the estimate above. */
  get bytes(): number {
    return this.cache.calculatedSize;
  }
}

export function streamKey(orgId: string, connectionId: string): string {
  // org ids never contain ':' (CONTRACT 2.2), so this key is unambiguous.
  return `${orgId}:${connectionId}`;
}
