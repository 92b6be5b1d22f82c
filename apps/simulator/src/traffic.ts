/**
 * The traffic simulator's pure part: provider profiles, outages, the fleet of connections, and a
 * generator of the next message to send. No I/O, no clock: the caller passes the elapsed time and
 * the wall-clock instant each event happens at, so everything here is testable and, for a given
 * seed, repeatable (event ids excepted: they are always fresh, so a second run is never mistaken
 * for duplicates of the first).
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { DlqReason, EventType, PROVIDERS, Provider } from '@psp/domain';
import {
  callCompleted,
  connectionConfigured,
  labelsChanged,
  statusChanged,
  validationCompleted,
  WireEnvelope,
} from '@psp/producer';

// ---------------------------------------------------------------------------------------------------
// Randomness

export type Random = () => number;

/** mulberry32: a small, fast, seeded generator of numbers in [0, 1). */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(rng: Random, items: readonly T[]): T {
  return items[Math.floor(rng() * items.length)];
}

/** A log-normal sample with the given median (Box-Muller). */
export function logNormal(rng: Random, median: number, sigma: number): number {
  const u = Math.max(rng(), Number.EPSILON);
  const v = rng();
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  return median * Math.exp(sigma * z);
}

// ---------------------------------------------------------------------------------------------------
// Provider profiles

export interface ProviderProfile {
  provider: Provider;
  /** Countries its connections serve (ISO 3166 alpha-2). */
  countries: string[];
  methods: string[];
  /** Latency of a normal call: log-normal. */
  latency: { medianMs: number; sigma: number };
  /** Share of calls failing on the PSP's side (count against health). */
  technicalFailureRate: number;
  technicalErrors: string[];
  /** Share of calls declined for the customer's reasons (do not count against health). */
  declineRate: number;
  declineCodes: string[];
  /** Share of credential validations failing in normal times. */
  validationFailureRate: number;
}

export const PROVIDER_PROFILES: Readonly<Record<Provider, ProviderProfile>> = {
  paystack: {
    provider: 'paystack',
    countries: ['GH', 'NG', 'ZA', 'KE'],
    methods: ['card', 'bank_transfer', 'mobile_money'],
    latency: { medianMs: 450, sigma: 0.45 },
    technicalFailureRate: 0.008,
    technicalErrors: ['gateway_error', 'timeout', 'issuer_unavailable'],
    declineRate: 0.06,
    declineCodes: ['insufficient_funds', 'card_declined', 'do_not_honor', 'expired_card'],
    validationFailureRate: 0.01,
  },
  hubtel: {
    provider: 'hubtel',
    countries: ['GH'],
    methods: ['mobile_money', 'card'],
    latency: { medianMs: 650, sigma: 0.5 },
    technicalFailureRate: 0.015,
    technicalErrors: ['network_error', 'timeout', 'momo_operator_unavailable'],
    declineRate: 0.05,
    declineCodes: ['insufficient_funds', 'card_declined'],
    validationFailureRate: 0.01,
  },
  flutterwave: {
    provider: 'flutterwave',
    countries: ['NG', 'GH', 'KE', 'UG'],
    methods: ['card', 'mobile_money', 'bank_transfer'],
    latency: { medianMs: 550, sigma: 0.5 },
    technicalFailureRate: 0.012,
    technicalErrors: ['gateway_error', 'timeout', 'rate_limited'],
    declineRate: 0.07,
    declineCodes: ['insufficient_funds', 'card_declined', 'invalid_card', 'do_not_honor'],
    validationFailureRate: 0.01,
  },
  monnify: {
    provider: 'monnify',
    countries: ['NG'],
    methods: ['bank_transfer', 'card'],
    latency: { medianMs: 500, sigma: 0.4 },
    technicalFailureRate: 0.01,
    technicalErrors: ['bank_unavailable', 'timeout'],
    declineRate: 0.03,
    declineCodes: ['insufficient_funds', 'do_not_honor'],
    validationFailureRate: 0.01,
  },
  mpesa: {
    provider: 'mpesa',
    countries: ['KE', 'TZ'],
    methods: ['mobile_money'],
    latency: { medianMs: 1100, sigma: 0.35 },
    technicalFailureRate: 0.02,
    technicalErrors: ['stk_push_timeout', 'system_busy', 'timeout'],
    declineRate: 0.08,
    declineCodes: ['insufficient_funds'],
    validationFailureRate: 0.01,
  },
  stripe: {
    provider: 'stripe',
    countries: ['US', 'GB', 'IE'],
    methods: ['card', 'bank_transfer'],
    latency: { medianMs: 280, sigma: 0.35 },
    technicalFailureRate: 0.003,
    technicalErrors: ['api_connection_error', 'timeout'],
    declineRate: 0.09,
    declineCodes: ['card_declined', 'insufficient_funds', 'expired_card', 'invalid_card'],
    validationFailureRate: 0.005,
  },
};

