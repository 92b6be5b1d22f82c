import { InvalidArgumentError } from 'commander';

/** Exit codes of `npm run ops` (README "Ops"). */
export const EXIT = {
  /** the command did what it was asked */
  ok: 0,
  /** the operation failed (a server did not answer, no such key, …) */
  failed: 1,
  /** usage error: unknown command or option, bad option value, invalid settings */
  usage: 2,
  /** interrupted (Ctrl-C) before finishing; run again to resume */
  interrupted: 130,
} as const;

/** A usage error found after parsing (a value the command refuses): exit 2 with one line on stderr. */
export class UsageError extends Error {}

/** One line on stdout (what a script reads); progress and diagnostics go to stderr. */
export function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Writes `value` as one JSON document on stdout. */
export function sayJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Option parser: a positive integer, else a usage error naming the option. */
export function positiveInteger(option: string): (value: string) => number {
  return (value: string) => {
    if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value)))
      throw new InvalidArgumentError(`${option} must be a positive integer.`);
    return Number(value);
  };
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Option parser of a point in time: an RFC 3339 / ISO 8601 timestamp (`2026-11-24T10:00:00Z`; UTC without
 * an offset, a date alone is midnight UTC) or a duration before now (`90s`, `30m`, `2h`, `7d`). Returns epoch ms.
 */
export function parseTime(value: string, now = Date.now()): number {
  const relative = /^(\d+)([smhd])$/.exec(value.trim());
  if (relative) return now - Number(relative[1]) * UNIT_MS[relative[2]];
  const absolute = /^\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/i.exec(value.trim());
  if (absolute) {
    // Without an offset, UTC (as a date alone already is), never the machine's time zone.
    const text = absolute[0].includes(':') && !absolute[1] ? `${absolute[0]}Z` : absolute[0];
    const at = Date.parse(text.replace(' ', 'T'));
    if (Number.isFinite(at)) return at;
  }
  throw new InvalidArgumentError('expected a timestamp (2026-11-24T10:00:00Z) or a duration before now (30m, 2h, 7d).');
}

/** Option parser of a repeatable, comma-separated list (`--reason a --reason b,c`). */
export function collectList(value: string, previous: string[] = []): string[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (items.length === 0) throw new InvalidArgumentError('expected at least one value.');
  return [...previous, ...items.filter((i) => !previous.includes(i))];
}
