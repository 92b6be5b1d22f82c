import { TraceFlags } from '@opentelemetry/api';
import { linksTo, MAX_LINKS, spanContextOf, traceContextOfHeaders, traceContextText, traceHeaders } from './tracing';

const PARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('trace context in Kafka headers and stored text', () => {
  it('reads traceparent (and tracestate) from Buffer or string headers', () => {
    expect(traceContextOfHeaders({ traceparent: Buffer.from(PARENT) })).toBe(PARENT);
    expect(traceContextOfHeaders({ traceparent: PARENT, tracestate: Buffer.from('vendor=x') })).toBe(
      `${PARENT} vendor=x`,
    );
    expect(traceContextOfHeaders(undefined)).toBeNull();
    expect(traceContextOfHeaders({ other: 'x' })).toBeNull();
  });

  it('refuses what is not a valid W3C traceparent', () => {
    expect(traceContextOfHeaders({ traceparent: 'nonsense' })).toBeNull();
    // all-zero trace id is invalid (W3C trace context, 3.2.2.3)
    expect(
      traceContextOfHeaders({ traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' }),
    ).toBeNull();
    expect(spanContextOf(null)).toBeNull();
  });

  it('round-trips a span context through the text and the headers', () => {
    const c = spanContextOf(`${PARENT} vendor=x`)!;
    expect(c.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(c.spanId).toBe('b7ad6b7169203331');
    expect(c.traceFlags).toBe(TraceFlags.SAMPLED);
    expect(c.isRemote).toBe(true);
    expect(traceContextText(c)).toBe(`${PARENT} vendor=x`);
    expect(traceHeaders(`${PARENT} vendor=x`)).toEqual({ traceparent: PARENT, tracestate: 'vendor=x' });
    expect(traceHeaders(PARENT)).toEqual({ traceparent: PARENT });
  });

  it('links each distinct valid context once, at most MAX_LINKS', () => {
    const other = '00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00';
    const links = linksTo([PARENT, null, PARENT, 'bad', other]);
    expect(links.map((l) => l.context.spanId)).toEqual(['b7ad6b7169203331', '00f067aa0ba902b7']);
    const many = Array.from(
      { length: 200 },
      (_, i) => `00-0af7651916cd43dd8448eb211c80319c-${(i + 1).toString(16).padStart(16, '0')}-01`,
    );
    expect(linksTo(many)).toHaveLength(MAX_LINKS);
  });
});
