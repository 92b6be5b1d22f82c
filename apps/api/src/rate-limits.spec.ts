import { clientAddressKey, windowAt } from './rate-limits';

describe('rate-limit windows', () => {
  const minute = Date.UTC(2026, 10, 24, 10, 15, 0, 0);

  it('are the minutes of the clock; Reset is the whole seconds left, 1 to 60', () => {
    expect(windowAt(minute)).toEqual({ index: minute / 60000, resetSeconds: 60 });
    expect(windowAt(minute + 1)).toEqual({ index: minute / 60000, resetSeconds: 60 });
    expect(windowAt(minute + 17_400)).toEqual({ index: minute / 60000, resetSeconds: 43 });
    expect(windowAt(minute + 59_000)).toEqual({ index: minute / 60000, resetSeconds: 1 });
    expect(windowAt(minute + 59_999)).toEqual({ index: minute / 60000, resetSeconds: 1 });
    expect(windowAt(minute + 60_000)).toEqual({ index: minute / 60000 + 1, resetSeconds: 60 });
  });
});

describe('clientAddressKey', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['::FFFF:127.0.0.1', '127.0.0.1'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:DB8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::203.0.113.7', '64:ff9b:0:0::/64'],
    [undefined, 'unknown'],
    ['', 'unknown'],
    ['not an address', 'unknown'],
  ])('%s counts as %s', (ip, key) => {
    expect(clientAddressKey(ip)).toBe(key);
  });

  it('puts every address of one /64 under one key, and other /64s apart', () => {
    expect(clientAddressKey('2001:db8:a:b:1::1')).toBe(clientAddressKey('2001:db8:a:b:ffff:ffff:ffff:ffff'));
    expect(clientAddressKey('2001:db8:a:b::1')).not.toBe(clientAddressKey('2001:db8:a:c::1'));
  });
});
