/**
 * Runs `load` once for concurrent callers with the same key: when a cached entry expires under
 * load, one request refreshes it and the others wait for that answer instead of all querying.
 */
export class SingleFlight<T> {
  private readonly inFlight = new Map<string, Promise<T>>();

  run(key: string, load: () => Promise<T>): Promise<T> {
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    const started = load().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, started);
    return started;
  }
}

/**
 * One value of `compute`, reused for `freshMs` after it was computed: callers in that time get it
 * without computing, and callers while it is being computed share that one computation. A failed
 * computation is not kept (its callers get the error; the next caller computes again).
 */
export class FreshFor<T> {
  private last: { value: T; computedAt: number } | null = null;
  private readonly flight = new SingleFlight<{ value: T; computedAt: number }>();

  constructor(
    private readonly freshMs: number,
    private readonly compute: () => Promise<T>,
    private readonly now: () => number = Date.now,
  ) {}

  /** The value and when (epoch ms) it was computed. */
  get(): Promise<{ value: T; computedAt: number }> {
    if (this.last && this.now() - this.last.computedAt < this.freshMs) return Promise.resolve(this.last);
    return this.flight.run('value', async () => {
      const value = await this.compute();
      this.last = { value, computedAt: this.now() };
      return this.last;
    });
  }
}
