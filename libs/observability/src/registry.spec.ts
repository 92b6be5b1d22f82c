import { metricsRegistry, oncePerProcess, ScrapeTimeReading } from './registry';

describe('the metrics registry', () => {
  it('is one per process, with the default process metrics', async () => {
    expect(metricsRegistry()).toBe(metricsRegistry());
    const text = await metricsRegistry().metrics();
    expect(text).toContain('# TYPE process_cpu_seconds_total counter');
    expect(text).toContain('# TYPE nodejs_heap_size_used_bytes gauge');
  });

  it('creates a metric set once, however often it is asked for', () => {
    let created = 0;
    const get = oncePerProcess(() => ({ n: ++created }));
    expect(get()).toBe(get());
    expect(created).toBe(1);
  });
});

describe('ScrapeTimeReading', () => {
  it('reads at most once per freshness period and shares a read in flight', async () => {
    let reads = 0;
    let release: (v: number) => void = () => undefined;
    const reading = new ScrapeTimeReading(() => new Promise<number>((r) => ((reads += 1), (release = r))), 60000, 1000);
    const a = reading.get();
    const b = reading.get();
    release(7);
    expect(await a).toBe(7);
    expect(await b).toBe(7);
    expect(await reading.get()).toBe(7);
    expect(reads).toBe(1);
  });

  it('gives null for a failed or late read, without starting a second one while it runs', async () => {
    let reads = 0;
    const failing = new ScrapeTimeReading(async () => {
      reads += 1;
      throw new Error('down');
    }, 0);
    expect(await failing.get()).toBeNull();
    const slow = new ScrapeTimeReading(
      () => new Promise<number>((r) => ((reads += 1), setTimeout(() => r(1), 200))),
      60000,
      20,
    );
    expect(await slow.get()).toBeNull();
    expect(await slow.get()).toBeNull(); // the first read is still running: not doubled
    expect(reads).toBe(2);
    await new Promise((r) => setTimeout(r, 250));
    expect(await slow.get()).toBe(1);
  });
});
