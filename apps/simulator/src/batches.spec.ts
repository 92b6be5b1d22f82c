import fc from 'fast-check';
import {
  BROKER_MESSAGE_MAX_BYTES,
  batchesByBytes,
  MAX_REQUEST_BYTES,
  RECORD_OVERHEAD_BYTES,
  recordBytes,
  SEND_RETRY,
  sendWithRetry,
} from './batches';
import { seededRandom, SimulatorOptions, TrafficGenerator } from './traffic';

const same = (n: number) => n;

describe('recordBytes', () => {
  it('counts key and value in UTF-8 bytes, plus the record overhead', () => {
    expect(RECORD_OVERHEAD_BYTES).toBe(32);
    expect(recordBytes('ab', 'héllo')).toBe(2 + 6 + 32); // é is 2 bytes
    expect(recordBytes(Buffer.from('abc'), Buffer.alloc(100))).toBe(3 + 100 + 32);
    expect(recordBytes(null, '')).toBe(32);
  });

  it('keeps a request at a quarter of the broker limit', () => {
    expect(MAX_REQUEST_BYTES * 4).toBeLessThanOrEqual(BROKER_MESSAGE_MAX_BYTES);
  });
});

describe('batchesByBytes', () => {
  it('closes a batch before the item that would pass the limit; an oversized item goes alone', () => {
    expect([...batchesByBytes([30, 30, 30, 50, 200, 10], same, 100)]).toEqual([[30, 30, 30], [50], [200], [10]]);
  });

  it('fills a batch to exactly the limit', () => {
    expect([...batchesByBytes([50, 50, 1, 99, 1], same, 100)]).toEqual([[50, 50], [1, 99], [1]]);
  });

  it('makes nothing of nothing, and refuses a limit that is not positive', () => {
    expect([...batchesByBytes([], same, 100)]).toEqual([]);
    expect(() => [...batchesByBytes([1], same, 0)]).toThrow(RangeError);
  });

  it('pulls items only as batches are taken (a million-connection fleet is never whole in memory)', () => {
    let pulled = 0;
    function* endless() {
      for (;;) {
        pulled++;
        yield 10;
      }
    }
    const it = batchesByBytes(endless(), same, 100);
    expect(it.next().value).toHaveLength(10);
    expect(it.next().value).toHaveLength(10);
    expect(pulled).toBe(21); // the 21st closed the second batch and opens the third
  });

  it('keeps every item once, in order, and every batch of two or more within the limit', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 300 })), fc.integer({ min: 1, max: 250 }), (sizes, max) => {
        const batches = [...batchesByBytes(sizes, same, max)];
        expect(batches.flat()).toEqual(sizes);
        for (const b of batches) {
          expect(b.length).toBeGreaterThan(0);
          if (b.length > 1) expect(b.reduce((s, n) => s + n, 0)).toBeLessThanOrEqual(max);
        }
        // No two neighbours could have been one batch.
        for (let i = 1; i < batches.length; i++) {
          const sum = [...batches[i - 1], batches[i][0]].reduce((s, n) => s + n, 0);
          expect(sum).toBeGreaterThan(max);
        }
      }),
    );
  });

  it("cuts the issue's fleet set-up (10,000 orgs x 10 connections) into requests under the limit", () => {
    const options: SimulatorOptions = {
      orgs: 10_000,
      connections: 10,
      rate: 20_000,
      durationS: 30,
      orgPrefix: 'org_sim',
      outages: [],
      duplicates: 0,
      bad: 0,
      seed: 7,
    };
    const g = new TrafficGenerator(options, seededRandom(7));
    const size = (e: { org_id: string; connection_id: string }) =>
      recordBytes(`${e.org_id}:${e.connection_id}`, JSON.stringify(e));
    let messages = 0;
    let bytes = 0;
    let requests = 0;
    let largest = 0;
    for (const batch of batchesByBytes(g.start(Date.UTC(2026, 11, 6)), size, MAX_REQUEST_BYTES)) {
      requests++;
      messages += batch.length;
      const b = batch.reduce((s, e) => s + size(e), 0);
      bytes += b;
      largest = Math.max(largest, b);
    }
    expect(messages).toBe(200_000);
    expect(bytes).toBeGreaterThan(BROKER_MESSAGE_MAX_BYTES * 50); // one request of it all is what the broker refused
    expect(largest).toBeLessThanOrEqual(MAX_REQUEST_BYTES);
    expect(requests).toBeGreaterThanOrEqual(Math.ceil(bytes / MAX_REQUEST_BYTES));
    expect(requests).toBeLessThan(Math.ceil(bytes / MAX_REQUEST_BYTES) * 1.05);
  });
});

describe('sendWithRetry', () => {
  const policy = { attempts: 3, backoffMs: (attempt: number) => attempt * 100 };

  function harness(failures: number) {
    const sleeps: number[] = [];
    const retried: number[] = [];
    let calls = 0;
    const send = async (batch: string[]) => {
      calls++;
      if (calls <= failures) throw new Error(`broker said no (${calls})`);
      return batch.length;
    };
    return {
      run: () =>
        sendWithRetry(
          ['a', 'b'],
          send,
          policy,
          async (ms) => void sleeps.push(ms),
          (attempt) => void retried.push(attempt),
        ),
      sleeps,
      retried,
      calls: () => calls,
    };
  }

  it('sends once when the first try succeeds', async () => {
    const h = harness(0);
    expect(await h.run()).toEqual({ ok: true, attempts: 1 });
    expect(h.sleeps).toEqual([]);
  });

  it('tries again after a failure, pausing as the policy says', async () => {
    const h = harness(2);
    expect(await h.run()).toEqual({ ok: true, attempts: 3 });
    expect(h.sleeps).toEqual([200, 300]);
    expect(h.retried).toEqual([1, 2]);
  });

  it('gives up after the last try and reports the last error, without throwing', async () => {
    const h = harness(5);
    const outcome = await h.run();
    expect(outcome).toMatchObject({ ok: false, attempts: 3 });
    expect(outcome.ok ? null : (outcome.error as Error).message).toBe('broker said no (3)');
    expect(h.calls()).toBe(3);
    expect(h.retried).toEqual([1, 2]);
  });

  it("the simulator's policy: 3 tries, 0.5 s then 1 s apart", () => {
    expect(SEND_RETRY.attempts).toBe(3);
    expect([SEND_RETRY.backoffMs(2), SEND_RETRY.backoffMs(3)]).toEqual([500, 1000]);
  });
});
