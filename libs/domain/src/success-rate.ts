/**
 * The technical success rate of some calls with its 95% Wilson score interval (CONTRACT 1.5b): how
 * far a router can trust a rate (3 good calls and 3,000 good calls both read 1, not with the same
 * interval). The order of operations and the rounding are the contract's, so that answers are
 * byte-stable in IEEE double precision.
 */

export interface SuccessRate {
  /** s / n, rounded to 4 decimals. */
  value: number;
  /** The interval's lower end, at least 0, rounded to 4 decimals. */
  low: number;
  /** The interval's upper end, at most 1, rounded to 4 decimals. */
  high: number;
}

/** The two-sided 95% normal quantile, as the contract writes it. */
export const WILSON_Z = 1.959963984540054;

/** Rounded to 4 decimals, halves upward (Math.round). */
export function r4(x: number): number {
  return Math.round(x * 10000) / 10000;
}

/**
 * The success rate of `calls` calls of which `technicalFailures` failed for the PSP's part (declines
 * are successes here: they say nothing about the PSP); null with no calls. Every step in the contract's
 * order: reordering changes the last bits, and so the rounding, of some answers.
 */
export function successRate(calls: number, technicalFailures: number): SuccessRate | null {
  const n = calls;
  if (n === 0) return null;
  const s = n - technicalFailures;
  const z = WILSON_Z;
  const p = s / n;
  const z2 = z * z;
  const d = 1 + z2 / n;
  const center = (p + z2 / (2 * n)) / d;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / d;
  return { value: r4(p), low: r4(Math.max(0, center - half)), high: r4(Math.min(1, center + half)) };
}
