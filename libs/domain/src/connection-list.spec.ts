import { ListQuery, ListQueryRejection, parseListQuery, selectConnections, summariseLabels } from './connection-list';
import { ConnectionView } from './connection-view';

function parsed(params: Array<[string, string]>): ListQuery {
  const result = parseListQuery(params);
  if (!result.ok) throw new Error(`expected a valid query, got ${result.rejection.code}`);
  return result.query;
}

function rejected(params: Array<[string, string]>): ListQueryRejection {
  const result = parseListQuery(params);
  if (result.ok) throw new Error('expected a 400');
  return result.rejection;
}

const DEFAULT_QUERY: ListQuery = { label: null, provider: null, status: null, limit: 50, offset: 0 };

describe('parseListQuery', () => {
  describe('defaults', () => {
    it('limit 50, offset 0, no filters', () => {
      expect(parsed([])).toEqual(DEFAULT_QUERY);
    });

    it('ignores unknown parameters, also repeated ones, and names in another case', () => {
      expect(
        parsed([
          ['page', '2'],
          ['page', '3'],
          ['LIMIT', 'abc'],
          ['Status', 'x'],
        ]),
      ).toEqual(DEFAULT_QUERY);
    });

    it.each(['label', 'provider', 'status', 'limit', 'offset'])('an empty %s counts as absent', (name) => {
      expect(parsed([[name, '']])).toEqual(DEFAULT_QUERY);
    });
  });

  describe('duplicate_parameter', () => {
    it.each([
      ['label', 'a', 'b'],
      ['provider', 'paystack', 'paystack'],
      ['status', 'active', 'active'],
      ['limit', '10', '20'],
      ['offset', '0', '0'],
      ['limit', '', '10'],
      ['offset', '', ''],
      ['status', 'bogus', 'active'],
    ])('%s given twice (%j, %j)', (name, first, second) => {
      expect(
        rejected([
          [name, first],
          ['other', 'x'],
          [name, second],
        ]),
      ).toEqual({ code: 'duplicate_parameter', field: name });
    });

    it('is reported before a bad value of another parameter', () => {
      expect(
        rejected([
          ['limit', '0'],
          ['label', 'a'],
          ['label', 'b'],
        ]).code,
      ).toBe('duplicate_parameter');
    });
  });

  describe('label and provider: free text, matched case-insensitively', () => {
    it('lowercases them', () => {
      expect(
        parsed([
          ['label', 'Ghana'],
          ['provider', 'PayStack'],
        ]),
      ).toEqual({ ...DEFAULT_QUERY, label: 'ghana', provider: 'paystack' });
    });

    it('accepts any value (an unknown provider simply matches nothing)', () => {
      expect(
        parsed([
          ['provider', 'paypal'],
          ['label', 'a b'],
        ]),
      ).toMatchObject({ provider: 'paypal', label: 'a b' });
    });
  });

  describe('status: active or inactive, case-insensitive', () => {
    it.each([
      ['active', 'active'],
      ['ACTIVE', 'active'],
      ['Inactive', 'inactive'],
    ])('%s', (value, status) => {
      expect(parsed([['status', value]]).status).toBe(status);
    });

    it.each(['deleted', 'act', ' active', 'active ', 'true'])('invalid_status for %j', (value) => {
      expect(rejected([['status', value]])).toEqual({ code: 'invalid_status', field: 'status' });
    });
  });

  describe('limit: decimal digits, 1 to 200', () => {
    it.each([
      ['1', 1],
      ['200', 200],
      ['50', 50],
      ['007', 7],
      ['000000000000000000000000000200', 200],
    ])('accepts %j', (value, limit) => {
      expect(parsed([['limit', value]]).limit).toBe(limit);
    });

    it.each([
      '0',
      '201',
      '-1',
      '+5',
      '1.0',
      '1e2',
      ' 5',
      '5 ',
      '0x10',
      'ten',
      '１０',
      '99999999999999999999999',
      '9'.repeat(400),
    ])('invalid_limit for %j', (value) => {
      expect(rejected([['limit', value]])).toEqual({ code: 'invalid_limit', field: 'limit' });
    });
  });

  describe('offset: decimal digits, >= 0', () => {
    it.each([
      ['0', 0],
      ['10', 10],
      ['0010', 10],
      ['9007199254740991', Number.MAX_SAFE_INTEGER],
      // Beyond 2^53 - 1: valid, read as 2^53 - 1 (past every result either way).
      ['9007199254740993', Number.MAX_SAFE_INTEGER],
      ['9'.repeat(400), Number.MAX_SAFE_INTEGER],
    ])('accepts %j', (value, offset) => {
      expect(parsed([['offset', value]]).offset).toBe(offset);
    });

    it.each(['-1', '+1', '1.5', '1e3', ' 1', 'abc', '٣'])('invalid_offset for %j', (value) => {
      expect(rejected([['offset', value]])).toEqual({ code: 'invalid_offset', field: 'offset' });
    });
  });

  it('reports the first bad parameter in the order status, limit, offset', () => {
    expect(
      rejected([
        ['offset', '-1'],
        ['limit', '0'],
        ['status', 'x'],
      ]).code,
    ).toBe('invalid_status');
    expect(
      rejected([
        ['offset', '-1'],
        ['limit', '0'],
      ]).code,
    ).toBe('invalid_limit');
  });
});

