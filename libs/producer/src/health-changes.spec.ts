import { HealthChangeSequencer, parseHealthChange } from './health-changes';

const message = (connection: string, sequence: number, from: string | null, to: string, org = 'org_1') =>
  JSON.stringify({
    event_id: `${org}:${connection}:${sequence}`,
    type: 'connection.health_changed',
    schema_version: 1,
    org_id: org,
    connection_id: connection,
    occurred_at: '2026-11-24T10:15:00.250Z',
    data: { sequence, from, to, health_score: 76.92 },
  });

describe('parseHealthChange', () => {
  it('reads the contract message', () => {
    expect(parseHealthChange(Buffer.from(message('c1', 7, 'healthy', 'degraded')))).toEqual({
      eventId: 'org_1:c1:7',
      orgId: 'org_1',
      connectionId: 'c1',
      occurredAt: '2026-11-24T10:15:00.250Z',
      sequence: 7,
      from: 'healthy',
      to: 'degraded',
      healthScore: 76.92,
    });
    expect(parseHealthChange(message('c1', 1, null, 'unknown'))?.from).toBeNull();
  });

  it.each([
    ['not JSON', '{'],
    ['a tombstone', null],
    ['another type', message('c1', 1, null, 'unknown').replace('connection.health_changed', 'x')],
    ['an unknown status', message('c1', 1, null, 'sick')],
    ['a sequence that is not an integer', message('c1', 1, null, 'unknown').replace('"sequence":1', '"sequence":1.5')],
  ])('returns null for %s', (_name, value) => {
    expect(parseHealthChange(value)).toBeNull();
  });
});

describe('HealthChangeSequencer', () => {
  it('hands over each change once, in sequence, per connection', () => {
    const s = new HealthChangeSequencer();
    const seen = [
      message('c1', 1, null, 'unknown'),
      message('c2', 1, null, 'healthy'),
      message('c1', 2, 'unknown', 'healthy'),
      // the relay crashed after Kafka acknowledged 1-2 and produced them again, then 3
      message('c1', 1, null, 'unknown'),
      message('c1', 2, 'unknown', 'healthy'),
      message('c1', 3, 'healthy', 'degraded'),
    ]
      .map((v) => s.accept(v))
      .filter((a) => a !== null)
      .map((a) => `${a!.change.connectionId}#${a!.change.sequence}${a!.gap ? ' gap' : ''}`);
    expect(seen).toEqual(['c1#1', 'c2#1', 'c1#2', 'c1#3']);
  });

  it('says when it starts mid-stream or skips a sequence', () => {
    const s = new HealthChangeSequencer();
    expect(s.accept(message('c1', 5, 'healthy', 'degraded'))?.gap).toBe(true);
    expect(s.accept(message('c1', 6, 'degraded', 'healthy'))?.gap).toBe(false);
    expect(s.accept(message('c1', 8, 'unknown', 'healthy'))?.gap).toBe(true);
  });

  it('keeps connections of different orgs apart', () => {
    const s = new HealthChangeSequencer();
    expect(s.accept(message('c1', 1, null, 'unknown', 'org_a'))).not.toBeNull();
    expect(s.accept(message('c1', 1, null, 'unknown', 'org_b'))).not.toBeNull();
  });

  it('remembers nothing until handed over, so a failed handler sees the change again', () => {
    const s = new HealthChangeSequencer();
    const first = s.next(message('c1', 1, null, 'unknown'));
    expect(first).not.toBeNull();
    expect(s.next(message('c1', 1, null, 'unknown'))).not.toBeNull();
    s.handedOver(first!.change);
    expect(s.next(message('c1', 1, null, 'unknown'))).toBeNull();
  });
});
