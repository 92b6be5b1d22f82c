/**
 * A connection's health window as the read model stores it beside the rendered Connection, so that
 * health can be evaluated at any later stream time without the connection's state: the buckets still
 * in the window when it was rendered, and the validation cap (which moves only with the connection's
 * own events). Stream time only moves forward, so no bucket dropped here is ever needed again.
 *
 * This is what keeps a new minute cheap (docs/read-model.md, "Health at read time"): when stream time
 * enters a new minute, nothing is re-rendered; readers evaluate each stored window at the current
 * minute with the same arithmetic (`healthOf`).
 */
import { HEALTH_WINDOW_MINUTES, HealthBucket } from './connection-state';
import { Health, healthOf, HealthStatus } from './health';

export interface HealthWindow {
  /** The minute bucket of stream time when the window was stored (null: no stream time yet). */
  renderedAt: number | null;
  /** Buckets ascending by minute, each within 59 minutes of `renderedAt`. */
  buckets: HealthBucket[];
  capped: boolean;
}

/** The window at minute `b`: the buckets that can still count at b or later. */
export function healthWindowAt(buckets: readonly HealthBucket[], capped: boolean, b: number | null): HealthWindow {
  const oldest = b === null ? Infinity : b - (HEALTH_WINDOW_MINUTES - 1);
  return { renderedAt: b, buckets: buckets.filter((x) => x.minute >= oldest && x.minute <= (b ?? -Infinity)), capped };
}

/** Compact text: `{"r":minute|null,"c":0|1,"m":[[minute,calls,technicalFailures,slowCalls],...]}`. */
export function healthWindowText(window: HealthWindow): string {
  const m = window.buckets.map((x) => `[${x.minute},${x.calls},${x.technicalFailures},${x.slowCalls}]`).join(',');
  return `{"r":${window.renderedAt === null ? 'null' : window.renderedAt},"c":${window.capped ? 1 : 0},"m":[${m}]}`;
}

export function parseHealthWindow(text: string): HealthWindow {
  const raw = JSON.parse(text) as { r: number | null; c: 0 | 1; m: [number, number, number, number][] };
  return {
    renderedAt: raw.r,
    capped: raw.c === 1,
    buckets: raw.m.map(([minute, calls, technicalFailures, slowCalls]) => ({
      minute,
      calls,
      technicalFailures,
      slowCalls,
    })),
  };
}

/** Health of a stored window at minute `b` (≥ its renderedAt). */
export function healthOfWindow(window: HealthWindow, b: number | null): Health {
  return healthOf(window.buckets, window.capped, b);
}

/**
 * The health of a stored window at each of the `minutes` minutes up to `b` (oldest first, the last
 * one at `b`): the ops console's sparkline of a connection's score over its window. Each minute is
 * evaluated with `healthOf` on the buckets the window holds, so a minute before the window's own
 * start sees only the calls still in it (the older ones were dropped when it was stored): the series
 * shows how the calls of the last hour moved the score, not a stored history.
 */
export function healthSeries(window: HealthWindow, b: number, minutes: number = HEALTH_WINDOW_MINUTES): Health[] {
  return Array.from({ length: minutes }, (_, i) => healthOfWindow(window, b - (minutes - 1) + i));
}

/** When a window's health status next changes by itself, and what it changes to. */
export interface StatusChange {
  minute: number;
  status: HealthStatus;
}

/**
 * The first minute after `b` at which the window's health status differs from its status at `b`,
 * if no call arrives meanwhile, and that status; null when it never does (no calls in the window, or
 * the validation cap holds: the status stays). After b + 59 every bucket of the window has left it,
 * so the status cannot change later than b + 60. The stats route's `outlook` (CONTRACT 1.5b).
 */
export function statusOutlook(window: HealthWindow, b: number): StatusChange | null {
  if (window.buckets.length === 0) return null;
  const now = healthOfWindow(window, b).status;
  for (let m = b + 1; m <= b + HEALTH_WINDOW_MINUTES; m++) {
    const { status } = healthOfWindow(window, m);
    if (status !== now) return { minute: m, status };
  }
  return null;
}

/** The minute of `statusOutlook`: when the projector's sweep looks at the connection again. */
export function nextStatusChange(window: HealthWindow, b: number): number | null {
  return statusOutlook(window, b)?.minute ?? null;
}

const SCORE_MEMBER = ',"health_score":';
const AFTER_HEALTH_MEMBER = ',"last_validated_at":';

/**
 * A rendered Connection (CONTRACT 1.3, contract order) with its health fields replaced. The members
 * after `health_status` have fixed names and string, null or number values, and a JSON string holds
 * no bare `"`, so the last `,"health_score":` of the text is the real member whatever `capabilities`
 * (which comes earlier) contains.
 */
export function withHealth(document: string, health: Health): string {
  const from = document.lastIndexOf(SCORE_MEMBER);
  const to = document.lastIndexOf(AFTER_HEALTH_MEMBER);
  if (from < 0 || to < from) throw new Error('withHealth: not a rendered Connection');
  return `${document.slice(0, from)}${SCORE_MEMBER}${JSON.stringify(health.score)},"health_status":${JSON.stringify(health.status)}${document.slice(to)}`;
}
