import { applyEvent, ConnectionEvent, ConnectionState, initialConnectionState } from '@psp/domain';

/**
 * The write side's view of one connection's stream: its version (number of events in the log for
 * it) and its state, evolved by the same domain function the projector uses.
 */
export class ConnectionAggregate {
  private constructor(
    readonly orgId: string,
    readonly connectionId: string,
    public version: number,
    public state: ConnectionState,
    /** Version of the newest snapshot stored for this stream. */
    public snapshotVersion: number,
  ) {}

  static empty(orgId: string, connectionId: string): ConnectionAggregate {
    return new ConnectionAggregate(orgId, connectionId, 0, initialConnectionState(orgId, connectionId), 0);
  }

  static fromSnapshot(
    orgId: string,
    connectionId: string,
    version: number,
    state: ConnectionState,
  ): ConnectionAggregate {
    return new ConnectionAggregate(orgId, connectionId, version, state, version);
  }

  /** Applies an event that is (or is about to be) in the log at version + 1. */
  record(event: ConnectionEvent): number {
    applyEvent(this.state, event);
    this.version += 1;
    return this.version;
  }
}

export function streamKey(orgId: string, connectionId: string): string {
  // org ids never contain ':' (CONTRACT 2.2), so this key is unambiguous.
  return `${orgId}:${connectionId}`;
}
