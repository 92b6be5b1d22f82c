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

    const revoked = await ops('keys', 'revoke', id);
    expect(revoked.stdout).toContain(`revoked key ${id}`);
    expect((await ops('keys', 'list', '--org', 'org_cli')).stdout).toContain('revoked=');
  });

  it('refuses an unknown scope with one clear line', async () => {
    await expect(ops('keys', 'create', '--org', 'org_cli', '--scopes', 'connections:write')).rejects.toMatchObject({
      stderr: expect.stringContaining('unknown scope(s): connections:write'),
    });
  });
});
