import type { Clock } from "../core/clock.js";
import { ValidationError } from "../core/errors.js";
import { nowSeconds } from "./encoding.js";
import { identityLimits } from "./limits.js";
import { isTenantId, tryParsePrincipal } from "./principal.js";

/** What a revocation kills (IDENTITY.md §9). */
export type RevocationTarget =
  | { readonly kind: "link"; readonly jti: string }
  | { readonly kind: "hash"; readonly hash: string }
  | { readonly kind: "key"; readonly kid: string }
  | { readonly kind: "principal"; readonly principal: string; readonly effectiveAt: number };

/** One entry of a tenant's append-only revocation table. */
export interface RevocationEntry {
  /** The tenant. */
  readonly tenant: string;
  /** The target. */
  readonly target: RevocationTarget;
  /** When the entry may be garbage-collected: the target's `exp` plus skew, in seconds. */
  readonly expiresAt: number;
}

/** How current a verifier's view of the revocation feed is. */
export interface RevocationFeedStatus {
  /** Position in the tenant's feed of the last entry applied. */
  readonly position: number;
  /** When the view was last known complete, in ms; `undefined` when never synced. */
  readonly syncedAtMs: number | undefined;
}

/** The read side verifiers use; synchronous, like the key directory. */
export interface RevocationReader {
  /**
   * @param tenant - the tenant
   * @param jti - a link's `jti`
   * @param hash - the link's hash
   * @returns whether the link is revoked by id or by hash
   */
  isLinkRevoked(tenant: string, jti: string, hash: string): boolean;
  /**
   * @param tenant - the tenant
   * @param kid - a key id
   * @returns whether everything the key signed is revoked
   */
  isKeyRevoked(tenant: string, kid: string): boolean;
  /**
   * @param tenant - the tenant
   * @param principal - an issuer
   * @returns the latest effective time of a revocation of the principal, in seconds: links it issued before then are dead
   */
  principalRevokedAt(tenant: string, principal: string): number | undefined;
  /**
   * @param tenant - the tenant
   * @returns the feed position and freshness
   */
  feed(tenant: string): RevocationFeedStatus;
}

/** The revocation list port: reads plus appending. Revocations are irreversible. */
export interface RevocationList extends RevocationReader {
  /**
   * Appends a revocation. It applies even when it arrives before its target.
   *
   * @param entry - the revocation
   * @returns the entry's feed position
   */
  revoke(entry: RevocationEntry): Promise<{ position: number }>;
}

interface TenantRevocations {
  position: number;
  syncedAtMs: number | undefined;
  readonly links: Map<string, number>;
  readonly keys: Map<string, number>;
  readonly principals: Map<string, { effectiveAt: number; expiresAt: number }>;
}

/** Options of {@link MemoryRevocationList}. */
export interface MemoryRevocationListOptions {
  /** Time, for freshness and garbage collection. */
  readonly clock: Clock;
  /**
   * `authoritative`: this list is the source of truth (embedded mode, tests) and is always fresh.
   * `replica`: a node's copy of the feed, fresh only as of its last {@link MemoryRevocationList.markSynced}.
   * @defaultValue "authoritative"
   */
  readonly mode?: "authoritative" | "replica";
}

/**
 * The in-memory {@link RevocationList}. Links are indexed by `jti` and by hash in one map (their
 * namespaces cannot collide: a hash is 43 characters and tagged).
 *
 * @example
 * ```ts
 * const revocations = new MemoryRevocationList({ clock })
 * await revocations.revoke({ tenant: "t_acme", target: { kind: "link", jti }, expiresAt: exp + 30 })
 * ```
 */
export class MemoryRevocationList implements RevocationList {
  readonly #clock: Clock;
  readonly #authoritative: boolean;
  readonly #tenants = new Map<string, TenantRevocations>();

  /** @param options - clock and mode */
  constructor(options: MemoryRevocationListOptions) {
    this.#clock = options.clock;
    this.#authoritative = (options.mode ?? "authoritative") === "authoritative";
  }

  isLinkRevoked(tenant: string, jti: string, hash: string): boolean {
    const entries = this.#tenants.get(tenant);
    return entries !== undefined && (entries.links.has(`jti:${jti}`) || entries.links.has(`h:${hash}`));
  }

  isKeyRevoked(tenant: string, kid: string): boolean {
    return this.#tenants.get(tenant)?.keys.has(kid) ?? false;
  }

  principalRevokedAt(tenant: string, principal: string): number | undefined {
    return this.#tenants.get(tenant)?.principals.get(principal)?.effectiveAt;
  }

  feed(tenant: string): RevocationFeedStatus {
    const entries = this.#tenants.get(tenant);
    const syncedAtMs = this.#authoritative ? this.#clock.now() : entries?.syncedAtMs;
    return { position: entries?.position ?? 0, syncedAtMs };
  }

  async revoke(entry: RevocationEntry): Promise<{ position: number }> {
    if (!isTenantId(entry.tenant) || !Number.isSafeInteger(entry.expiresAt))
      throw new ValidationError("ERR_VALIDATION", "bad revocation entry");
    const entries = this.#tenant(entry.tenant);
    const target = entry.target;
    if (target.kind === "link") entries.links.set(`jti:${target.jti}`, entry.expiresAt);
    else if (target.kind === "hash") entries.links.set(`h:${target.hash}`, entry.expiresAt);
    else if (target.kind === "key") entries.keys.set(target.kid, entry.expiresAt);
    else {
      if (tryParsePrincipal(target.principal)?.tenant !== entry.tenant)
        throw new ValidationError("ERR_VALIDATION", "principal of another tenant");
      const previous = entries.principals.get(target.principal);
      // Irreversible and monotone: a later effective time kills more links, never fewer.
      const effectiveAt = Math.max(previous?.effectiveAt ?? 0, target.effectiveAt);
      entries.principals.set(target.principal, { effectiveAt, expiresAt: Math.max(previous?.expiresAt ?? 0, entry.expiresAt) });
    }
    entries.position += 1;
    return { position: entries.position };
  }

  /**
   * Replica mode: records that the feed was read to its end at `atMs` (default now).
   *
   * @param tenant - the tenant
   * @param atMs - when the feed was known complete
   */
  markSynced(tenant: string, atMs: number = this.#clock.now()): void {
    this.#tenant(tenant).syncedAtMs = atMs;
  }

  /**
   * Drops entries whose targets have expired (their `expiresAt` is past, skew included).
   *
   * @returns how many entries were dropped
   */
  purgeExpired(): number {
    const horizon = nowSeconds(this.#clock) - identityLimits.clockSkewSeconds;
    let dropped = 0;
    for (const entries of this.#tenants.values()) {
      for (const map of [entries.links, entries.keys]) {
        for (const [key, expiresAt] of map) if (expiresAt < horizon && map.delete(key)) dropped++;
      }
      for (const [key, value] of entries.principals) if (value.expiresAt < horizon && entries.principals.delete(key)) dropped++;
    }
    return dropped;
  }

  #tenant(tenant: string): TenantRevocations {
    let entries = this.#tenants.get(tenant);
    if (entries === undefined) {
      entries = { position: 0, syncedAtMs: undefined, links: new Map(), keys: new Map(), principals: new Map() };
      this.#tenants.set(tenant, entries);
    }
    return entries;
  }
}
