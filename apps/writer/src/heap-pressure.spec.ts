import { HeapPressure, HeapReading, shouldShed } from './heap-pressure';

const MB = 1024 * 1024;

describe('shouldShed (the writer sheds memory when the heap stays full after a full GC)', () => {
  it('sheds above the fraction of the bound, not at or below it', () => {
    expect(shouldShed({ used: 106 * MB, limit: 176 * MB }, 0.6, 10_000, -Infinity, 1000)).toBe(true);
    expect(shouldShed({ used: 105 * MB, limit: 176 * MB }, 0.6, 10_000, -Infinity, 1000)).toBe(false);
    expect(shouldShed({ used: 0.6 * 176 * MB, limit: 176 * MB }, 0.6, 10_000, -Infinity, 1000)).toBe(false);
  });

  it('sheds at most once per interval', () => {
    const full = { used: 170 * MB, limit: 176 * MB };
    expect(shouldShed(full, 0.6, 10_500, 10_000, 1000)).toBe(false);
    expect(shouldShed(full, 0.6, 11_000, 10_000, 1000)).toBe(true);
  });
});

describe('HeapPressure', () => {
  it('calls shed with the reading when the heap is above the fraction, once per interval', () => {
    let reading: HeapReading = { used: 50 * MB, limit: 100 * MB };
    let now = 0;
    const shed: HeapReading[] = [];
    const pressure = new HeapPressure(0.6, (r) => shed.push(r), {
      read: () => reading,
      now: () => now,
      minIntervalMs: 1000,
    });
    expect(pressure.check()).toBe(false);
    reading = { used: 70 * MB, limit: 100 * MB };
    expect(pressure.check()).toBe(true);
    now = 500;
    expect(pressure.check()).toBe(false);
    now = 1500;
    expect(pressure.check()).toBe(true);
    expect(shed).toEqual([reading, reading]);
  });

  it('observes the real garbage collector without shedding a heap that is nowhere near its bound', () => {
    const shed: HeapReading[] = [];
    const pressure = new HeapPressure(0.99, (r) => shed.push(r));
    pressure.start();
    pressure.start(); // idempotent
    pressure.stop();
    expect(shed).toEqual([]);
  });
});
