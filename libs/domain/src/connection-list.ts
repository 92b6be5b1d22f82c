/**
 * The query rules of the read routes (CONTRACT 1.2 and 1.4): parsing `GET /v1/connections`'s query
 * parameters, filtering, ordering and paging the listed connections, and the label summary.
 *
 * Decisions where the contract is silent (for the project docs to repeat):
 * - A known parameter given twice is `duplicate_parameter` whatever its values, even when one or both
 *   are empty: "given twice" is about the request, not about the values.
 * - When several parameters are wrong, the error names the first in the order label, provider,
 *   status, limit, offset; duplicates are reported before bad values.
 * - Parameter names are case-sensitive (`LIMIT` is an unknown parameter, and ignored).
 * - `offset` digit strings above 2^53 - 1 are valid and read as 2^53 - 1: no org has that many
 *   connections, so the page is empty either way, and the echoed offset stays an exact integer.
 *   `limit` has an upper bound, so a huge one is simply `invalid_limit`.
 */
import { ConnectionStatus, STATUSES } from './event';
import { ConnectionView } from './connection-view';

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 200;
export const DEFAULT_OFFSET = 0;

/**
 * Why a list query was refused: the contract's code (CONTRACT 1.2) and the parameter it names. The
 * HTTP status and message are the API's (apps/api/src/api-error.ts, API_ERRORS).
 */
export interface ListQueryRejection {
  code: 'duplicate_parameter' | 'invalid_status' | 'invalid_limit' | 'invalid_offset';
  field: ListQueryParameter;
}

/** A parsed list query. `label` and `provider` are lowercased (they match case-insensitively). */
export interface ListQuery {
  label: string | null;
  provider: string | null;
  status: ConnectionStatus | null;
  limit: number;
  offset: number;
}

export type ListQueryParsing = { ok: true; query: ListQuery } | { ok: false; rejection: ListQueryRejection };

export const LIST_QUERY_PARAMETERS = ['label', 'provider', 'status', 'limit', 'offset'] as const;
export type ListQueryParameter = (typeof LIST_QUERY_PARAMETERS)[number];

const DIGITS = /^[0-9]+$/;

/**
 * Parses the query's (name, value) pairs, already percent-decoded, in the order they were given.
 * Unknown names are ignored; an empty value counts as absent.
 */
export function parseListQuery(params: Array<[string, string]>): ListQueryParsing {
  const given = new Map<ListQueryParameter, string[]>();
  for (const [name, value] of params) {
    if (!isListQueryParameter(name)) continue;
    const values = given.get(name);
    if (values === undefined) given.set(name, [value]);
    else values.push(value);
  }
  for (const name of LIST_QUERY_PARAMETERS) {
    if ((given.get(name)?.length ?? 0) > 1) {
      return rejected('duplicate_parameter', name);
    }
  }
  const valueOf = (name: ListQueryParameter): string | null => {
    const v = given.get(name)?.[0];
    return v === undefined || v === '' ? null : v;
  };

  const label = valueOf('label');
  const provider = valueOf('provider');

  const statusText = valueOf('status');
  let status: ConnectionStatus | null = null;
  if (statusText !== null) {
    const lower = statusText.toLowerCase();
    if (!isStatus(lower)) return rejected('invalid_status', 'status');
    status = lower;
  }

  const limitText = valueOf('limit');
  let limit = DEFAULT_LIMIT;
  if (limitText !== null) {
    // Number() of a digit string is exact up to 2^53 and only grows with more digits, so any digit
    // string too long to be exact is also too big to pass.
    const n = DIGITS.test(limitText) ? Number(limitText) : NaN;
    if (!(n >= 1 && n <= MAX_LIMIT)) return rejected('invalid_limit', 'limit');
    limit = n;
  }

  const offsetText = valueOf('offset');
  let offset = DEFAULT_OFFSET;
  if (offsetText !== null) {
    if (!DIGITS.test(offsetText)) return rejected('invalid_offset', 'offset');
    offset = Math.min(Number(offsetText), Number.MAX_SAFE_INTEGER);
  }

  return {
    ok: true,
    query: {
      label: label === null ? null : label.toLowerCase(),
      provider: provider === null ? null : provider.toLowerCase(),
      status,
      limit,
      offset,
    },
  };
}

/**
 * One page of the listed connections that match the query, and how many match in all. Order:
 * created_at descending, then id ascending (plain JS string order): a total order, since ids are
 * unique within an org.
 */
export function selectConnections(
  views: readonly ConnectionView[],
  query: ListQuery,
): { connections: ConnectionView[]; total: number } {
  const matching = views
    .filter(
      (v) =>
        (query.label === null || v.labels.includes(query.label)) &&
        (query.provider === null || v.provider.toLowerCase() === query.provider) &&
        (query.status === null || v.status === query.status),
    )
    // created_at is compared as an instant, so the order holds whatever the year's width.
    .map((view) => ({ view, createdAt: Date.parse(view.created_at) }));
  matching.sort((a, b) => {
    if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt;
    return a.view.id < b.view.id ? -1 : a.view.id > b.view.id ? 1 : 0;
  });
  return {
    connections: matching.slice(query.offset, query.offset + query.limit).map((m) => m.view),
    total: matching.length,
  };
}

export interface LabelSummary {
  label: string;
  /** Listed connections carrying the label. */
  total: number;
  /** Of those, how many per provider (keys sorted). */
  providers: Record<string, number>;
  /** Of those, how many per status (keys sorted). */
  statuses: Record<string, number>;
}

interface LabelCounts {
  total: number;
  providers: Map<string, number>;
  statuses: Map<string, number>;
}

/** `GET /v1/connections/labels`: one entry per label of the given (listed) connections, sorted by label. */
export function summariseLabels(views: readonly ConnectionView[]): LabelSummary[] {
  const byLabel = new Map<string, LabelCounts>();
  for (const view of views) {
    for (const label of view.labels) {
      let entry = byLabel.get(label);
      if (entry === undefined) {
        entry = { total: 0, providers: new Map(), statuses: new Map() };
        byLabel.set(label, entry);
      }
      entry.total += 1;
      entry.providers.set(view.provider, (entry.providers.get(view.provider) ?? 0) + 1);
      entry.statuses.set(view.status, (entry.statuses.get(view.status) ?? 0) + 1);
    }
  }
  return sortedKeys(byLabel).map((label) => {
    const entry = byLabel.get(label) as LabelCounts;
    return {
      label,
      total: entry.total,
      providers: sortedRecord(entry.providers),
      statuses: sortedRecord(entry.statuses),
    };
  });
}

function rejected(code: ListQueryRejection['code'], field: ListQueryParameter): ListQueryParsing {
  return { ok: false, rejection: { code, field } };
}

function isListQueryParameter(name: string): name is ListQueryParameter {
  return (LIST_QUERY_PARAMETERS as readonly string[]).includes(name);
}

function isStatus(s: string): s is ConnectionStatus {
  return (STATUSES as readonly string[]).includes(s);
}

function byPlainOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortedKeys<V>(map: Map<string, V>): string[] {
  return [...map.keys()].sort(byPlainOrder);
}

/** A record with its keys inserted in sorted order (none of its keys look like array indexes). */
function sortedRecord(map: Map<string, number>): Record<string, number> {
  const record: Record<string, number> = {};
  for (const key of sortedKeys(map)) record[key] = map.get(key) as number;
  return record;
}
