export * from './kafka';
export * from './dlq';
export * from './kafka-provider';
