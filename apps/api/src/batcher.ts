/**
 * Coalesces concurrent loads by key into batches: every key asked for before the next turn of the
 * event loop (`setImmediate`) goes out in one call of `loadBatch`, at most `maxBatch` keys per call.
 * A key already waiting or in flight is not asked for again: its callers share the one answer (so it
 * also does what SingleFlight does). Nothing is cached once a batch has answered.
 *
 * What the API uses it for: per-request round trips that would otherwise grow with the number of
 * orgs served (one Redis version GET and one PostgreSQL version check per org, one key lookup per
 * key) become one MGET / one statement per batch.
 */
export class Batcher<K, V> {
  private readonly inFlight = new Map<K, Promise<V>>();
  private waiting: { key: K; resolve: (value: V) => void; reject: (error: unknown) => void }[] = [];
  private scheduled = false;

  constructor(
    /** Answers the keys in the order given (one value per key). */
    private readonly loadBatch: (keys: K[]) => Promise<V[]>,
    private readonly maxBatch = 500,
  ) {}

  load(key: K): Promise<V> {
    const known = this.inFlight.get(key);
    if (known) return known;
    const promise = new Promise<V>((resolve, reject) => this.waiting.push({ key, resolve, reject }));
    this.inFlight.set(key, promise);
    if (this.waiting.length >= this.maxBatch) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
    return promise;
  }

  /** Keys waiting for the next batch or answered by a batch in flight (for tests). */
  get pending(): number {
    return this.inFlight.size;
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.waiting;
    if (batch.length === 0) return;
    this.waiting = [];
    const settle = () => {
      for (const w of batch) this.inFlight.delete(w.key);
    };
    let answer: Promise<V[]>;
    try {
      answer = this.loadBatch(batch.map((w) => w.key));
    } catch (error) {
      answer = Promise.reject(error);
    }
    answer
      .then(
        (values) => {
          settle();
          if (values.length !== batch.length)
            throw new Error(`a batch of ${batch.length} keys answered ${values.length} values`);
          batch.forEach((w, i) => w.resolve(values[i]));
        },
        (error: unknown) => {
          settle();
          for (const w of batch) w.reject(error);
        },
      )
      .catch((error: unknown) => {
        for (const w of batch) w.reject(error);
      });
  }
}
