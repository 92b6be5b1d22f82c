import {
  applyEvent,
  ConnectionEvent,
  ConnectionState,
  CUSTOMER_DECLINE_CODES,
  EVENT_TYPES,
  healthAt,
  initialConnectionState,
  PROVIDERS,
  SLOW_CALL_MS,
  validateMessage,
} from '@psp/domain';
import { callCompleted, WireEnvelope } from '@psp/producer';
import {
  buildFleet,
  connectionAt,
  DEFECTS,
  describePhase,
  Emission,
  orgIds,
  OUTAGE_EFFECT,
  outageState,
  parseOutage,
  parseSimulatorArgs,
  PROVIDER_PROFILES,
  providersDown,
  seededRandom,
  SimulatorOptions,
  simulateCall,
  Tally,
  TrafficGenerator,
  UsageError,
} from './traffic';

const T0 = Date.UTC(2026, 10, 24, 10, 0); // a whole minute

function options(overrides: Partial<SimulatorOptions> = {}): SimulatorOptions {
  return {
    orgs: 1,
    connections: 6,
    rate: 20,
    durationS: 0,
    orgPrefix: 'org_demo',
    outages: [],
    duplicates: 0,
    bad: 0,
    seed: 42,
    ...overrides,
  };
}

function counter(): () => string {
  let n = 0;
  return () => `sim-${++n}`;
}

function accepted(value: string | WireEnvelope, nowMs: number): ConnectionEvent {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  const result = validateMessage(Buffer.from(text, 'utf8'), nowMs);
  if (!result.ok) throw new Error(`refused: ${result.reason} ${result.field}: ${result.detail}`);
  return result.event;
}

describe('parseSimulatorArgs', () => {
  it('has gentle defaults', () => {
    expect(parseSimulatorArgs([], () => 7)).toEqual({
      orgs: 1,
      connections: 6,
      rate: 20,
      durationS: 0,
      orgPrefix: 'org_sim',
      outages: [],
      duplicates: 0,
      bad: 0,
      seed: 7,
    });
  });

  it('reads every option, --outage several times', () => {
    const o = parseSimulatorArgs([
      '--orgs',
      '3',
      '--connections',
      '8',
      '--rate',
      '250.5',
      '--duration',
      '60',
      '--org-prefix',
      'org_load',
      '--outage',
      'paystack:60:90:600',
      '--outage',
      'MPESA:10:5',
      '--duplicates',
      '0.05',
      '--bad',
      '0.01',
      '--seed',
      '123',
    ]);
    expect(o).toEqual({
      orgs: 3,
      connections: 8,
      rate: 250.5,
      durationS: 60,
      orgPrefix: 'org_load',
      outages: [
        { provider: 'paystack', startS: 60, durationS: 90, everyS: 600 },
        { provider: 'mpesa', startS: 10, durationS: 5 },
      ],
      duplicates: 0.05,
      bad: 0.01,
      seed: 123,
    });
  });

  it('takes fleets up to 1,000,000 connections (bench:scale: 200,000 orgs of 5)', () => {
    expect(parseSimulatorArgs(['--orgs', '200000', '--connections', '5'], () => 1)).toMatchObject({
      orgs: 200_000,
      connections: 5,
    });
    expect(parseSimulatorArgs(['--orgs', '1000000', '--connections', '1'], () => 1).orgs).toBe(1_000_000);
    expect(() => parseSimulatorArgs(['--orgs', '100001', '--connections', '10'])).toThrow(
      new UsageError('--orgs times --connections must be at most 1,000,000'),
    );
  });

  it.each([
    [['--orgs', '1000001', '--connections', '1']],
    [['--connections', '1001']],
    [['--rate', '0']],
    [['--rate', 'fast']],
    [['--orgs', '1.5']],
    [['--connections', '0']],
    [['--duration', '-1']],
    [['--org-prefix', 'org demo']],
    [['--outage', 'paypal:1:2']],
    [['--outage', 'paystack:1']],
    [['--outage', 'paystack:60:90:90']],
    [['--outage', 'paystack:x:90']],
    [['--duplicates', '0.5', '--bad', '0.5']],
    [['--bad', '1']],
    [['--seed', '-3']],
    [['--frobnicate']],
    [['positional']],
  ])('refuses %j with a usage error', (argv) => {
    expect(() => parseSimulatorArgs(argv)).toThrow(UsageError);
  });

  it('answers --help with an empty usage error (print the usage, exit 0)', () => {
    expect(() => parseSimulatorArgs(['--help'])).toThrow(new UsageError(''));
  });
});

