import { formatOutlook, formatSuccessRate, sparkline } from './health';

describe('ops health: the columns of CONTRACT 1.5b', () => {
  it('prints the success rate with its interval to 4 decimals, and the calls it rests on', () => {
    expect(formatSuccessRate(1234, { value: 0.9838, low: 0.9751, high: 0.9895 })).toBe(
      'success 0.9838 [0.9751–0.9895] of 1234 calls',
    );
    expect(formatSuccessRate(1, { value: 1, low: 0.2065, high: 1 })).toBe('success 1.0000 [0.2065–1.0000] of 1 call');
    expect(formatSuccessRate(0, null)).toBe('no calls in the window');
  });

  it('prints the outlook, or that the status holds for the next 60 minutes', () => {
    expect(formatOutlook({ at: '2026-11-24T11:02:00.000Z', to: 'unknown' })).toBe(
      '→ unknown at 2026-11-24T11:02:00.000Z',
    );
    expect(formatOutlook(null)).toBe('steady for 60 min');
  });

  it('draws scores 0-100 as one character each', () => {
    expect(sparkline([0, 50, 99.9, 100])).toBe('▁▅██');
  });
});
