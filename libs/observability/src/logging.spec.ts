import pino from 'pino';
import { pinoLevel, pinoOptions, REDACTED, requestIdFrom } from './logging';

/** A pino logger with the service's options, writing its lines into `lines`. */
function capture(level: 'error' | 'warn' | 'log' | 'debug' = 'debug'): {
  log: pino.Logger;
  lines: () => Record<string, unknown>[];
} {
  const out: string[] = [];
  const log = pino(pinoOptions('test', { logLevel: level, logFormat: 'json' }), {
    write: (l: string) => void out.push(l),
  });
  return { log, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('request ids', () => {
  it('honours a sane incoming X-Request-Id: 1-128 of A-Z a-z 0-9 . _ : -', () => {
    for (const id of ['a', 'abc-123', 'req.1:2_3-x', 'Z'.repeat(128), '0f8fad5b-d9cb-469f-a165-70867728950e'])
      expect(requestIdFrom(id)).toBe(id);
  });

  it('generates a UUID for a missing, repeated, empty, too long or unsafe one', () => {
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    for (const bad of [undefined, '', 'x'.repeat(129), 'has space', 'new\nline', 'quo"te', '{json}', 'é', ['a', 'b']]) {
      expect(requestIdFrom(bad)).toMatch(uuid);
    }
    expect(requestIdFrom(undefined)).not.toBe(requestIdFrom(undefined));
  });
});

describe('log lines', () => {
  it('maps LOG_LEVEL to pino: log is info', () => {
    expect(['error', 'warn', 'log', 'debug'].map((l) => pinoLevel(l as 'log'))).toEqual([
      'error',
      'warn',
      'info',
      'debug',
    ]);
    const { log, lines } = capture('warn');
    log.info('hidden');
    log.debug('hidden');
    log.warn('shown');
    expect(lines().map((l) => l.msg)).toEqual(['shown']);
  });

  it('are JSON objects with the level by name, an ISO time and the process', () => {
    const { log, lines } = capture();
    log.info({ context: 'Test' }, 'hello');
    const [line] = lines();
    expect(line).toMatchObject({ level: 'info', process: 'test', context: 'Test', msg: 'hello' });
    expect(new Date(line.time as string).toISOString()).toBe(line.time);
  });

  it('redact the key header and anything credential-like, at any of the first three levels', () => {
    const { log, lines } = capture();
    log.info(
      {
        req: {
          headers: { 'x-reevit-key': 'pfk_test_k', authorization: 'Bearer t', cookie: 'c=1', 'x-org-id': 'org_1' },
        },
        credentials: { secret_key: 's' },
        event: { data: { credentials: { api_secret: 's' }, password: 'p' }, token: 't', key_hash: 'h' },
        secret: 's',
        'x-reevit-key': 'k',
      },
      'request',
    );
    const [line] = lines();
    const req = line.req as { headers: Record<string, string> };
    expect(req.headers).toEqual({
      'x-reevit-key': REDACTED,
      authorization: REDACTED,
      cookie: REDACTED,
      'x-org-id': 'org_1',
    });
    expect(line.credentials).toBe(REDACTED);
    expect(line.event).toEqual({
      data: { credentials: REDACTED, password: REDACTED },
      token: REDACTED,
      key_hash: REDACTED,
    });
    expect(line.secret).toBe(REDACTED);
    expect(line['x-reevit-key']).toBe(REDACTED);
  });

  it('replace anything shaped like an API key in a message', () => {
    const { log, lines } = capture();
    log.warn('key pfk_live_AbCdEfGhIjKlMnOpQrStUvWxYz012345 and pfk_test_abcdefghijklmnopqrstuvwx refused');
    expect(lines()[0].msg).toBe(`key pfk_live_${REDACTED} and pfk_test_${REDACTED} refused`);
  });
});
