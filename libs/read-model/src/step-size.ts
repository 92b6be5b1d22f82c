/**
 * How many events a shard's next step reads (apps/projector), from how the last one went. A step of
 * a shard that is behind reads more: its fixed costs (transaction, sweep, checkpoint, lease check, one
 * Redis update per org) are shared by more events, and a connection changed by several of them is
 * written once (CONTRACT 2.5: changes seen within one step count as one). Caught up, steps go back to
 * the base size, so what arrives is visible soon. A failed step halves it, down to one event, to close
 * in on the event the projection cannot get past (projection-stall.ts).
 *
 * - failed: half, at least 1;
 * - nothing to read: the base size;
 * - below the base (after failures): double, up to the base;
 * - a full step (it read as many as it asked for: more is waiting) of the base size: `max` (a step
 *   above the base reads its events connection by connection, holding one chunk at a time:
 *   ShardProjection.catchUp; the bigger it is, the more of a connection's events one write carries);
 * - a full step above the base: with `maxMillis`, one that took longer is followed by a
 *   proportionally smaller one (events × maxMillis / elapsedMs, not below the base), one that took
 *   less than half of it by one twice as big (up to `max`), else the same; without, `max`;
 * - less than it asked for (caught up): the base size.
 *
 * Time matters because a shard's step holds its process's other shards back (one process steps its
 * shards in turn) and delays a handover of shards between processes: a backlog's big steps stay a
 * few seconds long on any machine. What a catch-up step costs grows more slowly than its events (a
 * connection is written once however many of its events it carries), so shrinking in proportion
 * lands within the bound.
 *
 * And memory: with `maxBytes`, a step whose working set (`workingBytes`: its events, the states it
 * changed and the rows it wrote, estimated) passed it is followed by one reading proportionally fewer
 * events (events × maxBytes / workingBytes, at least 1), and a step of at most the base size (which
 * holds its events) is not followed by one of the base size that its latest one suggests would not
 * fit: the projector's heap stays bounded whatever the size of its connections' states. A step above
 * the base holds one chunk of its events at a time, so its size is not extrapolated from what a
 * step held.
 */
export function nextStepLimit(
  current: number,
  outcome: { applied: number; workingBytes?: number; elapsedMs?: number } | 'failed',
  base: number,
  max: number,
  maxBytes = Infinity,
  maxMillis = Infinity,
): number {
  if (outcome === 'failed') return Math.max(1, Math.floor(current / 2));
  if (outcome.applied === 0) return base;
  const most = Math.max(base, max);
  const elapsed = outcome.elapsedMs ?? 0;
  const timed = elapsed > 0 && Number.isFinite(maxMillis);
  let next: number;
  if (current < base) next = Math.min(base, current * 2);
  else if (outcome.applied < current) next = base;
  else if (current === base || !timed) next = most;
  else if (elapsed > maxMillis) next = Math.max(base, Math.floor((current * maxMillis) / elapsed));
  else if (elapsed < maxMillis / 2) next = Math.min(most, current * 2);
  else next = Math.min(most, current);
  const working = outcome.workingBytes ?? 0;
  if (working <= 0 || !Number.isFinite(maxBytes)) return next;
  // A step above the base holds one chunk of its events at a time: what it holds does not grow with
  // its size, so only a step that passed the bound makes the next one smaller.
  if (next > base && working <= maxBytes) return next;
  return Math.max(1, Math.min(next, Math.floor((outcome.applied * maxBytes) / working)));
}