describe('outages over time', () => {
  it('is on from its start for its duration, once', () => {
    const o = parseOutage('hubtel:10:5');
    expect(outageState(o, 0)).toEqual({ on: false, changesInS: 10 });
    expect(outageState(o, 10)).toEqual({ on: true, changesInS: 5 });
    expect(outageState(o, 14.5)).toEqual({ on: true, changesInS: 0.5 });
    expect(outageState(o, 15)).toEqual({ on: false, changesInS: Infinity });
  });

  it('repeats every EVERY_S when given', () => {
    const o = parseOutage('paystack:60:90:600');
    expect(outageState(o, 59).on).toBe(false);
    expect(outageState(o, 60).on).toBe(true);
    expect(outageState(o, 149).on).toBe(true);
    expect(outageState(o, 150)).toEqual({ on: false, changesInS: 510 });
    expect(outageState(o, 660)).toEqual({ on: true, changesInS: 90 });
    expect(outageState(o, 1260 + 89).on).toBe(true);
  });

  it('names the providers down and describes the phase', () => {
    const outages = [parseOutage('paystack:60:90:600'), parseOutage('mpesa:100:10')];
    expect([...providersDown(outages, 105)].sort()).toEqual(['mpesa', 'paystack']);
    expect([...providersDown(outages, 200)]).toEqual([]);
    expect(describePhase(outages, 105)).toBe('outage paystack ON (ends in 45 s), outage mpesa ON (ends in 5 s)');
    expect(describePhase(outages, 200)).toBe('outage paystack off (starts in 460 s), outage mpesa over');
    expect(describePhase([], 5)).toBe('steady (no outage planned)');
  });
});

describe('the fleet', () => {
  it('names orgs: the prefix alone for one org, numbered for several', () => {
    expect(orgIds({ orgs: 1, orgPrefix: 'org_demo' })).toEqual(['org_demo']);
    expect(orgIds({ orgs: 3, orgPrefix: 'org_sim' })).toEqual(['org_sim_1', 'org_sim_2', 'org_sim_3']);
  });

  it('gives 6 connections one of each provider, primary, with country and tier labels', () => {
    const fleet = buildFleet({ orgs: 1, orgPrefix: 'org_demo', connections: 6 }, 1);
    expect(fleet.map((c) => c.provider)).toEqual([...PROVIDERS]);
    expect(fleet.map((c) => c.connectionId)).toEqual([
      'paystack_gh_primary',
      'hubtel_gh_primary',
      'flutterwave_ng_primary',
      'monnify_ng_primary',
      'mpesa_ke_primary',
      'stripe_us_primary',
    ]);
    expect(fleet[0].labels).toEqual(['ghana', 'primary']);
  });

  it('keeps connection ids unique and valid for many connections and orgs', () => {
    const fleet = buildFleet({ orgs: 4, orgPrefix: 'org_sim', connections: 20 }, 1);
    expect(fleet).toHaveLength(80);
    expect(new Set(fleet.map((c) => `${c.orgId}:${c.connectionId}`)).size).toBe(80);
    for (const c of fleet) expect(c.connectionId).toMatch(/^[a-z0-9_]{1,128}$/);
    expect(fleet.filter((c) => c.tier === 'backup').length).toBe(4 * 6);
  });
});

