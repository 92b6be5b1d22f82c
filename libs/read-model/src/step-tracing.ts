import { Span, SpanStatusCode } from '@opentelemetry/api';
import { LoggedEvent } from '@psp/storage';
import { linksTo, MESSAGING, serviceTracer, SpanKind, traceContextText } from '@psp/observability';
import type { HealthChangedInput } from './health-changes';

/** Call events' contexts kept per outbox row (the relay's links): the latest ones of the connection. */
export const CALL_CONTEXTS_PER_CHANGE = 32;

/**
 * The span of one projection step that applied events (only made when tracing is on): a `process`
 * span of the batch (messaging conventions for batch consumers), linked to the trace context stored
 * with each event it applied (at most MAX_LINKS). The outbox rows the step writes keep its context,
 * and those of the connection's call events of the step: the relay's span is the step's child and
 * links to them.
 */
export class StepTrace {
  private readonly span: Span;
  /** The step's own context as stored text (`traceparent`). */
  readonly context: string;
  /** The call events' contexts of the connections read and not yet written, by connection (the latest ones). */
  private readonly calls = new Map<string, string[]>();

  /**
   * `first`: the step's events, or the first of them (a step of a shard that is behind reads its
   * range in chunks: `saw` is told each chunk); the span links to these. `events`: how many it applies.
   */
  constructor(startedAt: number, generation: number, shard: number, first: LoggedEvent[], events = first.length) {
    this.span = serviceTracer().startSpan('process projection step', {
      kind: SpanKind.CONSUMER,
      root: true,
      startTime: startedAt,
      links: linksTo(first.map((l) => l.traceContext)),
      attributes: {
        [MESSAGING.operationType]: 'process',
        [MESSAGING.operationName]: 'project',
        [MESSAGING.batchCount]: events,
        'psp.projection.generation': generation,
        'psp.projection.shard': shard,
      },
    });
    this.context = traceContextText(this.span.spanContext());
  }

  /** Events the step read: their call events' contexts are kept per connection until it is written. */
  saw(logged: Iterable<LoggedEvent>): void {
    for (const { event, traceContext } of logged) {
      if (event.type !== 'psp.call.completed' || !traceContext) continue;
      const k = `${event.orgId}\u0000${event.connectionId}`;
      const list = this.calls.get(k);
      if (!list) this.calls.set(k, [traceContext]);
      else {
        list.push(traceContext);
        if (list.length > 2 * CALL_CONTEXTS_PER_CHANGE) list.splice(0, list.length - CALL_CONTEXTS_PER_CHANGE);
      }
    }
  }

  /**
   * What each outbox row of `changes` keeps: the step's context, then (one a line) those of the
   * connection's call events applied by this step, the latest CALL_CONTEXTS_PER_CHANGE.
   */
  outboxContexts(changes: HealthChangedInput[]): string[] {
    return changes.map((c) => {
      const list = this.calls.get(`${c.orgId}\u0000${c.connectionId}`) ?? [];
      return [this.context, ...new Set(list.slice(-CALL_CONTEXTS_PER_CHANGE))].join('\n');
    });
  }

  /** Connections written: their contexts are not needed any more. */
  written(connections: Iterable<{ orgId: string; connectionId: string }>): void {
    for (const c of connections) this.calls.delete(`${c.orgId}\u0000${c.connectionId}`);
  }

  end(outcome: { applied: number; connectionsWritten: number; healthChanges: number } | null, error?: unknown): void {
    if (outcome)
      this.span.setAttributes({
        'psp.projection.connections_written': outcome.connectionsWritten,
        'psp.projection.health_changes': outcome.healthChanges,
      });
    if (error !== undefined) {
      this.span.recordException(error as Error);
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
    }
    this.span.end();
  }
}
