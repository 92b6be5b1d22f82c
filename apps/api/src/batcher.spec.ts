import { Batcher } from './batcher';
import { deferred } from '../../../test/support/deferred';

describe('Batcher', () => {
  it('answers the keys asked for in one turn of the event loop with one batch, each key its own value', async () => {
    const batches: string[][] = [];
    const batcher = new Batcher<string, string>(async (keys) => (batches.push(keys), keys.map((k) => `v-${k}`)));
    const answers = await Promise.all(['a', 'b', 'c', 'b'].map((k) => batcher.load(k)));
    expect(answers).toEqual(['v-a', 'v-b', 'v-c', 'v-b']);
    expect(batches).toEqual([['a', 'b', 'c']]); // b once
    expect(await batcher.load('a')).toBe('v-a'); // nothing cached: a new batch
    expect(batches).toHaveLength(2);
    expect(batcher.pending).toBe(0);
  });

  it('does not ask again for a key whose batch is in flight; a later key goes in the next batch', async () => {
    const gate = deferred<number[]>();
    const batches: string[][] = [];
    const batcher = new Batcher<string, number>(
      (keys) => (batches.push(keys), batches.length === 1 ? gate.promise : Promise.resolve(keys.map(() => 2))),
    );
    const first = batcher.load('a');
    await new Promise((r) => setImmediate(r)); // the first batch is out
    const again = batcher.load('a');
    const other = batcher.load('b');
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([['a'], ['b']]);
    gate.resolve([1]);
    expect(await Promise.all([first, again, other])).toEqual([1, 1, 2]);
  });

  it('cuts batches at maxBatch keys', async () => {
    const sizes: number[] = [];
    const batcher = new Batcher<number, number>(async (keys) => (sizes.push(keys.length), keys), 3);
    expect(await Promise.all([1, 2, 3, 4, 5, 6, 7].map((k) => batcher.load(k)))).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(sizes).toEqual([3, 3, 1]);
  });

  it('rejects every caller of a failed batch, and the next batch asks again', async () => {
    let fail = true;
    const batcher = new Batcher<string, string>(async (keys) => {
      if (fail) throw new Error('down');
      return keys;
    });
    await expect(Promise.all([batcher.load('a'), batcher.load('b')])).rejects.toThrow('down');
    fail = false;
    expect(await batcher.load('a')).toBe('a');
  });

  it('rejects when a batch answers a different number of values', async () => {
    const batcher = new Batcher<string, string>(async () => []);
    await expect(batcher.load('a')).rejects.toThrow('answered 0 values');
  });
});