describe('the fleet, computed one connection at a time', () => {
  const big = { orgs: 200_000, orgPrefix: 'org_sim', connections: 5 };

  it('computes connection i as the list would hold it, from the index and the seed alone', () => {
    const small = { orgs: 3, orgPrefix: 'org_sim', connections: 8 };
    const fleet = buildFleet(small, 9);
    fleet.forEach((c, i) => expect(connectionAt(small, 9, i)).toEqual(c));
    expect(connectionAt(small, 9, 8)).toMatchObject({ orgId: 'org_sim_2', connectionId: 'hubtel_gh_primary' });
    expect(connectionAt(small, 10, 8).feePercentage).not.toBe(connectionAt(small, 9, 8).feePercentage);
  });

  it('names the last connection of a million-connection fleet without building the others', () => {
    expect(connectionAt(big, 1, 999_999)).toMatchObject({ orgId: 'org_sim_200000', tier: 'primary' });
  });

  it('starts lazily: the first envelopes of 200,000 orgs come at once, configured before validated', () => {
    const g = new TrafficGenerator(options({ ...big }), seededRandom(1), counter());
    expect(g.fleetSize).toBe(1_000_000);
    const it = g.start(T0);
    const first = [it.next().value, it.next().value] as WireEnvelope[];
    expect(first.map((e) => `${e.type} ${e.org_id} ${e.connection_id}`)).toEqual([
      'connection.configured org_sim_1 paystack_gh_primary',
      'connection.configured org_sim_1 hubtel_gh_primary',
    ]);
  });

  it('holds only the connections whose config changed, and keeps them consistent', () => {
    const g = new TrafficGenerator(options({ ...big, rate: 20_000 }), seededRandom(4), counter());
    let changes = 0;
    for (let i = 0; i < 100_000; i++) {
      const e = g.next(i / 20_000, T0 + i);
      if (e.kind !== 'event') continue;
      const t = e.envelope.type;
      if (t === 'connection.labels_changed' || t === 'connection.status_changed' || t === 'connection.configured')
        changes++;
    }
    // About 0.35% of the events change a config; no more connections than that are held.
    expect(changes).toBeGreaterThan(200);
    expect(g.changedConnections).toBeLessThanOrEqual(changes);
  });

  it("routes an org's calls to its active connections in proportion to their weights", () => {
    const opts = options({ orgs: 1, connections: 8 });
    const g = new TrafficGenerator(opts, seededRandom(8), counter());
    const fleet = buildFleet(opts, opts.seed);
    const total = fleet.reduce((sum, c) => sum + c.weight, 0);
    const calls = new Map<string, number>();
    const inactive = new Set<string>();
    let n = 0;
    for (let i = 0; i < 100_000; i++) {
      const e = g.next(i / 1000, T0 + i);
      if (e.kind !== 'event') continue;
      const env = e.envelope;
      if (env.type === 'connection.status_changed') {
        if (env.data.status === 'inactive') inactive.add(env.connection_id);
        else inactive.delete(env.connection_id);
      }
      // Counted while every connection is active (a switched-off one changes the shares).
      if (env.type !== 'psp.call.completed' || inactive.size > 0) continue;
      calls.set(env.connection_id, (calls.get(env.connection_id) ?? 0) + 1);
      n++;
    }
    expect(n).toBeGreaterThan(20_000);
    for (const c of fleet) {
      const share = (calls.get(c.connectionId) ?? 0) / n;
      expect([c.connectionId, Math.abs(share - c.weight / total) < 0.01]).toEqual([c.connectionId, true]);
    }
  });
});

describe('provider profiles', () => {
  it('has one per provider; declines are the contract customer-side declines, technical errors are not', () => {
    expect(Object.keys(PROVIDER_PROFILES).sort()).toEqual([...PROVIDERS].sort());
    for (const p of Object.values(PROVIDER_PROFILES)) {
      for (const code of p.declineCodes) expect(CUSTOMER_DECLINE_CODES).toContain(code);
      for (const code of p.technicalErrors) expect(CUSTOMER_DECLINE_CODES).not.toContain(code);
      expect(p.technicalFailureRate).toBeLessThan(0.05);
    }
    for (const code of OUTAGE_EFFECT.fastFailureErrors) expect(CUSTOMER_DECLINE_CODES).not.toContain(code);
  });

  /** Shares of technical failures and slow calls over many simulated calls. */
  function shares(provider: keyof typeof PROVIDER_PROFILES, outage: boolean) {
    const rng = seededRandom(9);
    const n = 20_000;
    let technical = 0;
    let declines = 0;
    let slow = 0;
    for (let i = 0; i < n; i++) {
      const call = simulateCall(rng, PROVIDER_PROFILES[provider], PROVIDER_PROFILES[provider].countries[0], outage);
      if (!(Number.isInteger(call.latencyMs) && call.latencyMs >= 1 && call.latencyMs <= 600_000))
        throw new Error(`bad latency ${call.latencyMs}`);
      if (call.outcome === 'failure' && (CUSTOMER_DECLINE_CODES as readonly string[]).includes(call.errorCode!))
        declines++;
      else if (call.outcome === 'failure') technical++;
      if (call.latencyMs > SLOW_CALL_MS) slow++;
    }
    return { technical: technical / n, declines: declines / n, slow: slow / n };
  }

  it.each([...PROVIDERS])(
    '%s is healthy in normal times: few technical failures, few slow calls, some declines',
    (provider) => {
      const s = shares(provider, false);
      const profile = PROVIDER_PROFILES[provider];
      expect(Math.abs(s.technical - profile.technicalFailureRate)).toBeLessThan(0.005);
      expect(Math.abs(s.declines - profile.declineRate)).toBeLessThan(0.01);
      expect(s.slow).toBeLessThan(0.03);
    },
  );

  it.each([...PROVIDERS])('%s in an outage fails mostly, and slowly', (provider) => {
    const s = shares(provider, true);
    expect(Math.abs(s.technical - OUTAGE_EFFECT.technicalFailureRate)).toBeLessThan(0.02);
    expect(s.slow).toBeGreaterThan(0.4);
  });
});

