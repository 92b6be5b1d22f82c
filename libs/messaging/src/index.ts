export * from './kafka';
export * from './dlq';
