import { KeyLookupCache, missBytes } from './key-lookup-cache';

interface Rec {
  id: string;
}

function cache(limits: Partial<ConstructorParameters<typeof KeyLookupCache>[0]> = {}, clock = { now: 0 }) {
  return new KeyLookupCache<Rec>(
    { ttlMs: 2000, foundBytes: 10_000, missEntries: 100, missBytes: 100_000, ...limits },
    (record, key) => 100 + record.id.length + key.length,
    () => clock.now,
  );
}

const key = (i: number) => `hash-${String(i).padStart(6, '0')}`;

describe('KeyLookupCache', () => {
  it('answers a cached lookup (found or not) until ttlMs has passed, then asks again', () => {
    const clock = { now: 1000 };
    const c = cache({ ttlMs: 2000 }, clock);
    c.set('found', { id: 'key_1' });
    c.set('missing', null);
    expect(c.get('found')).toEqual({ record: { id: 'key_1' } });
    expect(c.get('missing')).toEqual({ record: null });
    expect(c.get('other')).toBeUndefined();
    clock.now = 2999;
    expect(c.get('found')).toEqual({ record: { id: 'key_1' } });
    expect(c.get('missing')).toEqual({ record: null });
    clock.now = 3000; // a revocation is seen within ttlMs
    expect(c.get('found')).toBeUndefined();
    expect(c.get('missing')).toBeUndefined();
    expect(c.stats()).toMatchObject({ found: 0, missing: 0 });
  });

  it('caches nothing with ttlMs 0', () => {
    const c = cache({ ttlMs: 0 });
    c.set('found', { id: 'key_1' });
    c.set('missing', null);
    expect(c.get('found')).toBeUndefined();
    expect(c.get('missing')).toBeUndefined();
  });

  it('a flood of unknown keys never evicts a valid key', () => {
    const c = cache({ missEntries: 50 });
    for (let i = 0; i < 20; i++) c.set(`valid-${i}`, { id: `key_${i}` });
    for (let i = 0; i < 100_000; i++) c.set(key(i), null);
    for (let i = 0; i < 20; i++) expect(c.get(`valid-${i}`)).toEqual({ record: { id: `key_${i}` } });
    const stats = c.stats();
    expect(stats.found).toBe(20);
    expect(stats.missing).toBe(50);
    // The most recent misses are the ones kept.
    expect(c.get(key(99_999))).toEqual({ record: null });
    expect(c.get(key(0))).toBeUndefined();
  });

  it('bounds the misses by bytes as well as by count', () => {
    const c = cache({ missEntries: 10_000, missBytes: 10 * missBytes(key(0)) });
    for (let i = 0; i < 1000; i++) c.set(key(i), null);
    expect(c.stats().missing).toBe(10);
    expect(c.stats().missingBytes).toBeLessThanOrEqual(10 * missBytes(key(0)));
  });

  it('keeps no misses with missEntries 0', () => {
    const c = cache({ missEntries: 0 });
    c.set('missing', null);
    expect(c.get('missing')).toBeUndefined();
    expect(c.stats().missing).toBe(0);
  });

  it('bounds valid keys by bytes, evicting the least recently used one, never clearing them all', () => {
    // Each entry is 100 + 6 + 7 = 113 bytes: 10 fit in 1,130.
    const c = cache({ foundBytes: 1130 });
    for (let i = 0; i < 10; i++) c.set(`valid-${i}`, { id: `key_0${i}` });
    expect(c.get('valid-0')).toBeDefined(); // valid-0 is now more recently used than valid-1
    c.set('valid-X', { id: 'key_0X' });
    expect(c.get('valid-1')).toBeUndefined();
    expect(c.get('valid-0')).toBeDefined();
    expect(c.get('valid-X')).toBeDefined();
    expect(c.stats()).toEqual(expect.objectContaining({ found: 10, foundBytes: 1130 }));
    for (let i = 0; i < 1000; i++) c.set(`more-${i}`, { id: `key_${i}` });
    expect(c.stats().found).toBeGreaterThan(5);
    expect(c.stats().foundBytes).toBeLessThanOrEqual(1130);
  });

  it('a key that turns out to exist leaves the miss cache, and the other way round', () => {
    const c = cache();
    c.set('k', null);
    c.set('k', { id: 'key_1' });
    expect(c.get('k')).toEqual({ record: { id: 'key_1' } });
    expect(c.stats().missing).toBe(0);
    c.set('k', null);
    expect(c.get('k')).toEqual({ record: null });
    expect(c.stats().found).toBe(0);
  });
});
