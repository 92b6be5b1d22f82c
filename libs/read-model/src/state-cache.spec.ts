import { applyEvent, initialConnectionState, stateToJson } from '@psp/domain';
import { callEvent, configuredEvent, T0 } from '@psp/domain/testing/events';
import { deflateRawSync } from 'node:zlib';
import { CACHED_STATE_OVERHEAD_BYTES, StateCache } from './projection';
import { packState, unpackState, unpackStateJson } from './state-packing';

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

describe('packState / unpackState', () => {
  const where = { orgId: 'org_1', connectionId: 'conn_1' };
  const state = initialConnectionState(where.orgId, where.connectionId);
  applyEvent(state, configuredEvent('cfg', T0, { labels: ['ghana', 'primary'] }, where));
  for (let m = 0; m < 30; m++) applyEvent(state, callEvent(`c-${m}`, T0 + m * 60000, { latency_ms: 100 + m }, where));
  const json = stateToJson(state);

  it('gives back the very state (its stored JSON unchanged)', () => {
    expect(stateToJson(unpackState(packState(json)))).toBe(json);
    expect(unpackState(packState(json))).toEqual(state);
  });

  it('holds fewer bytes than the JSON, in a backing store of its own exact size', () => {
    const packed = packState(json);
    expect(packed.length).toBeLessThan(Buffer.byteLength(json) / 2);
    expect(packed.buffer.byteLength).toBe(packed.length);
  });

  it('reads states packed before (raw deflate, as rows and caches of earlier releases hold them)', () => {
    for (const level of [1, 6, 9]) {
      const deflated = deflateRawSync(json, { level });
      // Its first byte can never be the Snappy marker (a deflate block of the reserved type 3).
      expect((deflated[0] >> 1) & 3).not.toBe(3);
      expect(unpackStateJson(deflated)).toBe(json);
      expect(unpackState(deflated)).toEqual(state);
    }
    // And a tiny state, whose deflate stream may be a stored block.
    const small = stateToJson(initialConnectionState('o', 'c'));
    expect(unpackStateJson(deflateRawSync(small, { level: 0 }))).toBe(small);
    expect(unpackStateJson(packState(small))).toBe(small);
  });
});

describe('StateCache.keep / take', () => {
  const packed = (id: string) => packState(stateToJson(initialConnectionState('org', id)));
  const chain = (sequence: number) => ({ reported: 'healthy', sequence });
  const entryBytes = (id: string) => packed(id).length + CACHED_STATE_OVERHEAD_BYTES + 2 * `org:${id}`.length;

  it('holds a state with its chain, and lets both go together', () => {
    const cache = new StateCache(2 * entryBytes('c0') + 10); // room for two
    cache.keep('org:c0', packed('c0'), chain(1));
    cache.keep('org:c1', packed('c1'), chain(2));
    expect(cache.take('org:c0')?.chain).toEqual(chain(1));
    cache.keep('org:c2', packed('c2'), chain(3)); // c1 is the least recently used now
    expect(cache.take('org:c1')).toBeUndefined();
    expect(cache.chains.has('org:c1')).toBe(false);
    expect(unpackState(cache.take('org:c0')!.packed)).toEqual(initialConnectionState('org', 'c0'));
  });

  it('gives a state let go while a step ran its chain back when the step keeps it again', () => {
    // The step read c0 from the cache; writing c1 and c2 let c0 go (and its chain); then it keeps c0.
    const cache = new StateCache(2 * entryBytes('c0') + 10);
    cache.keep('org:c0', packed('c0'), chain(1));
    cache.keep('org:c1', packed('c1'), chain(2));
    cache.keep('org:c2', packed('c2'), chain(3));
    expect(cache.chains.has('org:c0')).toBe(false);
    cache.keep('org:c0', packed('c0'), chain(4));
    expect(cache.take('org:c0')?.chain).toEqual(chain(4));
  });
});
