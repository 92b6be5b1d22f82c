import { LRUCache } from 'lru-cache';

/**
 * Bytes one cached stream version costs beyond its key's characters (measured with
 * bench/stream-version-memory.ts: the Map entry, the LRU's index slots, the key string's header and
 * the number). A key of 40 characters costs about 200 bytes.
 */
export const STREAM_VERSION_ENTRY_BYTES = 120;

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
