import { r4, successRate, WILSON_Z } from './success-rate';

// Hand-computed: with s = n (all good) the Wilson interval's low end is n / (n + z²), and with s = 0
// (all failed) its high end is z² / (n + z²); z² = 3.841458820694124.
describe('successRate: the Wilson score interval of CONTRACT 1.5b', () => {
  it('is null with no calls', () => {
    expect(successRate(0, 0)).toBeNull();
  });

  it('one good call: 1, from 1 / (1 + z²) = 0.20655 to 1', () => {
    expect(successRate(1, 0)).toEqual({ value: 1, low: 0.2065, high: 1 });
  });

  it('one failed call: 0, from 0 to z² / (1 + z²) = 0.79345', () => {
    expect(successRate(1, 1)).toEqual({ value: 0, low: 0, high: 0.7935 });
  });

  it('all failed, 10 calls: high z² / (10 + z²) = 0.27753', () => {
    expect(successRate(10, 10)).toEqual({ value: 0, low: 0, high: 0.2775 });
  });

  it('tells 3 good calls from 3,000: low 3 / 6.8415 = 0.43850 against 3000 / 3003.8415 = 0.99872', () => {
    expect(successRate(3, 0)).toEqual({ value: 1, low: 0.4385, high: 1 });
    // center + half is 1.0000000000000002 here in double precision: min(1, …) keeps it at 1.
    expect(successRate(3000, 0)).toEqual({ value: 1, low: 0.9987, high: 1 });
  });

  it("the contract's examples", () => {
    expect(successRate(1234, 20)).toEqual({ value: 0.9838, low: 0.9751, high: 0.9895 });
    expect(successRate(900, 15)).toEqual({ value: 0.9833, low: 0.9727, high: 0.9899 });
    expect(successRate(1000, 18)).toEqual({ value: 0.982, low: 0.9717, high: 0.9886 });
  });

  it('one good and one failed call: centred on 1/2, half-width 0.40547', () => {
    // z²/2 = 1.92073, d = 2.92073; center = (1/2 + z²/4) / d = 1/2;
    // half = z·√(1/8 + z²/16) / d = 1.95996 · √0.36509 / 2.92073 = 1.95996 · 0.60423 / 2.92073 = 0.40547.
    const z2 = WILSON_Z * WILSON_Z;
    expect((WILSON_Z * Math.sqrt(1 / 8 + z2 / 16)) / (1 + z2 / 2)).toBeCloseTo(0.40547, 5);
    expect(successRate(2, 1)).toEqual({ value: 0.5, low: 0.0945, high: 0.9055 });
  });

  it('rounds halves upward: 1/32 = 0.03125 → 0.0313 (312.5 is exact in binary)', () => {
    expect(r4(1 / 32)).toBe(0.0313);
    expect(r4(3 / 32)).toBe(0.0938);
    expect(successRate(32, 31)!.value).toBe(0.0313);
  });
});
