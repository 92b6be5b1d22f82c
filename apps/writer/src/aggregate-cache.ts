import { ConnectionAggregate } from './connection-aggregate';

/**
 * The connection aggregates the writer keeps in memory, at most `limit` of them: when more are put
 * in, the least recently used go (they are loaded again from their snapshot and the events after it
 * when a stream is written next). A full health window makes an aggregate ~5 KiB, so the limit is
 * what keeps a writer with many active connections within its heap.
 */
export class AggregateCache {
  /** Map order is use order: the first entry is the least recently used. */
  private readonly entries = new Map<string, ConnectionAggregate>();

  constructor(private readonly limit: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The aggregate of a stream, marked as just used; undefined when it is not in memory. */
  get(key: string): ConnectionAggregate | undefined {
    const aggregate = this.entries.get(key);
    if (aggregate !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, aggregate);
    }
    return aggregate;
  }

  /**
   * Keeps an aggregate (as just used), evicting the least recently used beyond the limit; returns
   * the evicted ones.
   */
  set(key: string, aggregate: ConnectionAggregate): ConnectionAggregate[] {
    this.entries.delete(key);
    this.entries.set(key, aggregate);
    const evicted: ConnectionAggregate[] = [];
    for (const [oldest, old] of this.entries) {
      if (this.entries.size <= this.limit) break;
      this.entries.delete(oldest);
      evicted.push(old);
    }
    return evicted;
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}
