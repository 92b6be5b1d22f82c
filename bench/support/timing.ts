/** Reads and prints what bench/support/timing-hook recorded in a child process. */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { BenchChild, fmt, fmtInt, fmtMb, sleep } from './harness';
import type { TimingSnapshot } from './timing-hook';

export type Timing = TimingSnapshot;

export async function collectTiming(child: BenchChild, file: string, timeoutMs = 30000): Promise<Timing> {
  rmSync(file, { force: true });
  child.send({ bench: 'dump' });
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`no timing file at ${file} after ${timeoutMs} ms`);
    await sleep(50);
  }
  return JSON.parse(readFileSync(file, 'utf8')) as Timing;
}

/** Rows: what, calls, total s, share of the wall time, avg ms, max ms, avg items per call. */
export function timingRows(timing: Timing): string[][] {
  const rows = Object.entries(timing.stats).sort((a, b) => b[1].totalMs - a[1].totalMs);
  return [
    ['operation (wall time, call → completion)', 'calls', 'total s', 'share of wall', 'avg ms', 'max ms', 'avg items'],
    ...rows.map(([k, s]) => [
      k,
      fmtInt(s.count),
      fmt(s.totalMs / 1000, 1),
      `${fmt((100 * s.totalMs) / 1000 / timing.seconds, 1)}%`,
      fmt(s.totalMs / s.count, 1),
      fmt(s.maxMs, 0),
      s.items > 0 ? fmtInt(s.items / s.count) : '',
    ]),
  ];
}

/** One line: the peaks of rss / heapTotal / heapUsed / external / arrayBuffers. */
export function memoryLine(timing: Timing): string {
  const m = timing.memory ?? {};
  return ['rss', 'heapTotal', 'heapUsed', 'external', 'arrayBuffers'].map((k) => `${k} ${fmtMb(m[k] ?? 0)}`).join(', ');
}
