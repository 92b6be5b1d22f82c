import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { SETTINGS, Settings } from '@psp/config';
import { generationsBehindLogTable } from '@psp/read-model';
import {
  archivePartition,
  compactLog,
  ensureLogPartitions,
  LogMaintenanceBusy,
  PartitionLayout,
  readManifest,
} from '@psp/storage';

const DAY_MS = 86_400_000;

/**
 * The writer keeps the event log's partitions ahead of time (docs/event-log.md, "Partitions, roll-ups
 * and archives"): at start, before it consumes anything, and every LOG_MAINTENANCE_MS, it creates the
 * partitions up to LOG_PARTITIONS_AHEAD_DAYS ahead. Several writers may do it at once: one creates,
 * the others find the partitions there.
 *
 * With LOG_RETAIN_DAYS set, each round also compacts the closed partitions whose range ended more
 * than that many days ago and drops them (archived to LOG_ARCHIVE_DIR first when it is set): one
 * process at a time across every instance (an advisory lock; a writer that finds it taken skips the
 * round).
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
    if (this.settings.logRetainDays > 0) await this.applyRetention();
  }

  /** Compacts and drops the partitions older than LOG_RETAIN_DAYS (one process at a time). */
  async applyRetention(): Promise<void> {
    try {
      const outcome = await compactLog(this.db, {
        generationsBehind: generationsBehindLogTable,
        before: Date.now() - this.settings.logRetainDays * DAY_MS,
        drop: true,
        log: (line) => this.logger.log(`retention: ${line}`),
        shouldStop: () => this.stopped,
        beforeDrop: this.archiveBeforeDrop(),
      });
      for (const s of outcome.skipped) this.logger.warn(`retention: ${s.name} not compacted: ${s.reason}`);
    } catch (error) {
      if (error instanceof LogMaintenanceBusy) return; // another instance is at it
      this.logger.warn(
        `retention of the event log failed (tried again in ${this.settings.logMaintenanceMs} ms): ${String(error)}`,
      );
    }
  }

  /** With LOG_ARCHIVE_DIR: each partition is archived there (unless it already is) before it is dropped. */
  private archiveBeforeDrop(): Parameters<typeof compactLog>[1]['beforeDrop'] {
    const dir = this.settings.logArchiveDir;
    if (dir === null) return undefined;
    return async (partition) => {
      if ((await readManifest(dir)).files.some((f) => f.partition === partition.name)) return;
      const entry = await archivePartition(this.db, partition, dir);
      this.logger.log(`retention: ${partition.name} archived to ${dir} (${entry.rows} rows) before it is dropped`);
    };
  }

  private async ensurePartitions(): Promise<void> {
    const created = await ensureLogPartitions(this.db, this.layout);
    if (created > 0) this.logger.log(`created ${created} event-log partition(s) ahead`);
  }
}
