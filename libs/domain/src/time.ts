/**
 * Event time: parsing the contract's RFC 3339 timestamps into epoch milliseconds (UTC), formatting
 * them back, and the minute buckets of the health window (CONTRACT 2.2, 1.3 and 3.3).
 */

/** Milliseconds in one minute bucket of the health window. */
export const MINUTE_MS = 60_000;

// date "T" time, optional fraction, then an offset: `Z`/`z` or `±HH:MM`. No offset means no instant,
// so RFC 3339's "local time" form is rejected. `\d` without the `u` flag is ASCII 0-9 only.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

const DAY_MS = 86_400_000;

/**
 * The instants an `occurred_at` may name (CONTRACT 2.2): 0001-01-01T00:00:00.000Z to
 * 9999-12-31T23:59:59.999Z in UTC, after applying the offset. Outside it the event is `invalid_field`
 * (PostgreSQL's timestamptz, and `toISOString`'s four-digit years, hold nothing else).
 */
export const OCCURRED_AT_RANGE = { min: -62_135_596_800_000, max: 253_402_300_799_999 } as const;

/** Whether an instant (epoch ms, UTC) lies in the range an `occurred_at` may name. */
export function isStorableInstant(ms: number): boolean {
  return ms >= OCCURRED_AT_RANGE.min && ms <= OCCURRED_AT_RANGE.max;
}

/**
 * Parses an RFC 3339 date-time with an offset into epoch milliseconds (UTC), or null when the text is
 * not one. Every field is range-checked (month, day of the month with leap years, hour 0-23, minute
 * and second 0-59: a leap second `60` is rejected, offset hours 0-23 and minutes 0-59). A fraction
 * of any length is truncated to the millisecond, which moves the instant toward the past (offsets are
 * whole minutes, so truncating the local time truncates the instant too).
 */
export function parseTimestamp(s: string): number | null {
  const m = RFC3339.exec(s);
  if (m === null) return null;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6]);
  if (month < 1 || month > 12) return null;
  if (day < 1 || day > daysInMonth(year, month)) return null;
  if (hour > 23 || minute > 59 || second > 59) return null;

  const fraction = m[7];
  const millis = fraction === undefined ? 0 : Number(fraction.slice(0, 3).padEnd(3, '0'));

  let offsetMinutes = 0;
  if (m[8] === undefined) {
    const offsetHours = Number(m[10]);
    const offsetMins = Number(m[11]);
    if (offsetHours > 23 || offsetMins > 59) return null;
    // `-00:00` ("offset unknown") names the same instant as `Z`.
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMins);
  }

  const local = daysFromCivil(year, month, day) * DAY_MS + ((hour * 60 + minute) * 60 + second) * 1000 + millis;
  // Local time = UTC + offset, so UTC = local time - offset.
  return local - offsetMinutes * MINUTE_MS;
}

/** `2026-11-24T10:15:00.000Z`: UTC, millisecond precision, `Z`. */
export function formatTimestamp(ms: number): string {
  return new Date(ms).toISOString();
}

/** The health window's minute bucket that holds the instant `ms`. */
export function minuteBucket(ms: number): number {
  return Math.floor(ms / MINUTE_MS);
}

function isLeapYear(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  return month === 2 && isLeapYear(year) ? 29 : DAYS_IN_MONTH[month - 1];
}

/**
 * Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`). Written out
 * rather than `Date.UTC`, which reads years 0-99 as 1900-1999.
 */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}