function view(id: string, overrides: Partial<ConnectionView> = {}): ConnectionView {
  return {
    id,
    provider: 'paystack',
    mode: 'live',
    status: 'active',
    capabilities: {},
    routing_hints: { country_preference: [], method_bias: {}, fallback_only: false },
    labels: [],
    fee_structure: { percentage: 0, fixed: 0, per_method: {}, per_currency: {} },
    total_calls: 0,
    successful_calls: 0,
    failed_calls: 0,
    total_latency_ms: 0,
    last_success_at: null,
    last_failure_at: null,
    health_score: 100,
    health_status: 'unknown',
    last_validated_at: null,
    last_validation_status: null,
    last_validation_error: null,
    validation_failures: 0,
    created_at: '2026-11-24T10:00:00.000Z',
    updated_at: '2026-11-24T10:00:00.000Z',
    ...overrides,
  };
}

const ids = (views: ConnectionView[]) => views.map((v) => v.id);

describe('selectConnections', () => {
  const views = [
    view('b', { created_at: '2026-11-24T10:00:00.000Z', labels: ['ghana'], provider: 'hubtel' }),
    view('a', { created_at: '2026-11-24T10:00:00.000Z', labels: ['ghana', 'prod'] }),
    view('c', { created_at: '2026-11-25T09:00:00.000Z', status: 'inactive', labels: ['prod'] }),
    view('B', { created_at: '2026-11-24T10:00:00.000Z', provider: 'stripe' }),
    view('d', { created_at: '2026-11-23T00:00:00.000Z', provider: 'mpesa' }),
    view('e', { created_at: '2026-11-24T10:00:00.001Z' }),
  ];

  it('orders by created_at descending, then id ascending (plain string order: "B" < "a")', () => {
    expect(selectConnections(views, DEFAULT_QUERY)).toEqual({
      connections: [views[2], views[5], views[3], views[1], views[0], views[4]],
      total: 6,
    });
  });

  it('compares created_at as instants, also across year widths', () => {
    const far = [
      view('x', { created_at: '+010000-01-01T00:00:00.000Z' }),
      view('y', { created_at: '9999-12-31T23:59:59.999Z' }),
    ];
    expect(ids(selectConnections(far, DEFAULT_QUERY).connections)).toEqual(['x', 'y']);
  });

  it('filters by label (stored lowercase; the query is lowercased)', () => {
    expect(ids(selectConnections(views, { ...DEFAULT_QUERY, label: 'ghana' }).connections)).toEqual(['a', 'b']);
    expect(ids(selectConnections(views, { ...DEFAULT_QUERY, label: 'nope' }).connections)).toEqual([]);
  });

  it('filters by provider and by status', () => {
    expect(ids(selectConnections(views, { ...DEFAULT_QUERY, provider: 'hubtel' }).connections)).toEqual(['b']);
    expect(ids(selectConnections(views, { ...DEFAULT_QUERY, status: 'inactive' }).connections)).toEqual(['c']);
    expect(
      ids(selectConnections(views, { ...DEFAULT_QUERY, status: 'active', provider: 'paystack' }).connections),
    ).toEqual(['e', 'a']);
  });

  it('combines filters with AND', () => {
    expect(selectConnections(views, { ...DEFAULT_QUERY, label: 'prod', status: 'active' })).toEqual({
      connections: [views[1]],
      total: 1,
    });
  });

  it('pages with offset and limit; total counts every match', () => {
    expect(selectConnections(views, { ...DEFAULT_QUERY, limit: 2, offset: 0 })).toEqual({
      connections: [views[2], views[5]],
      total: 6,
    });
    expect(selectConnections(views, { ...DEFAULT_QUERY, limit: 2, offset: 2 })).toEqual({
      connections: [views[3], views[1]],
      total: 6,
    });
    expect(selectConnections(views, { ...DEFAULT_QUERY, limit: 2, offset: 5 })).toEqual({
      connections: [views[4]],
      total: 6,
    });
    expect(selectConnections(views, { ...DEFAULT_QUERY, limit: 2, offset: 6 })).toEqual({ connections: [], total: 6 });
    expect(selectConnections(views, { ...DEFAULT_QUERY, offset: Number.MAX_SAFE_INTEGER })).toEqual({
      connections: [],
      total: 6,
    });
  });

  it('pages never repeat or skip a connection', () => {
    const pages = [0, 1, 2, 3, 4, 5].flatMap((offset) =>
      ids(selectConnections(views, { ...DEFAULT_QUERY, limit: 1, offset }).connections),
    );
    expect(pages).toEqual(ids(selectConnections(views, DEFAULT_QUERY).connections));
    expect(new Set(pages).size).toBe(6);
  });

  it('does not reorder its input', () => {
    const input = [...views];
    selectConnections(input, DEFAULT_QUERY);
    expect(input).toEqual(views);
  });
});

