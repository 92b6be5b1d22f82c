import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { SETTINGS, Settings } from '@psp/config';
import { ensureLogPartitions, PartitionLayout } from '@psp/storage';

/**
 * The writer keeps the event log's partitions ahead of time (docs/event-log.md, "Partitions, roll-ups
 * and archives"): at start, before it consumes anything, and every LOG_MAINTENANCE_MS, it creates the
 * partitions up to LOG_PARTITIONS_AHEAD_DAYS ahead. Several writers may do it at once: one creates,
 * the others find the partitions there.
 */
@Injectable()
export class LogMaintenance implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('LogMaintenance');
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    @Inject(DataSource) private readonly db: DataSource,
    @Inject(SETTINGS) private readonly settings: Settings,
  ) {}

  get layout(): PartitionLayout {
    return { widthDays: this.settings.logPartitionDays, aheadDays: this.settings.logPartitionsAheadDays };
  }

  async onModuleInit(): Promise<void> {
    await this.ensurePartitions();
    this.timer = setInterval(() => {
      this.running = this.running.then(() => this.tick());
    }, this.settings.logMaintenanceMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** One round of maintenance; failures are logged and tried again at the next round. */
  async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.ensurePartitions();
    } catch (error) {
      this.logger.warn(
        `creating event-log partitions ahead failed (tried again in ${this.settings.logMaintenanceMs} ms): ${String(error)}`,
      );
    }
  }

  private async ensurePartitions(): Promise<void> {
    const created = await ensureLogPartitions(this.db, this.layout);
    if (created > 0) this.logger.log(`created ${created} event-log partition(s) ahead`);
  }
}
