import fc from 'fast-check';
import { formatTimestamp, minuteBucket, parseTimestamp } from './time';

const utc = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0, ms = 0) => Date.UTC(y, mo - 1, d, h, mi, s, ms);

describe('parseTimestamp', () => {
  describe('accepts RFC 3339 date-times with an offset', () => {
    it.each([
      ['2026-11-24T10:15:00.250Z', utc(2026, 11, 24, 10, 15, 0, 250)],
      ['2026-11-24T10:15:00Z', utc(2026, 11, 24, 10, 15)],
      ['2026-11-24t10:15:00z', utc(2026, 11, 24, 10, 15)],
      ['2026-11-24T10:15:00+00:00', utc(2026, 11, 24, 10, 15)],
      ['2026-11-24T10:15:00-00:00', utc(2026, 11, 24, 10, 15)],
    ])('%s', (text, expected) => {
      expect(parseTimestamp(text)).toBe(expected);
    });
  });

  describe('offsets convert to UTC', () => {
    it.each([
      // 15:45 at +05:30 is 15:45 - 5:30 = 10:15 UTC.
      ['2026-11-24T15:45:00+05:30', utc(2026, 11, 24, 10, 15)],
      // 05:15 at -05:00 is 05:15 + 5:00 = 10:15 UTC.
      ['2026-11-24T05:15:00-05:00', utc(2026, 11, 24, 10, 15)],
      // Crossing the year backwards: 01:00 at +02:00 is 23:00 UTC the day before.
      ['2027-01-01T01:00:00+02:00', utc(2026, 12, 31, 23)],
      // Crossing a leap day forwards: 22:30 at -03:00 is 01:30 UTC on Feb 29.
      ['2024-02-28T22:30:00-03:00', utc(2024, 2, 29, 1, 30)],
      // The extreme offsets.
      ['2026-11-24T23:59:00+23:59', utc(2026, 11, 24, 0, 0)],
      ['2026-11-24T00:00:00-23:59', utc(2026, 11, 24, 23, 59)],
      // An offset with a fraction: 10:15:00.5 at +01:00 is 09:15:00.500 UTC.
      ['2026-11-24T10:15:00.5+01:00', utc(2026, 11, 24, 9, 15, 0, 500)],
    ])('%s', (text, expected) => {
      expect(parseTimestamp(text)).toBe(expected);
    });
  });

  describe('fractions of any length, truncated to the millisecond (toward the past)', () => {
    it.each([
      ['2026-11-24T10:15:00.1Z', utc(2026, 11, 24, 10, 15, 0, 100)],
      ['2026-11-24T10:15:00.12Z', utc(2026, 11, 24, 10, 15, 0, 120)],
      ['2026-11-24T10:15:00.123Z', utc(2026, 11, 24, 10, 15, 0, 123)],
      ['2026-11-24T10:15:00.1239Z', utc(2026, 11, 24, 10, 15, 0, 123)],
      ['2026-11-24T10:15:00.999999999999999999999Z', utc(2026, 11, 24, 10, 15, 0, 999)],
      ['2026-11-24T10:15:00.000000001Z', utc(2026, 11, 24, 10, 15)],
      // Before 1970 the instant is negative: 0.0001 s before the epoch truncates to -1 ms, not 0.
      ['1969-12-31T23:59:59.9999Z', -1],
    ])('%s', (text, expected) => {
      expect(parseTimestamp(text)).toBe(expected);
    });
  });

  describe('leap years', () => {
    it.each([
      ['2024-02-29T00:00:00Z', utc(2024, 2, 29)],
      ['2000-02-29T00:00:00Z', utc(2000, 2, 29)],
      ['2400-02-29T00:00:00Z', utc(2400, 2, 29)],
    ])('accepts Feb 29 of leap year %s', (text, expected) => {
      expect(parseTimestamp(text)).toBe(expected);
    });

    it.each(['2026-02-29T00:00:00Z', '1900-02-29T00:00:00Z', '2100-02-29T00:00:00Z', '2024-02-30T00:00:00Z'])(
      'rejects %s',
      (text) => {
        expect(parseTimestamp(text)).toBeNull();
      },
    );
  });

  describe('years 0000 to 9999, including those Date.UTC reads as 19xx', () => {
    it.each([
      ['0000-01-01T00:00:00Z', -62_167_219_200_000],
      ['0099-12-31T23:59:59.999Z', new Date('0099-12-31T23:59:59.999Z').getTime()],
      ['9999-12-31T23:59:59.999Z', new Date('9999-12-31T23:59:59.999Z').getTime()],
    ])('%s', (text, expected) => {
      expect(parseTimestamp(text)).toBe(expected);
    });
  });

  describe('range checks', () => {
    it.each([
      ['month 00', '2026-00-10T00:00:00Z'],
      ['month 13', '2026-13-10T00:00:00Z'],
      ['day 00', '2026-11-00T00:00:00Z'],
      ['day 31 of a 30-day month', '2026-04-31T00:00:00Z'],
      ['day 32', '2026-01-32T00:00:00Z'],
      ['hour 24', '2026-11-24T24:00:00Z'],
      ['minute 60', '2026-11-24T10:60:00Z'],
      ['second 60 (leap second)', '2026-12-31T23:59:60Z'],
      ['offset hour 24', '2026-11-24T10:00:00+24:00'],
      ['offset minute 60', '2026-11-24T10:00:00+05:60'],
    ])('rejects %s', (_name, text) => {
      expect(parseTimestamp(text)).toBeNull();
    });

    it.each(['2026-01-31T00:00:00Z', '2026-04-30T00:00:00Z', '2026-12-31T23:59:59Z', '2026-11-24T00:00:00Z'])(
      'accepts the last valid %s',
      (text) => {
        expect(parseTimestamp(text)).not.toBeNull();
      },
    );
  });

  describe('rejects other shapes', () => {
    it.each([
      ['no offset', '2026-11-24T10:15:00'],
      ['no offset with fraction', '2026-11-24T10:15:00.250'],
      ['space separator', '2026-11-24 10:15:00Z'],
      ['date only', '2026-11-24'],
      ['offset without colon', '2026-11-24T10:15:00+0530'],
      ['one-digit offset hour', '2026-11-24T10:15:00+5:30'],
      ['hour-only offset', '2026-11-24T10:15:00+05'],
      ['empty fraction', '2026-11-24T10:15:00.Z'],
      ['comma fraction', '2026-11-24T10:15:00,5Z'],
      ['one-digit month', '2026-1-24T10:15:00Z'],
      ['no seconds', '2026-11-24T10:15Z'],
      ['five-digit year', '12026-11-24T10:15:00Z'],
      ['signed year', '+2026-11-24T10:15:00Z'],
      ['leading space', ' 2026-11-24T10:15:00Z'],
      ['trailing space', '2026-11-24T10:15:00Z '],
      ['trailing newline', '2026-11-24T10:15:00Z\n'],
      ['non-ASCII digits', '２026-11-24T10:15:00Z'],
      ['UTC word', '2026-11-24T10:15:00 UTC'],
      ['epoch number text', '1764000000000'],
      ['empty', ''],
    ])('%s', (_name, text) => {
      expect(parseTimestamp(text)).toBeNull();
    });
  });

  it('agrees with Date for every valid Z timestamp of years 1000-9999 (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(1000, 0, 1), max: Date.UTC(9999, 11, 31, 23, 59, 59, 999) }), (ms) => {
        const text = new Date(ms).toISOString();
        expect(parseTimestamp(text)).toBe(ms);
      }),
      { numRuns: 300, seed: 1 },
    );
  });

  it('applies any offset as local time minus the offset (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(2000, 0, 2), max: Date.UTC(2099, 11, 30) }),
        fc.integer({ min: -(23 * 60 + 59), max: 23 * 60 + 59 }),
        (ms, offsetMinutes) => {
          // Write the instant `ms` as local time at the offset, then parse it back.
          const local = new Date(ms + offsetMinutes * 60_000).toISOString().slice(0, 23);
          const abs = Math.abs(offsetMinutes);
          const sign = offsetMinutes < 0 ? '-' : '+';
          const offset = `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
          expect(parseTimestamp(local + offset)).toBe(ms);
        },
      ),
      { numRuns: 300, seed: 2 },
    );
  });
});

describe('formatTimestamp', () => {
  it('writes UTC with milliseconds and Z', () => {
    expect(formatTimestamp(utc(2026, 11, 24, 10, 15))).toBe('2026-11-24T10:15:00.000Z');
    expect(formatTimestamp(utc(2026, 11, 24, 10, 15, 0, 250))).toBe('2026-11-24T10:15:00.250Z');
    expect(formatTimestamp(0)).toBe('1970-01-01T00:00:00.000Z');
  });

  it('round-trips with parseTimestamp, whatever the input offset', () => {
    expect(formatTimestamp(parseTimestamp('2026-11-24T15:45:00.25+05:30') as number)).toBe('2026-11-24T10:15:00.250Z');
  });
});

describe('minuteBucket', () => {
  it('is floor(ms / 60 s)', () => {
    expect(minuteBucket(0)).toBe(0);
    expect(minuteBucket(59_999)).toBe(0);
    expect(minuteBucket(60_000)).toBe(1);
    expect(minuteBucket(-1)).toBe(-1);
    expect(minuteBucket(-60_000)).toBe(-1);
    expect(minuteBucket(-60_001)).toBe(-2);
    // 10:15:30 falls in the bucket that starts at 10:15:00.
    expect(minuteBucket(utc(2026, 11, 24, 10, 15, 30)) * 60_000).toBe(utc(2026, 11, 24, 10, 15));
  });
});
