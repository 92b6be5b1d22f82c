import { Logger, Provider } from '@nestjs/common';
import { Kafka } from 'kafkajs';
import { SETTINGS, Settings } from '@psp/config';
import { createKafka } from './kafka';

/**
 * A process's Kafka client as a Nest provider (token: the kafkajs `Kafka` class), named `clientId`
 * in the brokers' logs. Its log lines go to Nest's logger and never carry message values; `quiet`
 * drops them (a readiness probe reports Kafka's state itself).
 */
export function kafkaProvider(clientId: string, options: { quiet?: boolean } = {}): Provider {
  return {
    provide: Kafka,
    inject: [SETTINGS],
    useFactory: (settings: Settings): Kafka => {
      if (options.quiet) return createKafka(settings, clientId, () => undefined);
      const logger = new Logger('Kafka');
      return createKafka(settings, clientId, (level, message) =>
        level === 'error' ? logger.error(message) : logger.warn(message),
      );
    },
  };
}
