import { STREAM_VERSION_ENTRY_BYTES, streamKey, StreamVersions } from './stream-versions';

describe('StreamVersions', () => {
  it('keeps versions by stream, 0 included', () => {
    const versions = new StreamVersions(10_000);
    versions.set(streamKey('org_1', 'a'), 3);
    versions.set(streamKey('org_1', 'b'), 7);
    versions.set(streamKey('org_1', 'z'), 0);
    expect(versions.get('org_1:a')).toBe(3);
    expect(versions.get('org_1:b')).toBe(7);
    expect(versions.get('org_1:z')).toBe(0);
    expect(versions.get('org_1:c')).toBeUndefined();
    versions.set('org_1:a', 2_000_000_000);
    expect(versions.get('org_1:a')).toBe(2_000_000_000);
    expect(versions.size).toBe(3);
  });

  it('never takes more bytes than it is given', () => {
    for (const maxBytes of [256, 1000, 10_000, 1_000_000, 24 * 1024 * 1024]) {
      const versions = new StreamVersions(maxBytes);
      expect(versions.bytes).toBeLessThanOrEqual(maxBytes);
      expect(versions.streams.min * STREAM_VERSION_ENTRY_BYTES).toBeLessThanOrEqual(maxBytes);
      expect(versions.streams.min * STREAM_VERSION_ENTRY_BYTES).toBeGreaterThan(maxBytes * 0.9);
    }
    // The default 16 MiB hold every stream at 1,000,000 connections.
    expect(new StreamVersions(16 * 1024 * 1024).streams.min).toBeGreaterThan(1_000_000);
  });

  it('forgets the least recently used streams first when full', () => {
    const versions = new StreamVersions(256);
    const { max } = versions.streams;
    versions.set('org_1:hot', 1);
    versions.set('org_1:cold', 2);
    for (let i = 0; i < 10 * max; i++) {
      versions.set(`org_1:${i}`, i);
      expect(versions.get('org_1:hot')).toBe(1); // used all the time: never forgotten
    }
    expect(versions.get('org_1:cold')).toBeUndefined();
    expect(versions.get('org_1:0')).toBeUndefined();
    expect(versions.get(`org_1:${10 * max - 1}`)).toBe(10 * max - 1);
  });

  it('holds at least the smallest room it is given', () => {
    const versions = new StreamVersions(16);
    expect(versions.streams.min).toBeGreaterThanOrEqual(1);
    versions.set('o:a', 1);
    expect(versions.get('o:a')).toBe(1);
  });

  it('holds at least its least number of the most recently used streams, and at most its most', () => {
    const versions = new StreamVersions(100_000);
    const { min, max } = versions.streams;
    for (let i = 0; i < 10 * max; i++) versions.set(`o:${i}`, i);
    let held = 0;
    for (let i = 0; i < 10 * max; i++) if (versions.get(`o:${i}`) !== undefined) held++;
    expect(held).toBeGreaterThanOrEqual(min);
    expect(held).toBeLessThanOrEqual(max);
    // the newest `min` are all there, with their versions
    for (let i = 10 * max - min; i < 10 * max; i++) expect(versions.get(`o:${i}`)).toBe(i);
  });

  it('keeps every stream of a working set that fits, whatever the order they come in', () => {
    const versions = new StreamVersions(1_000_000);
    const n = versions.streams.min;
    let wrong = 0;
    for (let round = 0; round < 5; round++)
      for (let i = 0; i < n; i++) {
        const key = streamKey(`org_${(i * 7919) % n}`, `conn_${i}`);
        if (round > 0 && versions.get(key) !== round - 1 + i) wrong++;
        versions.set(key, round + i);
      }
    expect(wrong).toBe(0);
  });

  it('delete and clear forget streams; a deleted slot is reused and later keys stay reachable', () => {
    const versions = new StreamVersions(10_000);
    for (let i = 0; i < 50; i++) versions.set(`o:${i}`, i + 1);
    for (let i = 0; i < 50; i += 2) versions.delete(`o:${i}`);
    for (let i = 0; i < 50; i++) expect(versions.get(`o:${i}`)).toBe(i % 2 === 0 ? undefined : i + 1);
    for (let i = 0; i < 50; i += 2) versions.set(`o:${i}`, 100 + i);
    for (let i = 0; i < 50; i++) expect(versions.get(`o:${i}`)).toBe(i % 2 === 0 ? 100 + i : i + 1);
    versions.clear();
    expect(versions.size).toBe(0);
    expect(versions.get('o:1')).toBeUndefined();
  });

  it('many deletes and sets never fill a generation with tombstones', () => {
    const versions = new StreamVersions(2_000);
    for (let i = 0; i < 20_000; i++) {
      versions.set(`o:${i % 37}`, i);
      if (i % 3 === 0) versions.delete(`o:${(i * 11) % 37}`);
    }
    expect(versions.size).toBeLessThanOrEqual(versions.streams.max);
  });

  it('shedOlder drops the less recently used half', () => {
    const versions = new StreamVersions(100_000);
    const { max } = versions.streams;
    for (let i = 0; i < max; i++) versions.set(`o:${i}`, i); // every generation full, oldest first
    expect(versions.get('o:0')).toBe(0); // (moved into the youngest)
    const dropped = versions.shedOlder();
    expect(dropped).toBeGreaterThanOrEqual(max / 2 - 1);
    expect(versions.get('o:1')).toBeUndefined();
    expect(versions.get('o:0')).toBe(0);
    expect(versions.get(`o:${max - 1}`)).toBe(max - 1);
    expect(versions.shed).toBe(1);
    // and it goes on working
    for (let i = 0; i < 3 * max; i++) versions.set(`p:${i}`, i);
    expect(versions.get(`p:${3 * max - 1}`)).toBe(3 * max - 1);
  });
});
