/**
 * An independent oracle for the reconciliation: what CONTRACT.md section 3 says the API must answer
 * for a set of accepted events, computed here from what the traffic generator produced, without
 * the service's own code (libs/domain) — so a bug there cannot hide itself.
 */
export interface WireEvent {
  event_id: string;
  type: string;
  schema_version: number;
  org_id: string;
  connection_id: string;
  occurred_at: string;
  data: Record<string, unknown>;
}

const DECLINES = new Set(['insufficient_funds', 'card_declined', 'invalid_card', 'expired_card', 'do_not_honor']);

interface Reg<T> {
  value: T;
  at: number;
  id: string;
}

function newer(at: number, id: string, reg: Reg<unknown> | undefined): boolean {
  return !reg || at > reg.at || (at === reg.at && id > reg.id);
}

interface Expected {
  exists?: Reg<boolean>;
  provider?: Reg<string>;
  mode?: Reg<string>;
  status?: Reg<string>;
  labels?: Reg<string[]>;
  created?: number;
  updated?: number;
  calls: { at: number; ok: boolean; latency: number; tech: boolean; slow: boolean }[];
  validations: { at: number; id: string; ok: boolean; error: string | null }[];
}

const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

/** The contract's answer for each listed connection, keyed `org/connection`. */
export function expectedConnections(accepted: WireEvent[]): Map<string, Record<string, unknown>> {
  const byConn = new Map<string, Expected>();
  let streamTime = -Infinity;
  for (const e of accepted) {
    const at = Date.parse(e.occurred_at);
    streamTime = Math.max(streamTime, at);
    const k = `${e.org_id}/${e.connection_id}`;
    const c = byConn.get(k) ?? { calls: [], validations: [] };
    byConn.set(k, c);
    c.updated = Math.max(c.updated ?? -Infinity, at);
    const d = e.data;
    if (e.type === 'psp.call.completed') {
      const ok = d.outcome === 'success';
      c.calls.push({
        at,
        ok,
        latency: d.latency_ms as number,
        tech: !ok && !DECLINES.has(String(d.error_code)),
        slow: (d.latency_ms as number) > 3000,
      });
    } else if (e.type === 'connection.validation.completed') {
      c.validations.push({
        at,
        id: e.event_id,
        ok: d.result === 'success',
        error: d.result === 'success' ? null : ((d.error as string) ?? null),
      });
    } else if (e.type === 'connection.configured') {
      c.created = Math.min(c.created ?? Infinity, at);
      const set = <T>(name: 'exists' | 'provider' | 'mode' | 'status' | 'labels', value: T) => {
        if (newer(at, e.event_id, c[name]))
          (c as unknown as Record<string, Reg<T>>)[name] = { value, at, id: e.event_id };
      };
      set('exists', true);
      set('provider', d.provider as string);
      set('mode', (d.mode as string) ?? 'live');
      set('status', (d.status as string) ?? 'active');
      set('labels', [...new Set(((d.labels as string[]) ?? []).map((l) => l.toLowerCase()))]);
    } else if (e.type === 'connection.status_changed') {
      if (newer(at, e.event_id, c.status)) c.status = { value: d.status as string, at, id: e.event_id };
    } else if (e.type === 'connection.labels_changed') {
      if (newer(at, e.event_id, c.labels))
        c.labels = { value: [...new Set((d.labels as string[]).map((l) => l.toLowerCase()))], at, id: e.event_id };
    } else if (e.type === 'connection.deleted') {
      if (newer(at, e.event_id, c.exists)) c.exists = { value: false, at, id: e.event_id };
    }
  }
  const b = Math.floor(streamTime / 60000);
  const out = new Map<string, Record<string, unknown>>();
  for (const [k, c] of byConn) {
    if (!c.exists?.value) continue;
    const succ = c.calls.filter((x) => x.ok);
    const fail = c.calls.filter((x) => !x.ok);
    const lastSuccess = succ.length ? Math.max(...succ.map((x) => x.at)) : null;
    const lastFailure = fail.length ? Math.max(...fail.map((x) => x.at)) : null;
    const latestValidation =
      [...c.validations].sort((x, y) => x.at - y.at || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0)).pop() ?? null;
    // Health: 60 minute buckets ending at the stream time's, 15-minute half-life, ascending sums.
    const buckets = new Map<number, { n: number; f: number; s: number }>();
    for (const x of c.calls) {
      const m = Math.floor(x.at / 60000);
      if (m < b - 59 || m > b) continue;
      const bucket = buckets.get(m) ?? { n: 0, f: 0, s: 0 };
      bucket.n += 1;
      bucket.f += x.tech ? 1 : 0;
      bucket.s += x.slow ? 1 : 0;
      buckets.set(m, bucket);
    }
    let N = 0;
    let F = 0;
    let S = 0;
    for (const m of [...buckets.keys()].sort((x, y) => x - y)) {
      const w = Math.pow(2, -(b - m) / 15);
      const bucket = buckets.get(m)!;
      N += w * bucket.n;
      F += w * bucket.f;
      S += w * bucket.s;
    }
    let score = 100 * ((N - F + 5) / (N + 5)) * (1 - 0.3 * (N > 0 ? S / N : 0));
    const capped =
      latestValidation !== null && !latestValidation.ok && (lastSuccess === null || lastSuccess < latestValidation.at);
    if (capped) score = Math.min(score, 25);
    const healthScore = Math.round(score * 100) / 100;
    const healthStatus =
      capped || healthScore < 60 ? 'unhealthy' : N < 20 ? 'unknown' : healthScore >= 90 ? 'healthy' : 'degraded';
    const [org, id] = k.split('/');
    out.set(k, {
      org,
      id,
      provider: c.provider!.value,
      mode: c.mode!.value,
      status: c.status!.value,
      labels: c.labels!.value,
      total_calls: c.calls.length,
      successful_calls: succ.length,
      failed_calls: fail.length,
      total_latency_ms: c.calls.reduce((n, x) => n + x.latency, 0),
      last_success_at: iso(lastSuccess),
      last_failure_at: iso(lastFailure),
      health_score: healthScore,
      health_status: healthStatus,
      last_validated_at: iso(latestValidation?.at),
      last_validation_status: latestValidation ? (latestValidation.ok ? 'success' : 'failure') : null,
      last_validation_error: latestValidation ? latestValidation.error : null,
      validation_failures: c.validations.filter((v) => !v.ok).length,
      created_at: iso(c.created),
      updated_at: iso(c.updated),
    });
  }
  return out;
}
