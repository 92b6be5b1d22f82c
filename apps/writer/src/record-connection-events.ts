import { Command, CommandHandler, ICommandHandler } from '@nestjs/cqrs';
import { toDlqMessage } from '@psp/messaging';
import { ConnectionStreams, RecordOutcome, SourcedEvent } from './connection-streams';
import { DeadLetters } from './dead-letters';

/** Record a batch of accepted events in their connections' streams. */
export class RecordConnectionEvents extends Command<RecordOutcome> {
  constructor(readonly events: SourcedEvent[]) {
    super();
  }
}

/**
 * Appends the events to the log; the ones the log refuses because of what they hold go to the DLQ
 * as `unstorable` before the command completes, so the caller may commit the batch's offsets: every
 * message is then either in the log or in the DLQ (CONTRACT 2.4).
 */
@CommandHandler(RecordConnectionEvents)
export class RecordConnectionEventsHandler implements ICommandHandler<RecordConnectionEvents, RecordOutcome> {
  constructor(
    private readonly streams: ConnectionStreams,
    private readonly deadLetters: DeadLetters,
  ) {}

  async execute(command: RecordConnectionEvents): Promise<RecordOutcome> {
    const outcome = await this.streams.record(command.events);
    if (outcome.unstorable.length > 0) {
      await this.deadLetters.send(
        outcome.unstorable.map(({ source, message, detail }) => {
          if (!message) throw new Error(`event at ${source.topic}/${source.partition}@${source.offset} has no message`);
          return toDlqMessage({ ...source, ...message }, { reason: 'unstorable', detail });
        }),
      );
    }
    return outcome;
  }
}
