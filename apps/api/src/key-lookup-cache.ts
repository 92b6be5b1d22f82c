import { LRUCache } from 'lru-cache';
import { apiMetrics } from './metrics';

export interface KeyLookupCacheLimits {
  /** How long a lookup is trusted (API_KEY_CACHE_MS, ≤ 5 s: the revocation bound); 0 caches nothing. */
  ttlMs: number;
  /** Byte budget of lookups that found a key (API_KEY_CACHE_BYTES). */
  foundBytes: number;
  /** At most this many lookups that found nothing (API_KEY_MISS_CACHE_ENTRIES); 0 keeps none. */
  missEntries: number;
  /** ...and at most this many bytes of them (API_KEY_MISS_CACHE_BYTES). */
  missBytes: number;
}

interface Found<R> {
  record: R;
  until: number;
}

/** Bytes a miss is counted at: its cache key and a small per-entry overhead. */
export function missBytes(cacheKey: string): number {
  return cacheKey.length + 64;
}

/**
 * Key lookups, cached for at most `ttlMs`, in two LRU caches bounded by bytes: keys that were
 * found, and, kept apart in a small cache bounded by count and bytes, lookups that found nothing.
 * A flood of unknown keys therefore only churns the miss cache, never evicts a valid key, and a full
 * cache drops its least recently used entry, not everything. The cache key is whatever the caller
 * files lookups under (the key's hash, never the key); nothing here is logged.
 */
export class KeyLookupCache<R extends object> {
  private readonly found: LRUCache<string, Found<R>>;
  private readonly missing: LRUCache<string, number> | null;

  constructor(
    private readonly limits: KeyLookupCacheLimits,
    sizeOf: (record: R, cacheKey: string) => number,
    private readonly now: () => number = Date.now,
  ) {
    this.found = new LRUCache<string, Found<R>>({
      maxSize: limits.foundBytes,
      sizeCalculation: (entry, key) => Math.max(1, sizeOf(entry.record, key)),
    });
    this.missing =
      limits.missEntries > 0
        ? new LRUCache<string, number>({
            max: limits.missEntries,
            maxSize: limits.missBytes,
            sizeCalculation: (_until, key) => missBytes(key),
          })
        : null;
  }

  /** `{ record }` (null: no such key) when a lookup younger than ttlMs is cached, else undefined. */
  get(cacheKey: string): { record: R | null } | undefined {
    const cached = this.cached(cacheKey);
    apiMetrics().keyLookup(cached !== undefined);
    return cached;
  }

  private cached(cacheKey: string): { record: R | null } | undefined {
    const now = this.now();
    const found = this.found.get(cacheKey);
    if (found) {
      if (found.until > now) return { record: found.record };
      this.found.delete(cacheKey);
    }
    const missUntil = this.missing?.get(cacheKey);
    if (missUntil !== undefined) {
      if (missUntil > now) return { record: null };
      this.missing!.delete(cacheKey);
    }
    return undefined;
  }

  /** Caches a lookup's answer: a record in the found cache, null (no such key) in the miss cache. */
  set(cacheKey: string, record: R | null): void {
    if (this.limits.ttlMs <= 0) return;
    const until = this.now() + this.limits.ttlMs;
    if (record === null) {
      this.found.delete(cacheKey);
      this.missing?.set(cacheKey, until);
    } else {
      this.missing?.delete(cacheKey);
      this.found.set(cacheKey, { record, until });
    }
  }

  /** Entries and bytes held, for tests and ops. */
  stats(): { found: number; foundBytes: number; missing: number; missingBytes: number } {
    return {
      found: this.found.size,
      foundBytes: this.found.calculatedSize,
      missing: this.missing?.size ?? 0,
      missingBytes: this.missing?.calculatedSize ?? 0,
    };
  }
}
