import { DataSource } from 'typeorm';
import { hashApiKey } from '@psp/api-keys';
import { dropIsolated, isolatedEnv, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { runOps } from '../support/processes';

/** `npm run ops -- keys …` as an operator runs it: a real process against the run's database. */
describe('the keys command line', () => {
  const env = isolatedEnv('opskeys');
  const settings = isolatedSettings('unused', env);
  let db: DataSource;

  const ops = (...args: string[]) => runOps(env, ...args);

  beforeAll(async () => {
    db = await openDatabase(settings);
  });

  afterAll(async () => {
    await db?.destroy();
    await dropIsolated(settings);
  });

  it('creates a key shown once on the last line, lists without it, and revokes it', async () => {
    const created = await ops('keys', 'create', '--org', 'org_cli', '--env', 'test');
    const lines = created.stdout.trim().split('\n');
    const key = lines[lines.length - 1];
    expect(key).toMatch(/^pfk_test_[A-Za-z0-9_-]{32}$/);
    const stored: { org_id: string; key_hash: Buffer; scopes: string[] }[] = await db.query(
      `SELECT org_id, key_hash, scopes FROM api_key`,
    );
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ org_id: 'org_cli', scopes: ['connections:read'] });
    expect(stored[0].key_hash.equals(hashApiKey(key))).toBe(true);
    const id = /created key (key_[A-Za-z0-9_-]+)/.exec(created.stdout)![1];

    const listed = await ops('keys', 'list');
    expect(listed.stdout).toContain(id);
    expect(listed.stdout).toContain('active');
    expect(listed.stdout).not.toContain(key);
    expect(listed.stdout).not.toContain(hashApiKey(key).toString('hex'));

    const json = JSON.parse((await ops('keys', 'list', '--json')).stdout);
    expect(json).toEqual([
      {
        id,
        org_id: 'org_cli',
        environment: 'test',
        scopes: ['connections:read'],
        status: 'active',
        created_at: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
        revoked_at: null,
      },
    ]);

    const revoked = await ops('keys', 'revoke', id);
    expect(revoked.stdout).toContain(`revoked key ${id}`);
    expect((await ops('keys', 'list', '--org', 'org_cli')).stdout).toContain('revoked=');
  });

  it('refuses an unknown scope with one clear line (a usage error: exit 2)', async () => {
    await expect(ops('keys', 'create', '--org', 'org_cli', '--scopes', 'connections:write')).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('unknown scope(s): connections:write'),
    });
  });

  it('says when there is no such key to revoke (exit 1)', async () => {
    await expect(ops('keys', 'revoke', 'key_nosuch')).rejects.toMatchObject({
      code: 1,
      stdout: expect.stringContaining('no key with id key_nosuch'),
    });
  });
});

/** `--help` everywhere, and commander's usage errors as exit code 2 (README "Ops"). */
describe('the ops command line: help and usage errors', () => {
  // No servers needed: help and usage errors never read the settings or connect anywhere.
  const env = { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', KAFKA_BROKERS: '127.0.0.1:1' };
  const ops = (...args: string[]) => runOps(env, ...args);

  it.each([
    [[], 'npm run ops -- [options] [command]'],
    [['--help'], 'npm run ops -- [options] [command]'],
    [['keys', '--help'], 'npm run ops -- keys [options] [command]'],
    [['keys', 'create', '--help'], 'npm run ops -- keys create [options]'],
    [['keys', 'list', '--help'], 'npm run ops -- keys list [options]'],
    [['keys', 'revoke', '--help'], 'npm run ops -- keys revoke [options] <key-id>'],
    [['replay', '--help'], 'npm run ops -- replay [options]'],
    [['lag', '--help'], 'npm run ops -- lag [options]'],
    [['dlq', '--help'], 'npm run ops -- dlq [options] [command]'],
    [['dlq', 'redrive', '--help'], 'npm run ops -- dlq redrive [options]'],
    [['migrate', '--help'], 'npm run ops -- migrate [options]'],
    [['help', 'dlq'], 'npm run ops -- dlq [options] [command]'],
  ])('ops %j prints its usage and exits 0', async (args, usage) => {
    const { stdout } = await ops(...args);
    expect(stdout).toContain(`Usage: ${usage}`);
    expect(stdout).toContain('--help');
  });

  it('lists the exit codes in the top-level help', async () => {
    const { stdout } = await ops('--help');
    expect(stdout).toMatch(/Exit codes:\n\s+0 .*\n\s+1 .*\n\s+2 +usage error/);
  });

  it.each([
    [['keys', 'list', '--bogus'], "unknown option '--bogus'"],
    [['dlq', 'redrive', '--bogus'], "unknown option '--bogus'"],
    [['nosuch'], "unknown command 'nosuch'"],
    [['keys'], 'Usage: npm run ops -- keys'],
    [['keys', 'create'], "required option '--org <org>' not specified"],
    [['keys', 'create', '--org', 'o', '--env', 'prod'], "argument 'prod' is invalid"],
    [['keys', 'revoke'], "missing required argument 'key-id'"],
    [['lag', 'extra'], 'too many arguments'],
    [['dlq', '--since', 'yesterday'], "argument 'yesterday' is invalid"],
    [['dlq', '--limit', '0'], '--limit must be a positive integer'],
    [['dlq', 'redrive', '--since', 'yesterday'], "argument 'yesterday' is invalid"],
    [['replay', '--batch', 'many'], '--batch must be a positive integer'],
  ])('ops %j is a usage error: exit 2 and a message on stderr', async (args, message) => {
    await expect(ops(...args)).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining(message) });
  });

  it('refuses invalid settings with exit 2, naming the variable', async () => {
    await expect(runOps({ ...env, TOPIC_PARTITIONS: 'many' }, 'lag')).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('TOPIC_PARTITIONS'),
    });
  });
});