describe('TrafficGenerator', () => {
  it('starts by configuring and validating every connection, all accepted', () => {
    const g = new TrafficGenerator(options({ connections: 3 }), seededRandom(1), counter());
    const start = [...g.start(T0)];
    expect(start.map((e) => `${e.type} ${e.connection_id}`)).toEqual([
      'connection.configured paystack_gh_primary',
      'connection.configured hubtel_gh_primary',
      'connection.configured flutterwave_ng_primary',
      'connection.validation.completed paystack_gh_primary',
      'connection.validation.completed hubtel_gh_primary',
      'connection.validation.completed flutterwave_ng_primary',
    ]);
    for (const e of start) expect(accepted(e, T0).occurredAt).toBe(T0);
  });

  it('is repeatable for a seed', () => {
    const run = () => {
      const g = new TrafficGenerator(options({ duplicates: 0.1, bad: 0.1 }), seededRandom(5), counter());
      g.start(T0);
      return Array.from({ length: 500 }, (_, i) => g.next(i / 20, T0 + i * 50));
    };
    expect(run()).toEqual(run());
  });

  it('mixes fresh events of every kind, duplicates and bad messages; good ones accepted, bad ones refused for their stated reason', () => {
    const g = new TrafficGenerator(
      options({ orgs: 2, connections: 6, duplicates: 0.05, bad: 0.05, outages: [parseOutage('hubtel:100:100')] }),
      seededRandom(3),
      counter(),
    );
    const seen = new Set([...g.start(T0)].map((e) => e.event_id));
    const tally = new Tally();
    const n = 20_000;
    const problems: string[] = []; // checked by hand: expect() in a 40k loop is slow
    for (let i = 0; i < n; i++) {
      const now = T0 + i * 10;
      const e = g.next(i / 100, now);
      tally.count(e);
      if (e.kind === 'bad') {
        const result = validateMessage(Buffer.from(e.value, 'utf8'), now);
        if (result.ok || result.reason !== e.reason)
          problems.push(`${e.defect}: ${result.ok ? 'accepted' : result.reason}`);
        if (!/^org_demo_[12]:[a-z_]+$/.test(e.key)) problems.push(`key ${e.key}`);
      } else {
        const result = validateMessage(Buffer.from(JSON.stringify(e.envelope), 'utf8'), now);
        if (!result.ok) problems.push(`${e.kind} ${e.envelope.type} refused: ${result.reason}`);
        if (e.kind === 'duplicate' && !seen.has(e.envelope.event_id)) problems.push('a duplicate of nothing sent');
        if (e.kind === 'event' && seen.has(e.envelope.event_id)) problems.push('a fresh event with a used event_id');
        if (e.kind === 'event' && result.ok && result.event.occurredAt !== now) problems.push('occurred_at is not now');
        seen.add(e.envelope.event_id);
      }
    }
    expect(problems.slice(0, 10)).toEqual([]);
    expect(tally.duplicates / n).toBeCloseTo(0.05, 1);
    expect(tally.bad / n).toBeCloseTo(0.05, 1);
    expect(new Set(tally.badByReason.keys()).size).toBeGreaterThanOrEqual(6);
    const types = [...tally.byType.keys()].sort();
    expect(types).toEqual(EVENT_TYPES.filter((t) => t !== 'connection.deleted').sort());
    expect(tally.byType.get('psp.call.completed')! / n).toBeGreaterThan(0.85);
    expect(tally.sent).toBe(n);
  });

  it('re-configures with the current labels and status (connection.configured replaces the whole config)', () => {
    const g = new TrafficGenerator(options({ connections: 2, rate: 1000 }), seededRandom(11), counter());
    const current = new Map<string, { labels: string[]; status: string }>();
    for (const e of g.start(T0)) {
      if (e.type === 'connection.configured')
        current.set(e.connection_id, { labels: e.data.labels!, status: e.data.status! });
    }
    let reconfigured = 0;
    const problems: string[] = [];
    for (let i = 0; i < 50_000; i++) {
      const { envelope: e } = g.next(i / 1000, T0 + i) as Extract<Emission, { kind: 'event' }>;
      const state = current.get(e.connection_id)!;
      if (e.type === 'connection.labels_changed') state.labels = e.data.labels;
      if (e.type === 'connection.status_changed') state.status = e.data.status;
      if (e.type === 'connection.configured') {
        reconfigured++;
        if (JSON.stringify({ labels: e.data.labels, status: e.data.status }) !== JSON.stringify(state))
          problems.push(`configured ${JSON.stringify(e.data)} vs ${JSON.stringify(state)}`);
      }
      // A router only calls active connections.
      if (e.type === 'psp.call.completed' && state.status !== 'active')
        problems.push(`a call to inactive ${e.connection_id}`);
    }
    expect(problems.slice(0, 10)).toEqual([]);
    expect(reconfigured).toBeGreaterThan(15);
  });

  it('plays the demo: the provider in an outage turns unhealthy and recovers; the others stay healthy', () => {
    // 1 org x 6 connections at 20 msg/s, paystack down from 60 s for 60 s every 600 s: the `npm start` demo.
    const opts = options({ outages: [parseOutage('paystack:60:60:600')] });
    const g = new TrafficGenerator(opts, seededRandom(2026), counter());
    const states = new Map<string, ConnectionState>();
    const apply = (e: WireEnvelope, now: number) => {
      const event = accepted(e, now);
      const state = states.get(event.connectionId) ?? initialConnectionState(event.orgId, event.connectionId);
      states.set(event.connectionId, applyEvent(state, event));
    };
    for (const e of g.start(T0)) apply(e, T0);
    const health = new Map<number, Record<string, { status: string; score: number }>>();
    const checkpoints = new Set([55, 90, 120, 360, 650, 700]);
    for (let i = 1; i <= 20 * 700; i++) {
      const elapsedS = i / 20;
      const now = T0 + i * 50;
      const e = g.next(elapsedS, now);
      if (e.kind === 'event') apply(e.envelope, now);
      if (checkpoints.has(elapsedS)) {
        const at: Record<string, { status: string; score: number }> = {};
        for (const [id, s] of states) at[id] = healthAt(s, now);
        health.set(elapsedS, at);
      }
    }
    const paystack = (t: number) => health.get(t)!.paystack_gh_primary;
    expect(paystack(55).status).toBe('healthy'); // before the outage
    expect(paystack(90).status).not.toBe('healthy'); // 30 s into it
    expect(paystack(120).status).toBe('unhealthy'); // at its end
    expect(paystack(360).score).toBeGreaterThan(paystack(120).score + 20); // recovering, on the 15-minute half-life
    expect(paystack(650).score).toBeGreaterThanOrEqual(88); // about healthy again
    expect(paystack(700).score).toBeLessThan(paystack(650).score - 4); // the next outage, from 660 s
    for (const t of checkpoints) {
      for (const [id, h] of Object.entries(health.get(t)!)) {
        if (id !== 'paystack_gh_primary') expect([t, id, h.score >= 85]).toEqual([t, id, true]);
      }
    }
  });
});

