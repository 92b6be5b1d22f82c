import { fairShare, leaseStillHeld, planShards } from './shard-assignment';

describe('fairShare', () => {
  it.each([
    [16, 1, 16],
    [16, 2, 8],
    [16, 3, 6],
    [16, 5, 4],
    [16, 16, 1],
    [16, 17, 1],
    [16, 0, 16],
  ])('%i shards over %i members: %i each', (shards, members, share) => {
    expect(fairShare(shards, members)).toBe(share);
  });
});

describe('planShards', () => {
  it('a lone process wants every shard, starting at its slot', () => {
    expect(planShards(16, 1, [], 0)).toEqual({
      release: [],
      candidates: Array.from({ length: 16 }, (_, i) => i),
      want: 16,
    });
  });

  it('a second member makes the first release its highest shards, down to the fair share', () => {
    const all = Array.from({ length: 16 }, (_, i) => i);
    expect(planShards(16, 2, all, 0)).toEqual({ release: [8, 9, 10, 11, 12, 13, 14, 15], candidates: [], want: 0 });
  });

  it('the second member tries the shards the first released first (its slot offsets the start)', () => {
    const plan = planShards(16, 2, [], 1);
    expect(plan.want).toBe(8);
    expect(plan.candidates.slice(0, 8)).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
    expect(plan.candidates).toHaveLength(16);
  });

  it('a process that lost a member takes the orphaned shards (not those it holds)', () => {
    const plan = planShards(16, 1, [0, 1, 2, 3, 4, 5, 6, 7], 0);
    expect(plan).toEqual({ release: [], candidates: [8, 9, 10, 11, 12, 13, 14, 15], want: 8 });
  });

  it('three members: shares of 6 add up to at least 16, so no shard is left without a holder', () => {
    // Simulated: each member in turn takes what is free up to its share.
    const holder = new Map<number, number>();
    const held = (m: number) => [...holder].filter(([, h]) => h === m).map(([s]) => s);
    for (let round = 0; round < 3; round++)
      for (const m of [0, 1, 2]) {
        const plan = planShards(16, 3, held(m), m);
        for (const s of plan.release) holder.delete(s);
        let want = plan.want;
        for (const s of plan.candidates) {
          if (want === 0) break;
          if (!holder.has(s)) {
            holder.set(s, m);
            want -= 1;
          }
        }
      }
    expect(holder.size).toBe(16);
    expect([0, 1, 2].map((m) => held(m).length).sort()).toEqual([4, 6, 6]);
  });

  it('a process at its share does nothing', () => {
    expect(planShards(16, 2, [3, 4, 5, 6, 7, 8, 9, 10], 0)).toMatchObject({ release: [], want: 0 });
  });
});

describe('leaseStillHeld (fencing)', () => {
  it('commits only under the lease taken', () => {
    expect(leaseStillHeld('7', '7')).toBe(true);
    expect(leaseStillHeld('7', '8')).toBe(false);
    expect(leaseStillHeld(null, '7')).toBe(false);
  });
});
