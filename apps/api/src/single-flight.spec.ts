import { FreshFor, SingleFlight } from './single-flight';
import { deferred } from '../../../test/support/deferred';

describe('SingleFlight', () => {
  it('runs one load for concurrent callers with the same key', async () => {
    const flight = new SingleFlight<number>();
    let loads = 0;
    const gate = deferred<number>();
    const calls = [1, 2, 3].map(() => flight.run('k', () => (loads++, gate.promise)));
    gate.resolve(7);
    expect(await Promise.all(calls)).toEqual([7, 7, 7]);
    expect(loads).toBe(1);
    await flight.run('k', async () => (loads++, 8));
    expect(loads).toBe(2);
  });
});

describe('FreshFor', () => {
  it('computes at most once per freshMs; concurrent callers share the computation', async () => {
    const clock = { now: 10_000 };
    let computations = 0;
    let gate = deferred<string>();
    const fresh = new FreshFor<string>(
      1000,
      () => (computations++, gate.promise),
      () => clock.now,
    );
    const first = Array.from({ length: 50 }, () => fresh.get());
    gate.resolve('a');
    const answers = await Promise.all(first);
    expect(computations).toBe(1);
    expect(new Set(answers.map((x) => x.value))).toEqual(new Set(['a']));
    expect(new Set(answers.map((x) => x.computedAt))).toEqual(new Set([10_000]));

    clock.now = 10_999;
    expect(await fresh.get()).toEqual({ value: 'a', computedAt: 10_000 });
    expect(computations).toBe(1);

    clock.now = 11_000;
    gate = deferred<string>();
    const next = [fresh.get(), fresh.get()];
    gate.resolve('b');
    expect((await Promise.all(next)).map((x) => x.value)).toEqual(['b', 'b']);
    expect(computations).toBe(2);
  });

  it('does not keep a failed computation', async () => {
    let computations = 0;
    const fresh = new FreshFor<number>(1000, async () => {
      computations++;
      if (computations === 1) throw new Error('down');
      return 2;
    });
    await expect(Promise.all([fresh.get(), fresh.get()])).rejects.toThrow('down');
    expect(computations).toBe(1);
    expect((await fresh.get()).value).toBe(2);
    expect(computations).toBe(2);
  });
});