export const COUNTRY_LABELS: Readonly<Record<string, string>> = {
  GH: 'ghana',
  NG: 'nigeria',
  ZA: 'south_africa',
  KE: 'kenya',
  UG: 'uganda',
  TZ: 'tanzania',
  US: 'usa',
  GB: 'uk',
  IE: 'ireland',
};

export const COUNTRY_CURRENCIES: Readonly<Record<string, string>> = {
  GH: 'GHS',
  NG: 'NGN',
  ZA: 'ZAR',
  KE: 'KES',
  UG: 'UGX',
  TZ: 'TZS',
  US: 'USD',
  GB: 'GBP',
  IE: 'EUR',
};

/** What an outage does to its provider's calls and validations while it lasts. */
export const OUTAGE_EFFECT = {
  technicalFailureRate: 0.75,
  /** Of the technical failures, the share that are timeouts (slow: 10-30 s); the rest fail fast. */
  timeoutShare: 0.6,
  timeoutMs: { min: 10_000, max: 30_000 },
  fastFailureErrors: ['gateway_unavailable', 'upstream_503'],
  /** Successful calls are this many times slower. */
  latencyFactor: 3.5,
  validationFailureRate: 0.5,
  validationError: 'provider unreachable: connect timeout',
} as const;

// ---------------------------------------------------------------------------------------------------
// Options

export interface Outage {
  provider: Provider;
  /** Seconds after the simulator's start. */
  startS: number;
  durationS: number;
  /** When set, the outage repeats every this many seconds (from its start). */
  everyS?: number;
}

