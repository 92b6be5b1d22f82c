import { passed, runScenario, SCENARIOS } from '../../chaos/scenarios';

/**
 * The part of `npm run chaos` that fits in CI time: a few scenarios at small volume, each ending
 * with an exact reconciliation against an independent oracle (0 lost, 0 counted twice, the API
 * equal to the contract's answer) and of the health-change topic (every chain whole after
 * de-duplication by event_id, each listed connection's latest change the status the API serves).
 * The full suite, with Kafka/PostgreSQL/Redis restarts, is `npm run chaos` (docs/reliability.md).
 */
describe('chaos scenarios (small volume)', () => {
  const inCi = [
    'kill -9 projector',
    'bad-message storm (10%)',
    'poison storm',
    'every event twice',
    'shuffled across topics',
  ];

  it.each(inCi)(
    '%s: nothing lost, nothing counted twice, the API answers the contract',
    async (name) => {
      const scenario = SCENARIOS.find((s) => s.name === name)!;
      const row = await runScenario(scenario, { mode: 'source', events: 2000 });
      expect({
        lost: row.lost,
        countedTwice: row.countedTwice,
        mismatches: row.mismatches,
        healthBreaks: row.healthBreaks,
        notes: row.notes.filter((n) => n.startsWith('FAILED')),
      }).toEqual({
        lost: 0,
        countedTwice: 0,
        mismatches: 0,
        healthBreaks: 0,
        notes: [],
      });
      expect(row.applied + row.dlq + row.duplicatesIgnored).toBe(row.produced);
      expect(passed(row)).toBe(true);
    },
    300000,
  );
});
