import { Consumer } from 'kafkajs';

/**
 * What to do when a kafkajs consumer crashes. kafkajs restarts it by itself only when the error is
 * retriable; a non-retriable one (a broker that answers UNKNOWN_SERVER_ERROR while it restarts, a
 * coordinator error it does not classify) leaves the consumer disconnected for good, with nothing
 * thrown to the caller: the process stays up and consumes nothing (seen once in five runs of the
 * chaos scenario "Kafka broker restart": the writer's member timed out and never rejoined). So every
 * crash is reported, and one kafkajs will not restart is handed to `restart`, which runs the consumer
 * again (with the caller's own backoff), unless the process is closing.
 */
export function restartWhenCrashed(
  consumer: Consumer,
  handlers: {
    closing: () => boolean;
    report: (message: string) => void;
    restart: (error: Error) => void;
  },
): void {
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    const error = payload.error;
    handlers.report(
      `Kafka consumer of group ${payload.groupId} crashed (${error.name}: ${error.message}); ` +
        (payload.restart ? 'kafkajs restarts it' : 'kafkajs will not restart it: restarting it here'),
    );
    if (!payload.restart && !handlers.closing()) handlers.restart(error);
  });
}
