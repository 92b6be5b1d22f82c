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
 * - a full step (it read as many as it asked for: more is waiting): double, up to `max`;
 * - less than it asked for (caught up): the base size.
 *
 * And memory: with `maxBytes`, a step whose working set (`workingBytes`: its events, the states it
 * changed and the rows it wrote, estimated) passed it is followed by one reading proportionally fewer
 * events, and no step grows past what its latest one suggests fits (events × maxBytes / workingBytes,
 * at least 1): the projector's heap stays bounded whatever the size of its connections' states.
 *
 * And time: with `maxMillis`, no step grows past what its latest one suggests takes that long
 * (events × maxMillis / elapsedMs), but time alone never takes a step below the base size: a shard's
 * step holds its other shards back (one process steps its shards in turn) and delays a handover of
 * shards between processes, so the backlog's big steps stay a few seconds long on any machine.
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
  let next =
    current < base
      ? Math.min(base, current * 2)
      : outcome.applied >= current
        ? Math.min(Math.max(base, max), current * 2)
        : base;
  const elapsed = outcome.elapsedMs ?? 0;
  if (elapsed > 0 && Number.isFinite(maxMillis))
    next = Math.min(next, Math.max(Math.min(next, base), Math.floor((outcome.applied * maxMillis) / elapsed)));
  const working = outcome.workingBytes ?? 0;
  if (working <= 0 || !Number.isFinite(maxBytes)) return next;
  return Math.max(1, Math.min(next, Math.floor((outcome.applied * maxBytes) / working)));
}
