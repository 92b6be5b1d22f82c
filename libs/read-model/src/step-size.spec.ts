import { nextStepLimit } from './step-size';

describe('nextStepLimit', () => {
  const BASE = 5000;
  const MAX = 20000;

  it('reads the most while the shard is behind (full steps)', () => {
    expect(nextStepLimit(5000, { applied: 5000 }, BASE, MAX)).toBe(20000);
    expect(nextStepLimit(10000, { applied: 10000 }, BASE, MAX)).toBe(20000);
    expect(nextStepLimit(20000, { applied: 20000 }, BASE, MAX)).toBe(20000);
  });

  it('goes back to the base once caught up, or when there was nothing to read', () => {
    expect(nextStepLimit(20000, { applied: 19999 }, BASE, MAX)).toBe(5000);
    expect(nextStepLimit(20000, { applied: 0 }, BASE, MAX)).toBe(5000);
    expect(nextStepLimit(5000, { applied: 12 }, BASE, MAX)).toBe(5000);
    expect(nextStepLimit(1, { applied: 0 }, BASE, MAX)).toBe(5000);
  });

  it('halves on failure down to one event, then doubles back to the base (not past it) on success', () => {
    let limit = 20000;
    const failures = [10000, 5000, 2500, 1250, 625, 312, 156, 78, 39, 19, 9, 4, 2, 1, 1];
    for (const expected of failures) {
      limit = nextStepLimit(limit, 'failed', BASE, MAX);
      expect(limit).toBe(expected);
    }
    // The one event it could not get past applies now: 1 → 2 → … → the base, even for full steps.
    const back: number[] = [];
    while (limit < BASE) {
      limit = nextStepLimit(limit, { applied: limit }, BASE, MAX);
      back.push(limit);
    }
    expect(back).toEqual([2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 5000]);
    expect(nextStepLimit(limit, { applied: limit }, BASE, MAX)).toBe(20000);
  });

  it('never grows past the base when the most is set below it', () => {
    expect(nextStepLimit(5000, { applied: 5000 }, BASE, 1000)).toBe(5000);
    expect(nextStepLimit(5000, { applied: 5000 }, BASE, BASE)).toBe(5000);
  });

  describe('bounded by the working set in bytes', () => {
    const MiB = 1024 * 1024;

    it('grows as before while the steps stay within the bound', () => {
      // 5,000 events that held 10 MiB: 20,000 would hold ~40 MiB, within 64.
      expect(nextStepLimit(5000, { applied: 5000, workingBytes: 10 * MiB }, BASE, MAX, 64 * MiB)).toBe(20000);
      expect(nextStepLimit(10000, { applied: 10000, workingBytes: 20 * MiB }, BASE, MAX, 64 * MiB)).toBe(20000);
    });

    it('does not extrapolate a step above the base (it holds one chunk at a time) from what the last one held', () => {
      // A base step (events held) of 40 MiB: the next reads connection by connection, the most.
      expect(nextStepLimit(5000, { applied: 5000, workingBytes: 40 * MiB }, BASE, MAX, 64 * MiB)).toBe(20000);
      expect(nextStepLimit(10000, { applied: 10000, workingBytes: 40 * MiB }, BASE, MAX, 64 * MiB)).toBe(20000);
      // A base step that would not fit again stays below the base: 5,000 events held 80 MiB.
      expect(nextStepLimit(4000, { applied: 4000, workingBytes: 80 * MiB }, BASE, MAX, 64 * MiB)).toBe(3200);
    });

    it('shrinks, below the base too, after a step that held more than the bound', () => {
      // 20,000 events held 160 MiB: the next reads 8,000 (64 / 160 of them).
      expect(nextStepLimit(20000, { applied: 20000, workingBytes: 160 * MiB }, BASE, MAX, 64 * MiB)).toBe(8000);
      // 5,000 events of connections with full windows held 128 MiB: 2,500, under the base.
      expect(nextStepLimit(5000, { applied: 5000, workingBytes: 128 * MiB }, BASE, MAX, 64 * MiB)).toBe(2500);
      // Caught up (fewer than asked), but the few it read were heavy: still bounded.
      expect(nextStepLimit(5000, { applied: 100, workingBytes: 80 * MiB }, BASE, MAX, 64 * MiB)).toBe(80);
    });

    it('never goes below one event, and a failure halves as before', () => {
      expect(nextStepLimit(1, { applied: 1, workingBytes: 1024 * MiB }, BASE, MAX, 64 * MiB)).toBe(1);
      expect(nextStepLimit(8000, 'failed', BASE, MAX, 64 * MiB)).toBe(4000);
    });

    it('has no effect without a bound or an estimate', () => {
      expect(nextStepLimit(10000, { applied: 10000, workingBytes: 400 * MiB }, BASE, MAX)).toBe(20000);
      expect(nextStepLimit(10000, { applied: 10000 }, BASE, MAX, 64 * MiB)).toBe(20000);
      expect(nextStepLimit(10000, { applied: 0, workingBytes: 0 }, BASE, MAX, 64 * MiB)).toBe(BASE);
    });
  });

  describe('bounded by the time a step takes', () => {
    const T = 3000;
    const MOST = 100000;

    it('jumps from a full base step to the most (a catch-up step reads connection by connection)', () => {
      expect(nextStepLimit(BASE, { applied: BASE, elapsedMs: 800 }, BASE, MOST, Infinity, T)).toBe(MOST);
      // Even a slow base step: what a catch-up step costs grows more slowly than its events.
      expect(nextStepLimit(BASE, { applied: BASE, elapsedMs: 5000 }, BASE, MOST, Infinity, T)).toBe(MOST);
    });

    it('shrinks in proportion after a step that took longer, never below the base', () => {
      // 100,000 events in 12 s: 3 s holds 25,000 of them.
      expect(nextStepLimit(MOST, { applied: MOST, elapsedMs: 12000 }, BASE, MOST, Infinity, T)).toBe(25000);
      expect(nextStepLimit(20000, { applied: 20000, elapsedMs: 60000 }, BASE, MOST, Infinity, T)).toBe(BASE);
    });

    it('doubles after a step that took less than half the time, keeps its size otherwise', () => {
      expect(nextStepLimit(25000, { applied: 25000, elapsedMs: 1000 }, BASE, MOST, Infinity, T)).toBe(50000);
      expect(nextStepLimit(80000, { applied: 80000, elapsedMs: 1000 }, BASE, MOST, Infinity, T)).toBe(MOST);
      expect(nextStepLimit(25000, { applied: 25000, elapsedMs: 2000 }, BASE, MOST, Infinity, T)).toBe(25000);
    });

    it('goes back to the base once caught up, and recovers from failures as before', () => {
      expect(nextStepLimit(25000, { applied: 300, elapsedMs: 50 }, BASE, MOST, Infinity, T)).toBe(BASE);
      expect(nextStepLimit(64, { applied: 64, elapsedMs: 60000 }, BASE, MOST, Infinity, T)).toBe(128);
    });

    it('combines with the bound in bytes (the smaller wins) and reads the most without a time bound', () => {
      expect(
        nextStepLimit(
          40000,
          { applied: 40000, elapsedMs: 1000, workingBytes: 128 * 1024 * 1024 },
          BASE,
          MOST,
          64 * 1024 * 1024,
          T,
        ),
      ).toBe(20000);
      expect(nextStepLimit(40000, { applied: 40000, elapsedMs: 100000 }, BASE, MOST)).toBe(MOST);
    });
  });
});
