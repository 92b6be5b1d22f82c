import { KafkaMessage } from 'kafkajs';
import { detached } from './event-intake';

describe('detached (a message kept for the DLQ no longer pins the fetch response it came in)', () => {
  it('copies key, value and header bytes out of the shared buffer, byte for byte', () => {
    const response = Buffer.from('....key1{"event_id":"e1"}h-value....');
    const message = {
      key: response.subarray(4, 8),
      value: response.subarray(8, 25),
      headers: { 'x-one': response.subarray(25, 32), 'x-text': 'plain', 'x-many': [response.subarray(25, 27), 'b'] },
      timestamp: '1700000000000',
      offset: '7',
      attributes: 0,
    } as unknown as KafkaMessage;
    const copy = detached(message);
    expect(copy.key!.toString()).toBe('key1');
    expect(copy.value!.toString()).toBe('{"event_id":"e1"}');
    expect(copy.headers).toEqual({
      'x-one': Buffer.from('h-value'),
      'x-text': 'plain',
      'x-many': [Buffer.from('h-'), 'b'],
    });
    expect(copy.timestamp).toBe('1700000000000');
    const overlaps = (b: Buffer) =>
      b.buffer === response.buffer &&
      b.byteOffset < response.byteOffset + response.length &&
      b.byteOffset + b.length > response.byteOffset;
    for (const b of [copy.key!, copy.value!, copy.headers!['x-one'] as Buffer]) expect(overlaps(b)).toBe(false);
    expect(overlaps(message.value!)).toBe(true); // (what kafkajs hands out)
  });

  it('keeps a null key and value, and no headers', () => {
    const copy = detached({
      key: null,
      value: null,
      timestamp: '1',
      offset: '0',
      attributes: 0,
    } as unknown as KafkaMessage);
    expect(copy).toEqual({ key: null, value: null, headers: undefined, timestamp: '1' });
  });
});
