import { randomUUID } from 'node:crypto';
import { readShardHolders } from '@psp/read-model';
import type { WireEvent } from './expected-model';
import type { Scenario, ScenarioRun } from './scenarios';
import type { ChaosStack } from './stack';
import type { Sent } from './traffic';

/**
 * Faults of the sharded projection and of the processes around it (docs/reliability.md): projector
 * shards moving between processes, the writer and the projector killed together, and a burst of
 * health-status flips while the projector (which relays the health changes) is killed twice in a row.
 * Each is reconciled like every scenario (chaos/scenarios.ts: nothing lost, nothing counted twice,
 * the API equal to the oracle, every health-change chain whole).
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function holders(stack: ChaosStack): Promise<Map<number, string>> {
  return readShardHolders(stack.db);
}

async function waitForHolders(
  stack: ChaosStack,
  done: (h: Map<number, string>) => boolean,
  timeoutMs: number,
): Promise<Map<number, string> | null> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const h = await holders(stack).catch(() => new Map<number, string>());
    if (done(h)) return h;
    await sleep(100);
  }
  return null;
}

const distinctHolders = (h: Map<number, string>) => new Set(h.values()).size;

/**
 * Two projectors share the shards from the start; a third joins mid-traffic and takes its share,
 * then the first is killed with SIGKILL: its shards go to the two others (within 15 s), and the
 * answers, the counts and the health chains come out as with one projector. 24 orgs, so that most
 * shards have work.
 */
export const projectorShardsMove: Scenario = {
  name: 'projector shards move',
  traffic: { orgs: 24, connections: 3 },
  setup: async (stack) => {
    stack.spawn('projector');
  },
  fault: async (stack, notes) => {
    const two = await waitForHolders(stack, (h) => h.size === 16 && distinctHolders(h) === 2, 20_000);
    if (!two) notes.push('FAILED: the two projectors did not come to hold the 16 shards between them within 20 s');
    stack.spawn('projector');
    const three = await waitForHolders(stack, (h) => h.size === 16 && distinctHolders(h) === 3, 20_000);
    if (!three) notes.push('FAILED: the third projector took no shard within 20 s');
    const first = stack.processes.get('projector')![0];
    const killed = `:${first.pid}`;
    const shares = three
      ? [...new Set(three.values())].map((p) => [...three.values()].filter((x) => x === p).length)
      : [];
    await stack.kill('projector', 'SIGKILL', first);
    const killedAt = Date.now();
    const after = await waitForHolders(
      stack,
      (h) => h.size === 16 && [...h.values()].every((p) => !p.endsWith(killed)),
      15_000,
    );
    notes.push(
      `shards held by 3 projectors as ${shares.sort().join('+')}; after the kill of one, all 16 held by the ` +
        `other two ${after ? `in ${((Date.now() - killedAt) / 1000).toFixed(1)} s` : 'NOT within 15 s'}`,
    );
    if (!after) notes.push("FAILED: the killed projector's shards were not taken over within 15 s");
  },
};

/** The writer and the projector killed with SIGKILL at the same moment, mid-traffic. */
export const killWriterAndProjector: Scenario = {
  name: 'kill -9 writer and projector together',
  fault: async (stack) => {
    await Promise.all([stack.kill('writer'), stack.kill('projector')]);
    await sleep(1000);
    stack.spawn('writer');
    stack.spawn('projector');
  },
};

/** A good validation of every connection of the traffic (3 orgs × 8 connections by default). */
function validations(stack: ChaosStack, run: ScenarioRun, result: 'failure' | 'success', at: number): Sent[] {
  const out: Sent[] = [];
  for (const org of run.keys.keys())
    for (let c = 0; c < 8; c++) {
      const event: WireEvent = {
        event_id: randomUUID(),
        type: 'connection.validation.completed',
        schema_version: 1,
        org_id: org,
        connection_id: `conn_${c}`,
        occurred_at: new Date(at).toISOString(),
        data: result === 'failure' ? { result, error: 'invalid secret key' } : { result },
      };
      out.push({
        topic: stack.settings.topics.validations,
        key: `${org}:conn_${c}`,
        value: JSON.stringify(event),
        kind: 'good',
        event,
      });
    }
  return out;
}

/**
 * A burst of status flips on every connection (a failed validation caps each one at unhealthy, a
 * later successful one lifts the cap) while the projector, which relays the health changes, is
 * killed twice in a row: the first kill right after the failures are produced, the second right
 * after the successes. Every chain must come out whole, ending at what the API serves.
 */
export const flipsWhileProjectorKilledTwice: Scenario = {
  name: 'status flips, projector killed twice',
  fault: async (stack, notes, run) => {
    const now = Date.now();
    const failures = validations(stack, run, 'failure', now - 1000);
    await stack.produce(failures);
    run.extra.push(...failures);
    await sleep(300);
    await stack.kill('projector');
    stack.spawn('projector');
    await sleep(1500);
    const successes = validations(stack, run, 'success', now);
    await stack.produce(successes);
    run.extra.push(...successes);
    await sleep(300);
    await stack.kill('projector');
    stack.spawn('projector');
    notes.push(`${failures.length} connections flipped to unhealthy and back, the projector killed after each wave`);
  },
};

export const PROJECTOR_FAULTS: Scenario[] = [
  projectorShardsMove,
  killWriterAndProjector,
  flipsWhileProjectorKilledTwice,
];
