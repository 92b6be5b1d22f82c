export * from './redis-read-model';
export * from './postgres-read-model';
export * from './projection';
export * from './redis-client';
export * from './projection-stall';
export * from './stored-document';
export * from './generations';
export * from './replay';
