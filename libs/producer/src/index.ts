/**
 * The producers' kit: typed builders of the contract's Kafka messages, the recommended key, the
 * topic of each type, and a producer that refuses what the service would put in its DLQ. For
 * routers: the health changes the service produces (onHealthChange) and the types of the stats
 * route's answer. The wire format itself is documented in docs/asyncapi.yaml.
 */
export * from './envelope';
export * from './topics';
export * from './producer';
export * from './health-changes';
export * from './stats';
