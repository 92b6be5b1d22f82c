/** A progress line for long commands: done/total, rate, time left. Redraws on a TTY, else prints every few seconds. */
export class Progress {
  private readonly started = Date.now();
  private lastPrint = 0;

  constructor(
    private readonly label: string,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}

  update(done: number, total: number, force = false): void {
    const now = Date.now();
    const interval = this.out.isTTY ? 200 : 2000;
    if (!force && now - this.lastPrint < interval) return;
    this.lastPrint = now;
    const seconds = Math.max(0.001, (now - this.started) / 1000);
    const rate = done / seconds;
    const left = total > done && rate > 0 ? (total - done) / rate : 0;
    const pct = total > 0 ? Math.min(100, (100 * done) / total) : 100;
    const width = 24;
    const filled = Math.round((pct / 100) * width);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    const line = `${this.label} ${bar} ${pct.toFixed(1)}% ${done}/${total} events, ${Math.round(rate)} events/s, ${left.toFixed(0)} s left`;
    if (this.out.isTTY) this.out.write(`\r${line}\u001b[K`);
    else this.out.write(`${line}\n`);
  }

  finish(): void {
    if (this.out.isTTY) this.out.write('\n');
  }
}
