import { nextStepLimit } from './step-size';

describe('nextStepLimit', () => {
  const BASE = 5000;
  const MAX = 20000;

  it('grows while the shard is behind (full steps), up to the most', () => {
    expect(nextStepLimit(5000, { applied: 5000 }, BASE, MAX)).toBe(10000);
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
    expect(nextStepLimit(limit, { applied: limit }, BASE, MAX)).toBe(10000);
  });

  it('never grows past the base when the most is set below it', () => {
    expect(nextStepLimit(5000, { applied: 5000 }, BASE, 1000)).toBe(5000);
    expect(nextStepLimit(5000, { applied: 5000 }, BASE, BASE)).toBe(5000);
  });
});