describe('summariseLabels', () => {
  it('counts per label, with providers and statuses, all sorted', () => {
    const views = [
      view('a', { labels: ['ghana', 'prod'], provider: 'paystack' }),
      view('b', { labels: ['ghana'], provider: 'hubtel' }),
      view('c', { labels: ['prod', 'backup'], provider: 'stripe', status: 'inactive' }),
      view('d', { labels: [] }),
    ];
    const summary = summariseLabels(views);
    expect(summary).toEqual([
      { label: 'backup', total: 1, providers: { stripe: 1 }, statuses: { inactive: 1 } },
      { label: 'ghana', total: 2, providers: { hubtel: 1, paystack: 1 }, statuses: { active: 2 } },
      { label: 'prod', total: 2, providers: { paystack: 1, stripe: 1 }, statuses: { active: 1, inactive: 1 } },
    ]);
    expect(Object.keys(summary[1].providers)).toEqual(['hubtel', 'paystack']);
    expect(Object.keys(summary[2].statuses)).toEqual(['active', 'inactive']);
    expect(Object.keys(summary[0])).toEqual(['label', 'total', 'providers', 'statuses']);
  });

  it('sorts labels in plain string order ("-" < "0" < "_" < "a")', () => {
    const summary = summariseLabels([view('a', { labels: ['a', '_x', '0', '-y', '10', '9'] })]);
    expect(summary.map((s) => s.label)).toEqual(['-y', '0', '10', '9', '_x', 'a']);
  });

  it('is empty without connections', () => {
    expect(summariseLabels([])).toEqual([]);
  });
});
