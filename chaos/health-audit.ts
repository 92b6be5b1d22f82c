import { readTopicToEnd } from '../test/support/dlq-reader';
import type { ChaosStack } from './stack';

/** A `connection.health_changed` as produced to the health topic (docs/contract.md 2.5). */
interface HealthChanged {
  event_id: string;
  type: string;
  org_id: string;
  connection_id: string;
  data: { sequence: number; from: string | null; to: string; health_score: number };
}

/** What the reconciliation found on the health-change topic. */
export interface HealthAudit {
  /** Messages read from the topic, re-sends included. */
  copies: number;
  /** Distinct changes (by event_id). */
  distinct: number;
  /** Copies beyond the first of an event_id (each byte-identical to it, or counted as a break). */
  duplicates: number;
  /** Connections with at least one change. */
  chains: number;
  /** Every broken rule, one line each. */
  breaks: string[];
}

const STATUSES = new Set(['healthy', 'degraded', 'unhealthy', 'unknown']);

/** How many messages wait in the outbox for the relay. */
export async function healthOutboxSize(stack: ChaosStack): Promise<number> {
  const [{ n }] = await stack.db.query(`SELECT count(*)::int AS n FROM health_change_outbox`);
  return n as number;
}

/** The number of health changes the projection has written so far (sum of every chain's tail sequence). */
export async function healthChangesWritten(stack: ChaosStack): Promise<number> {
  const [{ n }] = await stack.db.query(
    `SELECT coalesce(sum(m.health_sequence), 0)::int AS n FROM connection_read_model m
       JOIN projection_generation g ON g.generation = m.generation AND g.status = 'live'`,
  );
  return n as number;
}

/**
 * Once the pipeline has settled: waits (up to `relayTimeoutMs`) until the relay has emptied the
 * outbox, reads the health topic to its end, de-duplicates by event_id (a re-send must be the same
 * key and bytes), and checks CONTRACT 2.5 per connection: sequence 1, 2, …; event_id
 * `<org>:<connection>:<sequence>`; key `<org>:<connection>`; from = the previous to (null first);
 * to ≠ from; for every connection the API lists (`served`: `<org>/<id>` → health_status) a chain
 * whose latest `to` is that status; and as many distinct changes per connection as the projection
 * wrote (its `health_sequence`).
 */
export async function auditHealthChanges(
  stack: ChaosStack,
  served: Map<string, string>,
  relayTimeoutMs = 60_000,
): Promise<HealthAudit> {
  const breaks: string[] = [];
  const deadline = Date.now() + relayTimeoutMs;
  let waiting = await healthOutboxSize(stack).catch(() => -1);
  while (waiting !== 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    waiting = await healthOutboxSize(stack).catch(() => -1);
  }
  if (waiting !== 0) breaks.push(`the outbox still held ${waiting} message(s) after ${relayTimeoutMs / 1000} s`);

  const copies = await readTopicToEnd(
    stack.kafka,
    stack.settings.topics.health,
    `${stack.settings.writerGroupId}.health-audit`,
  );
  const first = new Map<string, { key: string | null; value: string }>();
  const chains = new Map<string, HealthChanged[]>();
  const where = new Map<HealthChanged, string>();
  let duplicates = 0;
  for (const c of copies) {
    let m: HealthChanged;
    try {
      m = JSON.parse(c.value ?? '') as HealthChanged;
    } catch {
      breaks.push(`a message that is not JSON: ${String(c.value).slice(0, 80)}`);
      continue;
    }
    const known = first.get(m.event_id);
    if (known) {
      duplicates += 1;
      if (known.value !== c.value || known.key !== c.key)
        breaks.push(`${m.event_id} produced twice with different key or bytes`);
      continue;
    }
    first.set(m.event_id, { key: c.key, value: c.value! });
    const id = `${m.org_id}/${m.connection_id}`;
    if (c.key !== `${m.org_id}:${m.connection_id}`) breaks.push(`${m.event_id} keyed ${c.key}`);
    if (m.type !== 'connection.health_changed') breaks.push(`${m.event_id} has type ${m.type}`);
    chains.set(id, [...(chains.get(id) ?? []), m]);
    where.set(m, `partition ${c.partition} offset ${c.offset}`);
  }
  for (const [id, chain] of chains) {
    chain.forEach((m, i) => {
      const at = `${id} #${i + 1} (${where.get(m)})`;
      if (m.data.sequence !== i + 1) breaks.push(`${at}: sequence ${m.data.sequence}`);
      if (m.event_id !== `${m.org_id}:${m.connection_id}:${m.data.sequence}`)
        breaks.push(`${at}: event_id ${m.event_id}`);
      const previous = i === 0 ? null : chain[i - 1].data.to;
      if (m.data.from !== previous) breaks.push(`${at}: from ${m.data.from}, the previous to was ${previous}`);
      if (m.data.to === m.data.from) breaks.push(`${at}: to = from = ${m.data.to}`);
      if (!STATUSES.has(m.data.to)) breaks.push(`${at}: to ${m.data.to}`);
    });
  }
  // The tail of every chain as the projection keeps it: nothing it wrote is missing from the topic.
  const tails: { org_id: string; connection_id: string; health_sequence: number }[] = await stack.db.query(
    `SELECT m.org_id, m.connection_id, m.health_sequence FROM connection_read_model m
       JOIN projection_generation g ON g.generation = m.generation AND g.status = 'live'
      WHERE m.health_sequence > 0`,
  );
  for (const t of tails) {
    const id = `${t.org_id}/${t.connection_id}`;
    const onTopic = chains.get(id)?.length ?? 0;
    if (onTopic !== t.health_sequence)
      breaks.push(`${id}: ${t.health_sequence} change(s) written, ${onTopic} on the topic`);
  }
  for (const [id, status] of served) {
    const chain = chains.get(id);
    if (!chain) breaks.push(`${id}: listed (${status}) with no health change on the topic`);
    else if (chain[chain.length - 1].data.to !== status)
      breaks.push(`${id}: latest change to ${chain[chain.length - 1].data.to}, the API serves ${status}`);
  }
  return { copies: copies.length, distinct: first.size, duplicates, chains: chains.size, breaks };
}
