import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';

/** The V8 heap as read right after a full (mark-compact) collection: what is live, and the bound. */
export interface HeapReading {
  /** Bytes in use (after a full collection: live objects). */
  used: number;
  /** The heap's bound (`heap_size_limit`: --max-old-space-size plus the young generation). */
  limit: number;
}

/**
 * The shedding policy, pure: shed when what is still live after a full collection passes
 * `fraction` of the heap's bound (the garbage collector could not bring it below: the writer holds
 * too much, and the next growth ends in an out-of-memory crash), at most once per `minIntervalMs`
 * (a full collection follows a shed only after the freed memory was given back).
 */
export function shouldShed(
  reading: HeapReading,
  fraction: number,
  now: number,
  lastShedAt: number,
  minIntervalMs: number,
): boolean {
  return reading.used > fraction * reading.limit && now - lastShedAt >= minIntervalMs;
}

/**
 * Watches the heap after every full garbage collection and calls `shed` when the policy says so. The
 * writer then forgets the less recently used half of its stream versions and halves what may wait
 * for the next append until the pressure is gone (ConnectionStreams, IntakeAppends): "the process
 * sheds cache, never dies".
 */
export class HeapPressure {
  private observer?: PerformanceObserver;
  private lastShedAt = -Infinity;

  constructor(
    private readonly fraction: number,
    private readonly shed: (reading: HeapReading) => void,
    private readonly options: { minIntervalMs?: number; read?: () => HeapReading; now?: () => number } = {},
  ) {}

  start(): void {
    if (this.observer) return;
    this.observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        const kind = (entry as { detail?: { kind?: number } }).detail?.kind;
        if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
          this.check();
          break;
        }
      }
    });
    this.observer.observe({ entryTypes: ['gc'] });
  }

  /** Reads the heap and sheds if the policy says so; returns whether it shed. */
  check(): boolean {
    const reading = (this.options.read ?? readHeap)();
    const now = (this.options.now ?? Date.now)();
    if (!shouldShed(reading, this.fraction, now, this.lastShedAt, this.options.minIntervalMs ?? 1000)) return false;
    this.lastShedAt = now;
    this.shed(reading);
    return true;
  }

  stop(): void {
    this.observer?.disconnect();
    this.observer = undefined;
  }
}

export function readHeap(): HeapReading {
  const h = getHeapStatistics();
  return { used: h.used_heap_size, limit: h.heap_size_limit };
}
