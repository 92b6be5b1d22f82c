import { ORG_OVERHEAD_BYTES, orgBytes, parsedOrgBytes, ReadCaches, renderedBytes } from './read-caches';

interface Org {
  id: number;
  bytes: number;
  name: string;
}

let nextId = 1;
const org = (name: string, bytes: number): Org => ({ id: nextId++, bytes, name });

const LIMITS = { orgBytes: 10_000, responseBytes: 10_000, responsesPerOrg: 256 };

describe('ReadCaches: parsed orgs bounded by bytes', () => {
  it('keeps orgs within the byte budget, evicting the least recently used first', () => {
    const caches = new ReadCaches<Org>(LIMITS);
    // orgBytes 10,000: seven eighths (8,750) for orgs as stored
    const a = org('a', 3000);
    const b = org('b', 3000);
    const c = org('c', 3000);
    caches.keepOrg('a', a);
    caches.keepOrg('b', b);
    expect(caches.org('a')).toBe(a); // a is now more recently used than b
    caches.keepOrg('c', c);
    expect(caches.org('b')).toBeUndefined();
    expect(caches.org('a')).toBe(a);
    expect(caches.org('c')).toBe(c);
    expect(caches.stats()).toMatchObject({ orgs: 2, orgBytes: 6000 });
  });

  it('bounds the number of orgs through their bytes: an org without documents still counts its overhead', () => {
    const caches = new ReadCaches<Org>(LIMITS);
    for (let i = 0; i < 100; i++) caches.keepOrg(`o${i}`, org(`o${i}`, orgBytes([])));
    expect(caches.stats().orgs).toBe(Math.floor(8_750 / ORG_OVERHEAD_BYTES));
    expect(caches.stats().orgBytes).toBeLessThanOrEqual(8_750);
    expect(caches.org('o0')).toBeUndefined();
  });

  it('does not keep an org larger than the whole budget, and drops what its key held', () => {
    const caches = new ReadCaches<Org>(LIMITS);
    caches.keepOrg('a', org('a', 100));
    caches.keepOrg('a', org('a-huge', 20_000));
    expect(caches.org('a')).toBeUndefined();
    expect(caches.stats()).toMatchObject({ orgs: 0, orgBytes: 0 });
  });

  it('counts an org at its documents’ UTF-8 bytes plus 128 each, parsed at twice the bytes', () => {
    expect(orgBytes(['{"a":1}', '{"é":1}'])).toBe(ORG_OVERHEAD_BYTES + 7 + 128 + 8 + 128);
    expect(orgBytes([])).toBe(ORG_OVERHEAD_BYTES);
    expect(parsedOrgBytes(['{"a":1}', '{"é":1}'])).toBe(ORG_OVERHEAD_BYTES + 2 * 7 + 128 + 2 * 8 + 128);
  });
});

