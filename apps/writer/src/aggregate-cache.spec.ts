import { AggregateCache } from './aggregate-cache';
import { ConnectionAggregate } from './connection-aggregate';

const aggregate = (id: string) => ConnectionAggregate.empty('org_1', id);

describe('AggregateCache (the writer aggregates in memory)', () => {
  it('keeps at most its limit, evicting the least recently put, and says which it evicted', () => {
    const cache = new AggregateCache(2);
    const a = aggregate('a');
    expect(cache.set('a', a)).toEqual([]);
    expect(cache.set('b', aggregate('b'))).toEqual([]);
    const evicted = cache.set('c', aggregate('c'));
    expect(evicted).toHaveLength(1);
    expect(evicted[0]).toBe(a);
    expect(cache.size).toBe(2);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('b')?.connectionId).toBe('b');
    expect(cache.get('c')?.connectionId).toBe('c');
  });

  it('counts a get as a use: the stream just read stays, the one unused longest goes', () => {
    const cache = new AggregateCache(2);
    cache.set('a', aggregate('a'));
    cache.set('b', aggregate('b'));
    expect(cache.get('a')?.connectionId).toBe('a');
    cache.set('c', aggregate('c'));
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')?.connectionId).toBe('a');
    expect(cache.get('c')?.connectionId).toBe('c');
  });

  it('replaces an aggregate put again under the same key without evicting another', () => {
    const cache = new AggregateCache(2);
    const first = aggregate('a');
    const second = aggregate('a');
    cache.set('a', first);
    cache.set('b', aggregate('b'));
    cache.set('a', second);
    expect(cache.size).toBe(2);
    expect(cache.get('a')).toBe(second);
    expect(cache.get('b')?.connectionId).toBe('b');
  });

  it('forgets one stream or all of them', () => {
    const cache = new AggregateCache(3);
    for (const k of ['a', 'b', 'c']) cache.set(k, aggregate(k));
    cache.delete('b');
    expect(cache.get('b')).toBeUndefined();
    expect(cache.size).toBe(2);
    cache.clear();
    expect(cache.size).toBe(0);
  });
});
