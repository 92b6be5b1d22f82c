import { applyEvent, initialConnectionState } from './connection-state';
import { stateFromJson, stateToJson } from './state-codec';
import { callEvent, configuredEvent, MINUTE, T0, validationEvent } from './testing/events';

describe('stateToJson / stateFromJson', () => {
  const state = initialConnectionState('org_1', 'paystack_gh_primary');
  applyEvent(state, configuredEvent('cfg', T0, { labels: ['ghana'] }));
  for (let m = 0; m < 60; m++)
    applyEvent(
      state,
      callEvent(
        `c${m}`,
        T0 + m * MINUTE,
        m % 5 === 0 ? { outcome: 'failure', error_code: 'timeout', method: 'card' } : { currency: 'GHS' },
      ),
    );
  applyEvent(state, validationEvent('v', T0, { result: 'failure', error: 'bad key' }));

  it('round-trips a state exactly', () => {
    expect(stateFromJson(stateToJson(state))).toEqual(state);
    expect(stateFromJson(JSON.parse(stateToJson(state)) as object)).toEqual(state);
  });

  it('reads plain JSON too (rows written before the codec)', () => {
    expect(stateFromJson(JSON.stringify(state))).toEqual(state);
  });

  it('is much smaller than plain JSON with a full window', () => {
    expect(stateToJson(state).length).toBeLessThan(JSON.stringify(state).length * 0.6);
  });
});
