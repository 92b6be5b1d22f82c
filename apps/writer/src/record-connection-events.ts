import { Command, CommandHandler, ICommandHandler } from '@nestjs/cqrs';
import { ConnectionStreams, RecordOutcome, SourcedEvent } from './connection-streams';

/** Record a batch of accepted events in their connections' streams. */
export class RecordConnectionEvents extends Command<RecordOutcome> {
  constructor(readonly events: SourcedEvent[]) {
    super();
  }
}

@CommandHandler(RecordConnectionEvents)
export class RecordConnectionEventsHandler implements ICommandHandler<RecordConnectionEvents, RecordOutcome> {
  constructor(private readonly streams: ConnectionStreams) {}

  execute(command: RecordConnectionEvents): Promise<RecordOutcome> {
    return this.streams.record(command.events);
  }
}
