import { ApiKeyStore } from '@psp/api-keys';
import { Settings } from '@psp/config';
import { withDb } from '../context';
import { EXIT, say, sayJson } from '../output';

export async function createKey(
  settings: Settings,
  options: { org: string; scopes: string[]; env: 'live' | 'test' },
): Promise<number> {
  return withDb(settings, async (db) => {
    const { key, record } = await new ApiKeyStore(db).create(options.org, options.scopes, options.env);
    say(
      `created key ${record.id} for org ${record.orgId} (${record.environment}, scopes ${record.scopes.join(',')}); it is shown once, now:`,
    );
    say(key); // alone on the last line (CONTRACT 1.1)
    return EXIT.ok;
  });
}

/** Lists keys: ids, orgs, scopes, dates; never a key or a key hash (the store does not return them). */
export async function listKeys(settings: Settings, options: { org?: string; json?: boolean }): Promise<number> {
  return withDb(settings, async (db) => {
    const list = await new ApiKeyStore(db).list(options.org);
    if (options.json) {
      sayJson(
        list.map((k) => ({
          id: k.id,
          org_id: k.orgId,
          environment: k.environment,
          scopes: k.scopes,
          status: k.revokedAt ? 'revoked' : 'active',
          created_at: k.createdAt.toISOString(),
          revoked_at: k.revokedAt ? k.revokedAt.toISOString() : null,
        })),
      );
      return EXIT.ok;
    }
    say(`${list.length} key(s)`);
    for (const k of list) {
      say(
        `${k.id}\torg=${k.orgId}\t${k.environment}\tscopes=${k.scopes.join(',')}\tcreated=${k.createdAt.toISOString()}\t${k.revokedAt ? `revoked=${k.revokedAt.toISOString()}` : 'active'}`,
      );
    }
    return EXIT.ok;
  });
}

export async function revokeKey(settings: Settings, id: string): Promise<number> {
  return withDb(settings, async (db) => {
    const record = await new ApiKeyStore(db).revoke(id);
    if (!record) {
      say(`no key with id ${id}`);
      return EXIT.failed;
    }
    say(
      `revoked key ${record.id} of org ${record.orgId}; every API instance refuses it within ${settings.apiKeyCacheMs / 1000} s`,
    );
    return EXIT.ok;
  });
}