export interface SimulatorOptions {
  orgs: number;
  connections: number;
  /** Messages per second, everything included (duplicates and bad ones too). */
  rate: number;
  /** Seconds; 0 = until Ctrl-C. */
  durationS: number;
  orgPrefix: string;
  outages: Outage[];
  /** Share of messages that re-send an envelope already sent (same event_id). */
  duplicates: number;
  /** Share of messages that are deliberately bad (they end in the service's DLQ). */
  bad: number;
  seed: number;
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const USAGE = `usage: simulator [options]
  --orgs N                  organisations (default 1)
  --connections M           connections per organisation, providers in turn (default 6, at most
                            1,000; N x M at most 1,000,000)
  --rate EVENTS_PER_S       messages per second, duplicates and bad ones included (default 20)
  --duration S              seconds of traffic once the fleet is configured; 0 = until Ctrl-C (default 0)
  --org-prefix PREFIX       org ids: PREFIX alone with --orgs 1, else PREFIX_1 ... PREFIX_N (default org_sim)
  --outage P:START:DUR[:EVERY]
                            provider P fails a lot and slowly from START s for DUR s (repeating every
                            EVERY s when given); may be given several times
  --duplicates FRACTION     share of messages re-sent with the same event_id (default 0)
  --bad FRACTION            share of deliberately bad messages, for the DLQ (default 0)
  --seed N                  random seed (default: from the clock; printed at start)
Kafka brokers and topic names come from KAFKA_BROKERS and TOPIC_* as for the service.`;

const ORG_PREFIX = /^[A-Za-z0-9_-]{1,56}$/;

/** The most connections a fleet may have (--orgs times --connections): bench:scale's largest point. */
export const MAX_FLEET = 1_000_000;

function number(
  name: string,
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
  integer: boolean,
): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (
    raw.trim() === '' ||
    !Number.isFinite(value) ||
    (integer && !Number.isInteger(value)) ||
    value < min ||
    value > max
  ) {
    throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`);
  }
  return value;
}

/** `PROVIDER:START_S:DURATION_S[:EVERY_S]`, e.g. `paystack:60:90:600`. */
export function parseOutage(text: string): Outage {
  const parts = text.split(':');
  const provider = parts[0]?.toLowerCase();
  if (parts.length < 3 || parts.length > 4 || !(PROVIDERS as readonly string[]).includes(provider)) {
    throw new UsageError(
      `--outage must be PROVIDER:START_S:DURATION_S[:EVERY_S] with PROVIDER one of ${PROVIDERS.join(', ')}`,
    );
  }
  const startS = number('outage start', parts[1], 0, 0, 1e9, false);
  const durationS = number('outage duration', parts[2], 0, 0.001, 1e9, false);
  const outage: Outage = { provider: provider as Provider, startS, durationS };
  if (parts.length === 4) {
    outage.everyS = number('outage every', parts[3], 0, 0.001, 1e9, false);
    if (outage.everyS <= durationS) throw new UsageError('--outage EVERY_S must be longer than DURATION_S');
  }
  return outage;
}

export function parseSimulatorArgs(
  argv: string[],
  defaultSeed: () => number = () => Date.now() % 2 ** 31,
): SimulatorOptions {
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        orgs: { type: 'string' },
        connections: { type: 'string' },
        rate: { type: 'string' },
        duration: { type: 'string' },
        'org-prefix': { type: 'string' },
        outage: { type: 'string', multiple: true },
        duplicates: { type: 'string' },
        bad: { type: 'string' },
        seed: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) throw new UsageError('');
  const str = (name: string) => values[name] as string | undefined;
  const orgPrefix = str('org-prefix') ?? 'org_sim';
  if (!ORG_PREFIX.test(orgPrefix)) throw new UsageError('--org-prefix must be 1 to 56 characters of A-Z a-z 0-9 _ -');
  const duplicates = number('duplicates', str('duplicates'), 0, 0, 0.9, false);
  const bad = number('bad', str('bad'), 0, 0, 0.9, false);
  if (duplicates + bad > 0.9) throw new UsageError('--duplicates plus --bad must be at most 0.9');
  const orgs = number('orgs', str('orgs'), 1, 1, MAX_FLEET, true);
  const connections = number('connections', str('connections'), 6, 1, 1_000, true);
  if (orgs * connections > MAX_FLEET)
    throw new UsageError(`--orgs times --connections must be at most ${MAX_FLEET.toLocaleString('en-US')}`);
  return {
    orgs,
    connections,
    rate: number('rate', str('rate'), 20, 0.1, 100_000, false),
    durationS: number('duration', str('duration'), 0, 0, 1e9, false),
    orgPrefix,
    outages: ((values.outage as string[] | undefined) ?? []).map(parseOutage),
    duplicates,
    bad,
    seed: number('seed', str('seed'), defaultSeed(), 0, 2 ** 32 - 1, true),
  };
}

// ---------------------------------------------------------------------------------------------------
// Outages over time

/** Whether the outage is on at `elapsedS`, and the seconds until it next changes (Infinity: never). */
export function outageState(outage: Outage, elapsedS: number): { on: boolean; changesInS: number } {
  if (elapsedS < outage.startS) return { on: false, changesInS: outage.startS - elapsedS };
  const since = elapsedS - outage.startS;
  if (outage.everyS === undefined) {
    return since < outage.durationS
      ? { on: true, changesInS: outage.durationS - since }
      : { on: false, changesInS: Infinity };
  }
  const inCycle = since % outage.everyS;
  return inCycle < outage.durationS
    ? { on: true, changesInS: outage.durationS - inCycle }
    : { on: false, changesInS: outage.everyS - inCycle };
}

/** The providers in an outage at `elapsedS`. */
export function providersDown(outages: readonly Outage[], elapsedS: number): Set<Provider> {
  return new Set(outages.filter((o) => outageState(o, elapsedS).on).map((o) => o.provider));
}

/** A short description of the phase at `elapsedS`, for the progress line. */
export function describePhase(outages: readonly Outage[], elapsedS: number): string {
  if (outages.length === 0) return 'steady (no outage planned)';
  const parts = outages.map((o) => {
    const { on, changesInS } = outageState(o, elapsedS);
    if (on) return `outage ${o.provider} ON (ends in ${Math.ceil(changesInS)} s)`;
    return Number.isFinite(changesInS)
      ? `outage ${o.provider} off (starts in ${Math.ceil(changesInS)} s)`
      : `outage ${o.provider} over`;
  });
  return parts.join(', ');
}

// ---------------------------------------------------------------------------------------------------
// The fleet

export interface SimConnection {
  orgId: string;
  connectionId: string;
  provider: Provider;
  country: string;
  tier: string;
  /** Relative share of its org's calls. */
  weight: number;
  mode: 'live' | 'sandbox';
  status: 'active' | 'inactive';
  labels: string[];
  feePercentage: number;
  feeFixed: number;
}

const TIERS = ['primary', 'backup'];

/** The org id of org number `o` (from 0). */
export function orgIdAt(options: Pick<SimulatorOptions, 'orgs' | 'orgPrefix'>, o: number): string {
  return options.orgs === 1 ? options.orgPrefix : `${options.orgPrefix}_${o + 1}`;
}

export function orgIds(options: Pick<SimulatorOptions, 'orgs' | 'orgPrefix'>): string[] {
  return Array.from({ length: options.orgs }, (_, o) => orgIdAt(options, o));
}

/** The largest weight a connection gets (a first-round one: 0.7 to 1.3). */
const MAX_WEIGHT = 1.3;

/**
 * Connection number `index` of the fleet (org `index / connections`, slot `index % connections`), as
 * configured at the start: providers in turn (shifted per org), the first of a provider primary, the
 * next backup. Computed from the index and the seed alone, so a fleet of a million connections is
 * never held in memory: only the connections whose config changed are (see TrafficGenerator).
 */
export function connectionAt(
  options: Pick<SimulatorOptions, 'orgs' | 'orgPrefix' | 'connections'>,
  seed: number,
  index: number,
): SimConnection {
  const o = Math.floor(index / options.connections);
  const j = index % options.connections;
  const provider = PROVIDERS[(j + o) % PROVIDERS.length];
  const round = Math.floor(j / PROVIDERS.length);
  const profile = PROVIDER_PROFILES[provider];
  const country = profile.countries[(round + o) % profile.countries.length];
  const tier = TIERS[round] ?? `pool${round + 1}`;
  const rng = seededRandom((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  return {
    orgId: orgIdAt(options, o),
    connectionId: `${provider}_${country.toLowerCase()}_${tier}`,
    provider,
    country,
    tier,
    weight: round === 0 ? 0.7 + rng() * 0.6 : 0.2 + rng() * 0.3,
    mode: 'live',
    status: 'active',
    labels: [COUNTRY_LABELS[country], tier],
    feePercentage: Math.round((1 + rng() * 2) * 100) / 100,
    feeFixed: Math.round(rng() * 10) * 10,
  };
}

/** The whole fleet as a list (for small fleets and tests; the generator never builds it). */
export function buildFleet(
  options: Pick<SimulatorOptions, 'orgs' | 'orgPrefix' | 'connections'>,
  seed: number,
): SimConnection[] {
  return Array.from({ length: options.orgs * options.connections }, (_, i) => connectionAt(options, seed, i));
}

// ---------------------------------------------------------------------------------------------------
// The generator

/** How the non-duplicate, non-bad messages divide between the kinds of event. */
export const EVENT_MIX = {
  call: 0.9865,
  validation: 0.01,
  labels: 0.0015,
  status: 0.001,
  reconfigure: 0.001,
} as const;

export type Emission =
  | { kind: 'event'; envelope: WireEnvelope }
  | { kind: 'duplicate'; envelope: WireEnvelope }
  | { kind: 'bad'; type: EventType; key: string; value: string; reason: DlqReason; defect: string };

/** A deliberately bad message: how it is broken, and the DLQ reason the service gives it. */
export interface Defect {
  name: string;
  reason: DlqReason;
  /** The value to send, from a good call envelope; `nowMs` is the wall clock. */
  make(good: WireEnvelope<'psp.call.completed'>, nowMs: number): { type: EventType; value: string };
}

const asJson = (e: unknown) => JSON.stringify(e);

export const DEFECTS: readonly Defect[] = [
  {
    name: 'negative latency',
    reason: 'invalid_data',
    make: (g) => ({ type: g.type, value: asJson({ ...g, data: { ...g.data, latency_ms: -g.data.latency_ms - 1 } }) }),
  },
  {
    name: 'latency in seconds',
    reason: 'invalid_data',
    make: (g) => ({
      type: g.type,
      value: asJson({ ...g, data: { ...g.data, latency_ms: g.data.latency_ms / 1000 + 0.5 } }),
    }),
  },
  {
    name: 'org id with a space',
    reason: 'invalid_field',
    make: (g) => ({ type: g.type, value: asJson({ ...g, org_id: `${g.org_id} x` }) }),
  },
  {
    name: 'no event_id',
    reason: 'missing_field',
    make: (g) => ({ type: g.type, value: asJson({ ...g, event_id: undefined }) }),
  },
  {
    name: 'unknown type',
    reason: 'unknown_type',
    make: (g) => ({ type: g.type, value: asJson({ ...g, type: 'psp.call.started' }) }),
  },
  {
    name: 'schema_version 2',
    reason: 'unsupported_schema_version',
    make: (g) => ({ type: g.type, value: asJson({ ...g, schema_version: 2 }) }),
  },
  { name: 'truncated JSON', reason: 'invalid_json', make: (g) => ({ type: g.type, value: asJson(g).slice(0, 40) }) },
  {
    name: 'an hour in the future',
    reason: 'occurred_at_in_future',
    make: (g, now) => ({ type: g.type, value: asJson({ ...g, occurred_at: new Date(now + 3600_000).toISOString() }) }),
  },
  {
    name: 'local time without offset',
    reason: 'invalid_field',
    make: (g) => ({ type: g.type, value: asJson({ ...g, occurred_at: g.occurred_at.replace(/\.\d+Z$/, '') }) }),
  },
  {
    name: 'label with a space',
    reason: 'invalid_data',
    make: (g) => ({
      type: 'connection.labels_changed',
      value: asJson({ ...g, type: 'connection.labels_changed', data: { labels: ['west africa'] } }),
    }),
  },
];

const RECENT = 256;

/**
 * Decides, message after message, what the simulated platform sends. The fleet is not held: each
 * connection is computed from its index (connectionAt) when it is needed, and only the connections
 * whose config changed since the start (labels, status, fees) are kept, so that a re-configuration
 * carries the current labels and status (`connection.configured` replaces the whole config). Also
 * keeps the recent envelopes (for duplicates).
 */
export class TrafficGenerator {
  /** Connections in the fleet: orgs times connections per org. */
  readonly fleetSize: number;
  /** The connections whose config changed since the start, by index. */
  private readonly changed = new Map<number, SimConnection>();
  /** Indexes of the inactive connections, and how many each org has (by org number). */
  private readonly inactive: number[] = [];
  private readonly inactiveInOrg = new Map<number, number>();
  private readonly recent: WireEnvelope[] = [];

  constructor(
    private readonly options: SimulatorOptions,
    private readonly rng: Random = seededRandom(options.seed),
    private readonly newEventId: () => string = randomUUID,
  ) {
    this.fleetSize = options.orgs * options.connections;
  }

  /** Connection number `index`, as it is now. */
  connection(index: number): SimConnection {
    return this.changed.get(index) ?? connectionAt(this.options, this.options.seed, index);
  }

  /** How many connections are held because their config changed (the rest are computed). */
  get changedConnections(): number {
    return this.changed.size;
  }

  /**
   * What a platform has said before traffic flows: every connection configured, then every one
   * validated (2 x fleetSize envelopes). Lazy: an envelope is made when it is asked for.
   */
  *start(nowMs: number): Generator<WireEnvelope> {
    for (let i = 0; i < this.fleetSize; i++) yield this.remember(this.configured(this.connection(i), nowMs));
    for (let i = 0; i < this.fleetSize; i++) {
      const c = this.connection(i);
      yield this.remember(
        validationCompleted({
          orgId: c.orgId,
          connectionId: c.connectionId,
          occurredAt: nowMs,
          result: 'success',
          eventId: this.newEventId(),
        }),
      );
    }
  }

  /** The next message, happening at `nowMs`, `elapsedS` seconds after the start. */
  next(elapsedS: number, nowMs: number): Emission {
    const r = this.rng();
    if (r < this.options.duplicates && this.recent.length > 0) {
      return { kind: 'duplicate', envelope: pick(this.rng, this.recent) };
    }
    if (r < this.options.duplicates + this.options.bad) return this.badMessage(elapsedS, nowMs);
    const envelope = this.remember(this.freshEvent(elapsedS, nowMs));
    return { kind: 'event', envelope };
  }

  private remember(envelope: WireEnvelope): WireEnvelope {
    if (this.recent.length < RECENT) this.recent.push(envelope);
    else this.recent[Math.floor(this.rng() * RECENT)] = envelope;
    return envelope;
  }

  private anyIndex(): number {
    return Math.floor(this.rng() * this.fleetSize);
  }

  /** Connection `index`, kept from now on because its config is about to change. */
  private toChange(index: number): SimConnection {
    let c = this.changed.get(index);
    if (!c) {
      c = connectionAt(this.options, this.options.seed, index);
      this.changed.set(index, c);
    }
    return c;
  }

  private freshEvent(elapsedS: number, nowMs: number): WireEnvelope {
    const down = providersDown(this.options.outages, elapsedS);
    let r = this.rng();
    if ((r -= EVENT_MIX.call) < 0) return this.call(down, nowMs);
    if ((r -= EVENT_MIX.validation) < 0) return this.validation(this.connection(this.anyIndex()), down, nowMs);
    if ((r -= EVENT_MIX.labels) < 0) return this.relabel(this.anyIndex(), nowMs);
    if ((r -= EVENT_MIX.status) < 0) return this.toggleStatus(nowMs);
    return this.reconfigure(this.anyIndex(), nowMs);
  }

  private ids(c: SimConnection, nowMs: number) {
    return { orgId: c.orgId, connectionId: c.connectionId, occurredAt: nowMs, eventId: this.newEventId() };
  }

  /** A call of a random org, routed to one of its active connections by weight. */
  private call(down: ReadonlySet<Provider>, nowMs: number): WireEnvelope {
    const m = this.options.connections;
    const o = Math.floor(this.rng() * this.options.orgs);
    // A router with every connection off would not call: put one back first.
    if ((this.inactiveInOrg.get(o) ?? 0) >= m)
      return this.setStatus(o * m + Math.floor(this.rng() * m), 'active', nowMs);
    const c = this.weightedActive(o);
    return callCompleted({
      ...this.ids(c, nowMs),
      ...simulateCall(this.rng, PROVIDER_PROFILES[c.provider], c.country, down.has(c.provider)),
    });
  }

  /**
   * One of org `o`'s active connections, chosen with probability in proportion to its weight, by
   * rejection (a connection at random, kept with probability weight / MAX_WEIGHT): a few draws,
   * whatever the number of connections per org, and no list of them built.
   */
  private weightedActive(o: number): SimConnection {
    const m = this.options.connections;
    for (let tries = 0; tries < 64 * m; tries++) {
      const c = this.connection(o * m + Math.floor(this.rng() * m));
      if (c.status === 'active' && this.rng() * MAX_WEIGHT < c.weight) return c;
    }
    for (let j = 0; j < m; j++) {
      const c = this.connection(o * m + j);
      if (c.status === 'active') return c;
    }
    throw new Error(`org number ${o} has no active connection`);
  }

  private validation(c: SimConnection, down: ReadonlySet<Provider>, nowMs: number): WireEnvelope {
    const outage = down.has(c.provider);
    const failRate = outage ? OUTAGE_EFFECT.validationFailureRate : PROVIDER_PROFILES[c.provider].validationFailureRate;
    if (this.rng() < failRate) {
      const error = outage
        ? OUTAGE_EFFECT.validationError
        : 'credentials rejected by provider (401 invalid secret key)';
      return validationCompleted({ ...this.ids(c, nowMs), result: 'failure', error });
    }
    return validationCompleted({ ...this.ids(c, nowMs), result: 'success' });
  }

  private relabel(index: number, nowMs: number): WireEnvelope {
    const c = this.toChange(index);
    const base = [COUNTRY_LABELS[c.country], c.tier];
    const extra = ['vip', 'high_volume', 'monitoring', 'fallback'].filter(() => this.rng() < 0.3);
    c.labels = [...base, ...extra];
    return labelsChanged({ ...this.ids(c, nowMs), labels: c.labels });
  }

  /** Brings back an inactive connection most of the time, else switches one off (never an org's last active one). */
  private toggleStatus(nowMs: number): WireEnvelope {
    if (this.inactive.length > 0 && this.rng() < 0.7)
      return this.setStatus(pick(this.rng, this.inactive), 'active', nowMs);
    const index = this.anyIndex();
    const o = Math.floor(index / this.options.connections);
    const active = this.connection(index).status === 'active';
    const othersActive = this.options.connections - (this.inactiveInOrg.get(o) ?? 0) - (active ? 1 : 0) > 0;
    return this.setStatus(index, active && othersActive ? 'inactive' : 'active', nowMs);
  }

  private setStatus(index: number, status: 'active' | 'inactive', nowMs: number): WireEnvelope {
    const c = this.toChange(index);
    if (c.status !== status) {
      const o = Math.floor(index / this.options.connections);
      const n = (this.inactiveInOrg.get(o) ?? 0) + (status === 'inactive' ? 1 : -1);
      if (n > 0) this.inactiveInOrg.set(o, n);
      else this.inactiveInOrg.delete(o);
      if (status === 'inactive') this.inactive.push(index);
      else this.inactive.splice(this.inactive.indexOf(index), 1);
      c.status = status;
    }
    return statusChanged({ ...this.ids(c, nowMs), status });
  }

  /** A fee change: the whole config again, with the current labels and status. */
  private reconfigure(index: number, nowMs: number): WireEnvelope {
    const c = this.toChange(index);
    c.feePercentage = Math.round(Math.max(0.5, c.feePercentage + (this.rng() - 0.5) * 0.4) * 100) / 100;
    return this.configured(c, nowMs);
  }

  private configured(c: SimConnection, nowMs: number): WireEnvelope {
    const profile = PROVIDER_PROFILES[c.provider];
    return connectionConfigured({
      ...this.ids(c, nowMs),
      provider: c.provider,
      mode: c.mode,
      status: c.status,
      capabilities: Object.fromEntries(profile.methods.map((m) => [m, true])),
      routingHints: { countryPreference: [c.country], methodBias: {}, fallbackOnly: c.tier !== 'primary' },
      labels: c.labels,
      feeStructure: { percentage: c.feePercentage, fixed: c.feeFixed, perMethod: {}, perCurrency: {} },
    });
  }

  private badMessage(elapsedS: number, nowMs: number): Emission {
    const c = this.connection(this.anyIndex());
    const good = callCompleted({
      ...this.ids(c, nowMs),
      ...simulateCall(
        this.rng,
        PROVIDER_PROFILES[c.provider],
        c.country,
        providersDown(this.options.outages, elapsedS).has(c.provider),
      ),
    });
    const defect = pick(this.rng, DEFECTS);
    const { type, value } = defect.make(good, nowMs);
    return {
      kind: 'bad',
      type,
      key: `${c.orgId}:${c.connectionId}`,
      value,
      reason: defect.reason,
      defect: defect.name,
    };
  }
}

/** One call's outcome under a provider's profile, in or out of an outage. */
export function simulateCall(
  rng: Random,
  profile: ProviderProfile,
  country: string,
  outage: boolean,
): {
  outcome: 'success' | 'failure';
  latencyMs: number;
  errorCode?: string;
  operation: string;
  method: string;
  currency: string;
} {
  const context = {
    operation: rng() < 0.9 ? 'charge' : pick(rng, ['refund', 'verify']),
    method: pick(rng, profile.methods),
    currency: COUNTRY_CURRENCIES[country] ?? 'USD',
  };
  const normalLatency = () =>
    logNormal(rng, profile.latency.medianMs * (outage ? OUTAGE_EFFECT.latencyFactor : 1), profile.latency.sigma);
  const technical = outage ? OUTAGE_EFFECT.technicalFailureRate : profile.technicalFailureRate;
  const r = rng();
  if (r < technical) {
    if (outage) {
      if (rng() < OUTAGE_EFFECT.timeoutShare) {
        const { min, max } = OUTAGE_EFFECT.timeoutMs;
        return {
          ...context,
          outcome: 'failure',
          latencyMs: clampLatency(min + rng() * (max - min)),
          errorCode: 'timeout',
        };
      }
      return {
        ...context,
        outcome: 'failure',
        latencyMs: clampLatency(logNormal(rng, 120, 0.5)),
        errorCode: pick(rng, OUTAGE_EFFECT.fastFailureErrors),
      };
    }
    const errorCode = pick(rng, profile.technicalErrors);
    const latency = errorCode.includes('timeout') ? 15_000 + rng() * 15_000 : normalLatency();
    return { ...context, outcome: 'failure', latencyMs: clampLatency(latency), errorCode };
  }
  if (r < technical + profile.declineRate) {
    return {
      ...context,
      outcome: 'failure',
      latencyMs: clampLatency(normalLatency()),
      errorCode: pick(rng, profile.declineCodes),
    };
  }
  return { ...context, outcome: 'success', latencyMs: clampLatency(normalLatency()) };
}

function clampLatency(ms: number): number {
  return Math.min(600_000, Math.max(1, Math.round(ms)));
}

// ---------------------------------------------------------------------------------------------------
// The tally

export class Tally {
  readonly byType = new Map<EventType, number>();
  readonly badByReason = new Map<DlqReason, number>();
  duplicates = 0;
  bad = 0;
  /** Messages not sent: their request failed after its last try (or the kit refused them). */
  failedSends = 0;
  /** Requests that failed after their last try. */
  failedBatches = 0;
  /** Failed tries that were tried again. */
  retries = 0;

  get sent(): number {
    let n = this.duplicates + this.bad;
    for (const v of this.byType.values()) n += v;
    return n;
  }

  count(emission: Emission): void {
    if (emission.kind === 'duplicate') this.duplicates++;
    else if (emission.kind === 'bad') {
      this.bad++;
      this.badByReason.set(emission.reason, (this.badByReason.get(emission.reason) ?? 0) + 1);
    } else this.byType.set(emission.envelope.type, (this.byType.get(emission.envelope.type) ?? 0) + 1);
  }

  summary(seconds: number): string {
    const lines = [
      `sent ${this.sent} messages in ${seconds.toFixed(1)} s (${(this.sent / Math.max(seconds, 0.001)).toFixed(1)}/s)`,
    ];
    for (const [type, n] of [...this.byType].sort(([a], [b]) => a.localeCompare(b)))
      lines.push(`  ${type.padEnd(34)} ${n}`);
    lines.push(`  ${'duplicates (same event_id again)'.padEnd(34)} ${this.duplicates}`);
    lines.push(`  ${'bad (for the DLQ)'.padEnd(34)} ${this.bad}`);
    for (const [reason, n] of [...this.badByReason].sort(([a], [b]) => a.localeCompare(b)))
      lines.push(`    ${reason.padEnd(32)} ${n}`);
    if (this.failedSends > 0)
      lines.push(
        `  ${'not sent (Kafka errors)'.padEnd(34)} ${this.failedSends} (${this.failedBatches} request(s) failed after their last try)`,
      );
    if (this.retries > 0) lines.push(`  ${'requests tried again'.padEnd(34)} ${this.retries}`);
    return lines.join('\n');
  }
}