describe('ReadCaches: rendered bodies bounded by bytes across orgs', () => {
  const text = (n: number) => 'x'.repeat(n);

  it('renders once per org version and key, with a strong ETag of the bytes', () => {
    const caches = new ReadCaches<Org>(LIMITS);
    const a = org('a', 10);
    caches.keepOrg('a', a);
    let builds = 0;
    const first = caches.render(a, 'k', () => (builds++, '{"x":1}'));
    const again = caches.render(a, 'k', () => (builds++, '{"x":2}'));
    expect(builds).toBe(1);
    expect(again).toBe(first);
    expect(first.body.toString()).toBe('{"x":1}');
    expect(first.etag).toMatch(/^"[A-Za-z0-9_-]{32}"$/);
  });

  it('holds at most the byte budget of bodies over all orgs, least recently used evicted first', () => {
    const caches = new ReadCaches<Org>({ ...LIMITS, responseBytes: 3000 });
    const a = org('a', 10);
    const b = org('b', 10);
    caches.keepOrg('a', a);
    caches.keepOrg('b', b);
    let builds = 0;
    const build = () => (builds++, text(900));
    caches.render(a, 'one', build);
    caches.render(b, 'two', build);
    caches.render(a, 'one', build); // a/one is now more recently used than b/two
    expect(builds).toBe(2);
    caches.render(b, 'three', build); // 3 × ~1 KiB > 3000: b/two goes
    expect(caches.stats().bodies).toBe(2);
    expect(caches.stats().bodyBytes).toBeLessThanOrEqual(3000);
    caches.render(a, 'one', build);
    expect(builds).toBe(3);
    caches.render(b, 'two', build);
    expect(builds).toBe(4);
  });

  it('counts a body at its bytes, its key and a small overhead', () => {
    const caches = new ReadCaches<Org>(LIMITS);
    const a = org('a', 10);
    caches.keepOrg('a', a);
    const rendered = caches.render(a, 'key', () => 'é'.repeat(100));
    expect(rendered.body.byteLength).toBe(200);
    expect(caches.stats().bodyBytes).toBe(renderedBytes(`${a.id}|key`, rendered));
    expect(renderedBytes('k', rendered)).toBe(200 + 1 + rendered.etag.length + 64);
  });

  it('serves but does not keep a body larger than the whole budget', () => {
    const caches = new ReadCaches<Org>({ ...LIMITS, responseBytes: 1000 });
    const a = org('a', 10);
    caches.keepOrg('a', a);
    let builds = 0;
    const body = caches.render(a, 'big', () => (builds++, text(5000)));
    expect(body.body.byteLength).toBe(5000);
    caches.render(a, 'big', () => (builds++, text(5000)));
    expect(builds).toBe(2);
    expect(caches.stats()).toMatchObject({ bodies: 0, bodyBytes: 0 });
  });

  it('keeps at most responsesPerOrg bodies per org version, its least recently used going first', () => {
    const caches = new ReadCaches<Org>({ ...LIMITS, responsesPerOrg: 2 });
    const a = org('a', 10);
    caches.keepOrg('a', a);
    const built: string[] = [];
    const build = (key: string) => () => (built.push(key), key);
    caches.render(a, 'k1', build('k1'));
    caches.render(a, 'k2', build('k2'));
    caches.render(a, 'k1', build('k1')); // k2 is now the least recently used
    caches.render(a, 'k3', build('k3'));
    expect(caches.stats().bodies).toBe(2);
    caches.render(a, 'k1', build('k1'));
    caches.render(a, 'k2', build('k2'));
    expect(built).toEqual(['k1', 'k2', 'k3', 'k2']);
  });

  it("drops an org version's bodies when the version is replaced or evicted", () => {
    const caches = new ReadCaches<Org>({ ...LIMITS, orgBytes: 100 });
    const v1 = org('a@1', 50);
    caches.keepOrg('a', v1);
    caches.render(v1, 'k1', () => text(100));
    caches.render(v1, 'k2', () => text(100));
    expect(caches.stats().bodies).toBe(2);
    const v2 = org('a@2', 50);
    caches.keepOrg('a', v2); // replaced: v1's bodies go
    expect(caches.stats().bodies).toBe(0);
    caches.render(v2, 'k1', () => text(100));
    expect(caches.stats().bodies).toBe(1);
    caches.keepOrg('b', org('b', 60)); // 50 + 60 > 100: v2 is evicted, with its body
    expect(caches.org('a')).toBeUndefined();
    expect(caches.stats()).toMatchObject({ orgs: 1, bodies: 0, bodyBytes: 0 });
  });

  it('serves but does not keep bodies of an org version that is not (or no longer) cached', () => {
    const caches = new ReadCaches<Org>(LIMITS);
    const loose = org('loose', 10);
    let builds = 0;
    caches.render(loose, 'k', () => (builds++, 'x'));
    caches.render(loose, 'k', () => (builds++, 'x'));
    expect(builds).toBe(2);
    expect(caches.stats().bodies).toBe(0);
  });

  it('stays within both budgets under many orgs and keys', () => {
    const caches = new ReadCaches<Org>({
      orgBytes: 50_000,
      responseBytes: 20_000,
      responsesPerOrg: 8,
    });
    for (let i = 0; i < 500; i++) {
      const o = org(`o${i % 70}`, 100 + (i % 13) * 50);
      caches.keepOrg(`o${i % 70}`, o);
      for (let k = 0; k < 12; k++) caches.render(o, `k${(i * 7 + k) % 20}`, () => text(50 + ((i + k) % 17) * 40));
      const stats = caches.stats();
      expect(stats.orgBytes).toBeLessThanOrEqual(50_000);
      expect(stats.bodyBytes).toBeLessThanOrEqual(20_000);
      expect(stats.bodies).toBeLessThanOrEqual(stats.orgs * 8);
    }
  });
});

describe('ReadCaches: parsed orgs', () => {
  it('parses an org version once while it is cached, and forgets the parsed form with the version', () => {
    const caches = new ReadCaches<Org>(LIMITS);
    const a = org('a', 100);
    caches.keepOrg('a', a);
    let parses = 0;
    const parse = () => (parses++, { value: { parsed: 'a' }, bytes: 200 });
    const first = caches.parsed(a, parse);
    expect(caches.parsed(a, parse)).toBe(first);
    expect(parses).toBe(1);
    expect(caches.stats()).toMatchObject({ parsed: 1, parsedBytes: 200 });
    caches.keepOrg('a', org('a2', 100)); // a newer version replaces it
    expect(caches.stats()).toMatchObject({ parsed: 0, parsedBytes: 0 });
  });

  it('keeps parsed forms within an eighth of the org budget, and none of an org version not cached', () => {
    const caches = new ReadCaches<Org>(LIMITS); // orgBytes 10,000: 8,750 for orgs, 1,250 parsed
    const orgs = Array.from({ length: 10 }, (_, i) => org(`o${i}`, 600));
    for (const o of orgs) caches.keepOrg(o.name, o);
    for (const o of orgs) caches.parsed(o, () => ({ value: o.name, bytes: 1000 }));
    expect(caches.stats().orgBytes).toBeLessThanOrEqual(8_750);
    expect(caches.stats().parsedBytes).toBeLessThanOrEqual(2_500);
    const loose = org('loose', 10);
    caches.parsed(loose, () => ({ value: 1, bytes: 10 }));
    let again = 0;
    caches.parsed(loose, () => (again++, { value: 1, bytes: 10 }));
    expect(again).toBe(1);
  });
});
