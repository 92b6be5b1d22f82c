export * from './data-source';
export * from './event-log';
export * from './storage.module';
export * from './append-failure';
export * from './log-partitions';
export * from './log-summaries';
export * from './log-compaction';
export * from './log-archive';
