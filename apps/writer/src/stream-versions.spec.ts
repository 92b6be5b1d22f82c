import { STREAM_VERSION_ENTRY_BYTES, streamKey, StreamVersions } from './stream-versions';

describe('StreamVersions', () => {
  const entry = (key: string) => STREAM_VERSION_ENTRY_BYTES + 2 * key.length;

  it('keeps versions by stream and counts their bytes', () => {
    const versions = new StreamVersions(10_000);
    versions.set(streamKey('org_1', 'a'), 3);
    versions.set(streamKey('org_1', 'b'), 7);
    expect(versions.get('org_1:a')).toBe(3);
    expect(versions.get('org_1:b')).toBe(7);
    expect(versions.get('org_1:c')).toBeUndefined();
    expect(versions.bytes).toBe(entry('org_1:a') + entry('org_1:b'));
  });

  it('forgets the least recently used stream first when the bytes run out', () => {
    const one = entry('org_1:a');
    const versions = new StreamVersions(2 * one);
    versions.set('org_1:a', 1);
    versions.set('org_1:b', 2);
    versions.get('org_1:a'); // a is now the most recently used
    versions.set('org_1:c', 3);
    expect(versions.get('org_1:b')).toBeUndefined();
    expect(versions.get('org_1:a')).toBe(1);
    expect(versions.get('org_1:c')).toBe(3);
    expect(versions.size).toBe(2);
    expect(versions.bytes).toBeLessThanOrEqual(2 * one);
  });

  it('stays within its bytes whatever the key lengths', () => {
    const versions = new StreamVersions(50_000);
    for (let i = 0; i < 5_000; i++) versions.set(streamKey(`org_${i}`, 'c'.repeat(1 + (i % 128))), i);
    expect(versions.bytes).toBeLessThanOrEqual(50_000);
    expect(versions.size).toBeGreaterThan(50);
  });

  it('delete and clear forget streams', () => {
    const versions = new StreamVersions(10_000);
    versions.set('o:a', 1);
    versions.set('o:b', 1);
    versions.delete('o:a');
    expect(versions.get('o:a')).toBeUndefined();
    versions.clear();
    expect(versions.size).toBe(0);
    expect(versions.bytes).toBe(0);
  });
});
