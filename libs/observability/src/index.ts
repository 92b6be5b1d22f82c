export * from './registry';
export * from './metrics-server';
export * from './logging';
export * from './tracing';
