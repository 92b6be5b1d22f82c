export * from './event';
export * from './time';
export * from './message-validation';
export * from './connection-state';
export * from './health';
export * from './connection-view';
export * from './connection-list';
export * from './health-window';
