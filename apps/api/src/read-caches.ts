import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';

/** A response body ready to send (bytes made once: writing a large string per request costs more), with its strong ETag. */
export interface RenderedBody {
  body: Buffer;
  etag: string;
}

/** What the caches need of an org's parsed read model: an identity and what it weighs. */
export interface CachedOrg {
  /** Unique per parsed version of an org (a new version is a new id): its bodies are filed under it. */
  readonly id: number;
  /** Bytes it is counted at against the org budget. */
  readonly bytes: number;
}

/** What an org entry costs whatever its documents (the entry, its map, its cache keys): counted per org. */
export const ORG_OVERHEAD_BYTES = 512;

/**
 * Bytes an org as stored is counted at: each document's UTF-8 bytes (held as read, one string
 * each) plus 128 per document, plus ORG_OVERHEAD_BYTES. With that overhead counted, the byte budget
 * also bounds how many orgs are held (an org without documents is not free): no count bound.
 */
export function orgBytes(documents: Iterable<string>): number {
  let bytes = ORG_OVERHEAD_BYTES;
  for (const document of documents) bytes += Buffer.byteLength(document, 'utf8') + 128;
  return bytes;
}

/**
 * Bytes a parsed org is counted at: each document's UTF-8 bytes twice (the parsed view, window and
 * the per-minute documents made from it took about as much again as the text: measured 2.2× for
 * 800-byte documents, maps included) plus 128 per document. The per-minute documents are no longer
 * kept (issue 20), so this now counts more than a parsed org takes: fewer are kept than would fit,
 * never more (to re-measure with `npm run bench:memory`).
 */
export function parsedOrgBytes(documents: Iterable<string>): number {
  let bytes = ORG_OVERHEAD_BYTES;
  for (const document of documents) bytes += 2 * Buffer.byteLength(document, 'utf8') + 128;
  return bytes;
}

/** Bytes a rendered body is counted at: the body, its key and a small per-entry overhead. */
export function renderedBytes(key: string, rendered: RenderedBody): number {
  return rendered.body.byteLength + key.length + rendered.etag.length + 64;
}

export function render(text: string): RenderedBody {
  // Its own allocation, not a slice of Buffer's shared 8 KiB pool: a kept body of a few KiB would
  // otherwise hold a whole pool chunk (measured: 20,000 bodies of 3 KiB took 79 MB instead of 60).
  const body = Buffer.allocUnsafeSlow(Buffer.byteLength(text, 'utf8'));
  body.write(text, 'utf8');
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"` };
}

export interface ReadCacheLimits {
  /**
   * Byte budget of the orgs (API_ORG_CACHE_BYTES): seven eighths for the orgs as stored (what every
   * request needs), one eighth for their parsed forms (what rendering a body needs).
   */
  orgBytes: number;
  /** Byte budget of the rendered bodies of all orgs together (API_RESPONSE_CACHE_BYTES). */
  responseBytes: number;
  /** At most this many rendered bodies per org version, so one org's queries cannot flush every other org's. */
  responsesPerOrg: number;
}

interface StoredBody {
  owner: number;
  rendered: RenderedBody;
}

/**
 * The API's in-memory read caches, all bounded by bytes and evicting the least recently used first:
 * the orgs as stored (each version of an org once), their parsed forms, and their rendered response
 * bodies, filed under the org version they were made from. When an org version leaves the org cache
 * (evicted, or replaced by a newer version), its parsed form and bodies go with it. An org or a body larger than its whole budget is served
 * but not kept.
 */
export class ReadCaches<O extends CachedOrg> {
  private readonly orgs: LRUCache<string, O>;
  /** Parsed forms, by org version id. */
  private readonly parsedOrgs: LRUCache<number, { value: unknown; bytes: number }>;
  private readonly bodies: LRUCache<string, StoredBody>;
  /** Per org version in the org cache: the keys of its bodies, least recently used first. */
  private readonly bodyKeys = new Map<number, Set<string>>();

  constructor(private readonly limits: ReadCacheLimits) {
    this.bodies = new LRUCache<string, StoredBody>({
      maxSize: limits.responseBytes,
      sizeCalculation: (stored, key) => renderedBytes(key, stored.rendered),
      dispose: (stored, key) => this.bodyKeys.get(stored.owner)?.delete(key),
    });
    this.parsedOrgs = new LRUCache<number, { value: unknown; bytes: number }>({
      maxSize: Math.max(1, Math.floor(limits.orgBytes / 8)),
      sizeCalculation: (parsed) => Math.max(1, parsed.bytes),
    });
    this.orgs = new LRUCache<string, O>({
      maxSize: Math.max(1, limits.orgBytes - Math.floor(limits.orgBytes / 8)),
      sizeCalculation: (org) => Math.max(1, org.bytes),
      dispose: (org) => this.forget(org.id),
    });
  }

  /** The org cached under `key` (now the most recently used), if any. */
  org(key: string): O | undefined {
    return this.orgs.get(key);
  }

  /** Keeps `org` under `key` (replacing, and forgetting the bodies of, what was there) if it fits the budget. */
  keepOrg(key: string, org: O): void {
    this.orgs.set(key, org);
    if (this.orgs.peek(key) === org) {
      if (!this.bodyKeys.has(org.id)) this.bodyKeys.set(org.id, new Set());
    }
  }

  /**
   * The body `build` makes for `org` under `key`: from the cache when it holds it, else built, and
   * kept when the org version is still cached.
   */
  render(org: O, key: string, build: () => string): RenderedBody {
    const keys = this.bodyKeys.get(org.id);
    const bodyKey = `${org.id}|${key}`;
    if (keys) {
      const hit = this.bodies.get(bodyKey);
      if (hit) {
        keys.delete(bodyKey);
        keys.add(bodyKey);
        return hit.rendered;
      }
    }
    const rendered = render(build());
    if (keys) {
      if (keys.size >= this.limits.responsesPerOrg) {
        const oldest = keys.values().next().value;
        if (oldest !== undefined) this.bodies.delete(oldest);
      }
      this.bodies.set(bodyKey, { owner: org.id, rendered });
      if (this.bodies.has(bodyKey)) keys.add(bodyKey);
    }
    return rendered;
  }

  /**
   * The parsed form of `org`: from the cache when it holds it, else built, and kept when the org
   * version is still cached (its budget: an eighth of the org budget, least recently used first).
   */
  parsed<P>(org: O, build: () => { value: P; bytes: number }): P {
    const hit = this.parsedOrgs.get(org.id);
    if (hit) return hit.value as P;
    const made = build();
    if (this.bodyKeys.has(org.id)) this.parsedOrgs.set(org.id, made);
    return made.value;
  }

  /** Bytes and entries held, for tests and ops. */
  stats(): {
    orgs: number;
    orgBytes: number;
    parsed: number;
    parsedBytes: number;
    bodies: number;
    bodyBytes: number;
  } {
    return {
      orgs: this.orgs.size,
      orgBytes: this.orgs.calculatedSize,
      parsed: this.parsedOrgs.size,
      parsedBytes: this.parsedOrgs.calculatedSize,
      bodies: this.bodies.size,
      bodyBytes: this.bodies.calculatedSize,
    };
  }

  private forget(orgId: number): void {
    this.parsedOrgs.delete(orgId);
    const keys = this.bodyKeys.get(orgId);
    if (!keys) return;
    this.bodyKeys.delete(orgId);
    for (const key of [...keys]) this.bodies.delete(key);
  }
}
