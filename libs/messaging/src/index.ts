export * from './kafka';
export * from './dlq';
export * from './kafka-provider';
export * from './consumer-crash';
