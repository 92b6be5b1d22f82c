import { CACHED_STATE_OVERHEAD_BYTES, StateCache } from './projection';

/** The projector's state cache under memory pressure (the process sheds it when its RSS passes a budget). */
describe('StateCache.shed', () => {
  const entry = (n: number) => Buffer.from('x'.repeat(n));

  it('lets the least recently used half go, with their health-change chains', () => {
    const cache = new StateCache(1024 * 1024);
    for (let i = 0; i < 10; i++) {
      cache.states.set(`org:c${i}`, entry(1000));
      cache.chains.set(`org:c${i}`, { reported: 'healthy', sequence: i });
    }
    cache.states.get('org:c0'); // used last: kept
    const each = 1000 + CACHED_STATE_OVERHEAD_BYTES + 2 * 'org:c0'.length;
    expect(cache.states.calculatedSize).toBe(10 * each);

    expect(cache.shed(0.5)).toBe(5 * each);
    expect(cache.states.calculatedSize).toBe(5 * each);
    // c1 … c5 were the least recently used (c0 was read after the others were written).
    expect([...cache.states.keys()].sort()).toEqual(['org:c0', 'org:c6', 'org:c7', 'org:c8', 'org:c9']);
    expect([...cache.chains.keys()].sort()).toEqual(['org:c0', 'org:c6', 'org:c7', 'org:c8', 'org:c9']);
  });

  it('sheds nothing from an empty cache', () => {
    expect(new StateCache(4096).shed(0.5)).toBe(0);
  });
});
