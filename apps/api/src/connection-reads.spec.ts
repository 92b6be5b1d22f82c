import { healthWindowText } from '@psp/domain';
import { parseStoredDocument, storedDocument } from '@psp/read-model';
import { renderedAtOf } from './connection-reads';

describe('renderedAtOf: the minute a stored document was rendered at, without parsing it', () => {
  const window = (renderedAt: number | null) => ({
    renderedAt,
    capped: false,
    buckets: [{ minute: 29_000_000, calls: 3, technicalFailures: 1, slowCalls: 0 }],
  });

  it.each([29_000_123, null, 0])('reads r = %p as parsing would', (r) => {
    const doc = storedDocument('{"id":"a","health_score":1}', window(r), '{"t":1}');
    expect(renderedAtOf(doc)).toBe(r);
    expect(renderedAtOf(doc)).toBe(parseStoredDocument(doc).window.renderedAt);
  });

  it('falls back to parsing when the window line is not in the expected form', () => {
    const text = healthWindowText(window(42)).replace('{"r":42,', '{ "r": 42,');
    expect(renderedAtOf(`{"id":"a"}\n${text}\n{}`)).toBe(42);
  });
});
