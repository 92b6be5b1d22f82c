import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

export const API_KEY_ENVIRONMENTS = ['live', 'test'] as const;
export type ApiKeyEnvironment = (typeof API_KEY_ENVIRONMENTS)[number];

/** Scopes a key can carry. `connections:read` is what every /v1 route needs. */
export const KNOWN_SCOPES = ['connections:read'] as const;
export const READ_SCOPE = 'connections:read';

/** `pfk_live_` or `pfk_test_` then at least 24 URL-safe characters (we issue 32: 24 random bytes). */
const KEY_FORMAT = /^pfk_(live|test)_[A-Za-z0-9_-]{24,256}$/;
const ORG_ID_FORMAT = /^[A-Za-z0-9_-]{1,64}$/;

export function isWellFormedApiKey(key: string): boolean {
  return key.length <= 265 && KEY_FORMAT.test(key);
}

export function isWellFormedOrgId(orgId: string): boolean {
  return ORG_ID_FORMAT.test(orgId);
}

/** A new key: 24 random bytes, base64url (32 characters), behind the environment's prefix. */
export function generateApiKey(environment: ApiKeyEnvironment): string {
  return `pfk_${environment}_${randomBytes(24).toString('base64url')}`;
}

/**
 * The stored form of a key: SHA-256 of the whole key. Keys carry 192 random bits, so a fast hash is
 * enough (no dictionary to guess from); the key itself is never stored.
 */
export function hashApiKey(key: string): Buffer {
  return hash('sha256', key, 'buffer');
}

/**
 * hashApiKey's bytes in base64, made in one call (what the API files its key lookups under: no
 * Buffer made per request). `Buffer.from(text, 'base64')` gives hashApiKey's bytes back.
 */
export function hashApiKeyBase64(key: string): string {
  return hash('sha256', key, 'base64');
}

/** Constant-time comparison of two key hashes. */
export function sameKeyHash(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A public, non-secret id for a key, used to list and revoke it. */
export function generateKeyId(): string {
  return `key_${randomBytes(9).toString('base64url')}`;
}
