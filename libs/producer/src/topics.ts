import { EventType } from '@psp/domain';

/** The three topics producers write to (CONTRACT 2.1). Names are configurable; these are the defaults. */
export interface ProducerTopics {
  calls: string;
  validations: string;
  connections: string;
}

export const DEFAULT_TOPICS: Readonly<ProducerTopics> = Object.freeze({
  calls: 'psp.calls',
  validations: 'psp.validations',
  connections: 'psp.connections',
});

/** Which of the three topics carries each type. */
export const TOPIC_OF_TYPE: Readonly<Record<EventType, keyof ProducerTopics>> = Object.freeze({
  'psp.call.completed': 'calls',
  'connection.validation.completed': 'validations',
  'connection.configured': 'connections',
  'connection.status_changed': 'connections',
  'connection.labels_changed': 'connections',
  'connection.deleted': 'connections',
});

/**
 * The topic a message of `type` goes to; `topics` overrides the default names (the service's
 * `Settings['topics']` fits as is). Throws a TypeError for a type the contract does not know.
 */
export function topicFor(type: EventType, topics: Partial<ProducerTopics> = {}): string {
  if (!Object.hasOwn(TOPIC_OF_TYPE, type)) throw new TypeError(`unknown event type: ${String(type)}`);
  const which = TOPIC_OF_TYPE[type];
  return topics[which] ?? DEFAULT_TOPICS[which];
}