describe('defects', () => {
  it.each(DEFECTS.map((d) => [d.name, d] as const))('%s gets its stated DLQ reason', (_name, defect) => {
    const good = callCompleted({
      orgId: 'org_demo',
      connectionId: 'paystack_gh_primary',
      occurredAt: T0,
      outcome: 'success',
      latencyMs: 412,
    });
    const { value } = defect.make(good, T0);
    const result = validateMessage(Buffer.from(value, 'utf8'), T0);
    expect(result.ok ? 'accepted' : result.reason).toBe(defect.reason);
  });
});

describe('Tally', () => {
  it('counts by type, duplicates and bad by reason, and sums up', () => {
    const t = new Tally();
    const e = callCompleted({ orgId: 'o', connectionId: 'c', occurredAt: T0, outcome: 'success', latencyMs: 1 });
    t.count({ kind: 'event', envelope: e });
    t.count({ kind: 'event', envelope: e });
    t.count({ kind: 'duplicate', envelope: e });
    t.count({ kind: 'bad', type: e.type, key: 'o:c', value: '{', reason: 'invalid_json', defect: 'truncated JSON' });
    expect(t.sent).toBe(4);
    const text = t.summary(2);
    expect(text).toContain('sent 4 messages in 2.0 s (2.0/s)');
    expect(text).toMatch(/psp\.call\.completed\s+2/);
    expect(text).toMatch(/duplicates \(same event_id again\)\s+1/);
    expect(text).toMatch(/bad \(for the DLQ\)\s+1/);
    expect(text).toMatch(/invalid_json\s+1/);
  });
});
