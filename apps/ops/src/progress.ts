import { Presets, SingleBar } from 'cli-progress';

export interface ProgressOptions {
  /** what is counted, plural ('events', 'messages') */
  unit?: string;
  /** where progress goes; never stdout, which scripts read (default stderr) */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** seconds between lines when not drawing a bar (default 2) */
  lineEverySeconds?: number;
  /** nothing is shown before this many seconds, so quick runs print no progress at all (default 1) */
  showAfterSeconds?: number;
}

/**
 * Progress of a long command (cli-progress): done/total, rate, time left, on stderr. On a terminal
 * it is a bar redrawn in place; without one (a pipe, a file, or `CI` set) it prints a plain line
 * every few seconds and a last one at the end, so logs stay readable. A run shorter than a second
 * shows none.
 */
export class Progress {
  private bar: SingleBar | null = null;
  private readonly started = Date.now();
  private readonly unit: string;
  private readonly interactive: boolean;
  private readonly stream: NodeJS.WritableStream;
  private readonly lineEveryMs: number;
  private readonly showAfterMs: number;
  private total = -1;

  constructor(
    private readonly label: string,
    options: ProgressOptions = {},
  ) {
    const stream = options.stream ?? process.stderr;
    this.unit = options.unit ?? 'events';
    this.interactive = Boolean((stream as { isTTY?: boolean }).isTTY) && !process.env.CI;
    // cli-progress decides from the stream's isTTY; in CI a terminal is treated as a pipe.
    this.stream = this.interactive ? stream : ({ write: (s: string) => stream.write(s), isTTY: false } as never);
    this.lineEveryMs = (options.lineEverySeconds ?? 2) * 1000;
    this.showAfterMs = (options.showAfterSeconds ?? 1) * 1000;
  }

  update(done: number, total: number, force = false): void {
    const seconds = Math.max(0.001, (Date.now() - this.started) / 1000);
    const rate = Math.round(done / seconds);
    if (!this.bar) {
      if (Date.now() - this.started < this.showAfterMs) return;
      this.bar = new SingleBar(
        {
          stream: this.stream,
          format: this.interactive
            ? `${this.label} [{bar}] {percentage}% {value}/{total} ${this.unit}, {rate} ${this.unit}/s, {eta_formatted} left`
            : `${this.label} {percentage}% {value}/{total} ${this.unit}, {rate} ${this.unit}/s, {eta_formatted} left`,
          noTTYOutput: true,
          // Without a terminal the last render already ends its line.
          clearOnComplete: !this.interactive,
          notTTYSchedule: this.lineEveryMs,
          fps: 5,
          hideCursor: false,
          gracefulExit: false,
          etaBuffer: 50,
        },
        Presets.legacy,
      );
      this.total = total;
      this.bar.start(Math.max(total, 0), done, { rate });
      return;
    }
    if (total !== this.total) {
      this.total = total;
      this.bar.setTotal(Math.max(total, 0));
    }
    this.bar.update(done, { rate });
    if (force && this.interactive) this.bar.render();
  }

  /** Draws the last state and ends the line (call once, also after an interruption). */
  finish(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
