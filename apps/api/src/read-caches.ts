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

/**
 * Bytes a parsed org is counted at: each document's UTF-8 bytes twice (the document string and the
 * parsed view made from it take about as much each: measured 2.2× for 800-byte documents, maps
 * included) plus 128 per document.
 */
export function orgBytes(documents: Iterable<string>): number {
  let bytes = 0;
  for (const document of documents) bytes += 2 * Buffer.byteLength(document, 'utf8') + 128;
  return bytes;
}

/** Bytes a rendered body is counted at: the body, its key and a small per-entry overhead. */
export function renderedBytes(key: string, rendered: RenderedBody): number {
  return rendered.body.byteLength + key.length + rendered.etag.length + 64;
}

export function render(text: string): RenderedBody {
  const body = Buffer.from(text, 'utf8');
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"` };
}

export interface ReadCacheLimits {
  /** Byte budget of the parsed orgs (API_ORG_CACHE_BYTES). */
  orgBytes: number;
  /** At most this many parsed orgs, whatever they weigh. */
  orgEntries: number;
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
 * The API's in-memory read caches, both bounded by bytes and evicting the least recently used first:
 * the parsed orgs (each version of an org once), and their rendered response bodies, filed under the
 * org version they were made from. When an org version leaves the org cache (evicted, or replaced by
 * a newer version), its bodies go with it. An org or a body larger than its whole budget is served
 * but not kept.
 */
export class ReadCaches<O extends CachedOrg> {
  private readonly orgs: LRUCache<string, O>;
  private readonly bodies: LRUCache<string, StoredBody>;
  /** Per org version in the org cache: the keys of its bodies, least recently used first. */
  private readonly bodyKeys = new Map<number, Set<string>>();

  constructor(private readonly limits: ReadCacheLimits) {
    this.bodies = new LRUCache<string, StoredBody>({
      maxSize: limits.responseBytes,
      sizeCalculation: (stored, key) => renderedBytes(key, stored.rendered),
      dispose: (stored, key) => this.bodyKeys.get(stored.owner)?.delete(key),
    });
    this.orgs = new LRUCache<string, O>({
      max: limits.orgEntries,
      maxSize: limits.orgBytes,
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

  /** Bytes and entries held, for tests and ops. */
  stats(): { orgs: number; orgBytes: number; bodies: number; bodyBytes: number } {
    return {
      orgs: this.orgs.size,
      orgBytes: this.orgs.calculatedSize,
      bodies: this.bodies.size,
      bodyBytes: this.bodies.calculatedSize,
    };
  }

  private forget(orgId: number): void {
    const keys = this.bodyKeys.get(orgId);
    if (!keys) return;
    this.bodyKeys.delete(orgId);
    for (const key of [...keys]) this.bodies.delete(key);
  }
}
