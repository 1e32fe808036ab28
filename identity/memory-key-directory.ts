import type { CryptoKey } from "./keys.js";
import { assert } from "../core/assert.js";
import type { Clock } from "../core/clock.js";
import { AuthorizationError, IdentityError } from "./errors.js";
import { nowSeconds } from "./encoding.js";
import { parseIdentityClaims } from "./identity-token.js";
import type { IdentityClaims } from "./identity-token.js";
import type { AuthorityAnchor, DirectoryChange, KeyDirectory, KeyRecord } from "./key-directory.js";
import { checkPublicJwk, importPublicJwk, jwkThumbprint } from "./keys.js";
import type { PublicJwk } from "./keys.js";
import { identityLimits } from "./limits.js";
import { parsePrincipal } from "./principal.js";
import { decodeToken, gateToken, verifySignature } from "./token-codec.js";

interface TenantDirectory {
  epoch: number;
  /** Bumped only by the changes that can withdraw trust (see `KeyResolver.statusEpoch`). */
  statusEpoch: number;
  readonly keys: Map<string, KeyRecord>;
  /** Highest lease epoch seen per agent principal, so a zombie cannot re-register. */
  readonly agentEpochs: Map<string, number>;
}

/** Options of {@link MemoryKeyDirectory}. */
export interface MemoryKeyDirectoryOptions {
  /** Time for validating identity tokens; the store-corrected clock in production. */
  readonly clock: Clock;
}

/**
 * The in-memory {@link KeyDirectory}: one map per tenant, so no lookup ever crosses tenants and
 * the same `kid` in two tenants is two unrelated entries. For tests, embedded single-process mode,
 * and as the per-node cache a Store-backed directory refreshes.
 *
 * @example
 * ```ts
 * const directory = new MemoryKeyDirectory({ clock })
 * await directory.addAuthority(authority.anchor())
 * await directory.registerIdentity(certificate.token, signer.publicJwk)
 * ```
 */
export class MemoryKeyDirectory implements KeyDirectory {
  readonly #clock: Clock;
  readonly #tenants = new Map<string, TenantDirectory>();
  readonly #listeners = new Set<(change: DirectoryChange) => void>();

  /** @param options - the clock */
  constructor(options: MemoryKeyDirectoryOptions) {
    this.#clock = options.clock;
  }

  get(tenant: string, kid: string): KeyRecord | undefined {
    return this.#tenants.get(tenant)?.keys.get(kid);
  }

  epoch(tenant: string): number {
    return this.#tenants.get(tenant)?.epoch ?? 0;
  }

  statusEpoch(tenant: string): number {
    return this.#tenants.get(tenant)?.statusEpoch ?? 0;
  }

  async addAuthority(anchor: AuthorityAnchor): Promise<KeyRecord> {
    const principal = parsePrincipal(anchor.principal);
    if (principal.kind !== "authority" || principal.tenant !== anchor.tenant) {
      throw new IdentityError("ERR_IDENTITY_TOKEN_INVALID", "an anchor is an authority principal of its own tenant");
    }
    const publicJwk = checkPublicJwk(anchor.publicJwk);
    const kid = await jwkThumbprint(publicJwk);
    const record: KeyRecord = {
      kid,
      tenant: anchor.tenant,
      principal: anchor.principal,
      publicJwk,
      publicKey: await importPublicJwk(publicJwk),
      validFrom: anchor.validFrom,
      validTo: anchor.validTo,
      status: "active",
      identityJti: undefined,
      leaseEpoch: undefined,
      node: undefined,
    };
    const tenant = this.#tenant(anchor.tenant);
    this.#assertNoConflict(tenant, record);
    // An anchor added again (every node adds its tenants' anchors when it starts) keeps its record:
    // re-adding must never bring a retired or compromised authority key back to life.
    const existing = tenant.keys.get(kid);
    if (existing !== undefined) return existing;
    tenant.keys.set(kid, record);
    this.#changed(anchor.tenant, "anchor", kid);
    return record;
  }

  async registerIdentity(token: string, publicJwk: PublicJwk): Promise<KeyRecord> {
    const { claims, kid, key } = await this.#verifyIdentityToken(token, publicJwk);
    const tenant = this.#tenant(claims.tenant);
    const existing = tenant.keys.get(kid);
    if (existing !== undefined) return this.#renew(tenant, existing, claims);
    const leaseEpoch = claims.agent?.epoch;
    if (leaseEpoch !== undefined) {
      const highest = tenant.agentEpochs.get(claims.sub) ?? -1;
      if (leaseEpoch < highest) {
        throw new IdentityError("ERR_IDENTITY_STALE_EPOCH", `${claims.sub}: lease epoch ${leaseEpoch} is older than ${highest}`, {
          details: { principal: claims.sub, leaseEpoch, highest },
        });
      }
      tenant.agentEpochs.set(claims.sub, leaseEpoch);
      // The new lease holder's key replaces every earlier key of the actor: a zombie node that lost
      // the lease can no longer invoke, while links its key signed earlier still verify.
      for (const record of tenant.keys.values()) {
        if (record.principal === claims.sub && record.status === "active") {
          this.#replace(tenant, { ...record, status: "retired", validTo: Math.min(record.validTo, claims.iat) }, "retired");
        }
      }
    }
    const record: KeyRecord = {
      kid,
      tenant: claims.tenant,
      principal: claims.sub,
      publicJwk: checkPublicJwk(publicJwk),
      publicKey: key,
      validFrom: claims.nbf,
      validTo: claims.exp,
      status: "active",
      identityJti: claims.jti,
      leaseEpoch,
      node: claims.agent?.node,
    };
    this.#replace(tenant, record, "certified");
    return record;
  }

  async retire(tenant: string, kid: string, atSeconds: number): Promise<void> {
    const entries = this.#tenant(tenant);
    const record = this.#require(entries, kid);
    if (record.status === "compromised") return;
    // Retiring again at a later time changes nothing: no change, so no cached verification is dropped.
    if (record.status === "retired" && record.validTo <= atSeconds) return;
    this.#replace(entries, { ...record, status: "retired", validTo: Math.min(record.validTo, atSeconds) }, "retired");
  }

  async markCompromised(tenant: string, kid: string): Promise<void> {
    const entries = this.#tenant(tenant);
    const record = this.#require(entries, kid);
    if (record.status === "compromised") return;
    this.#replace(entries, { ...record, status: "compromised" }, "compromised");
  }

  onChange(listener: (change: DirectoryChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Drops keys whose validity ended more than the maximum delegation lifetime ago: nothing they
   * signed can still be valid (IDENTITY.md §10).
   *
   * @returns how many keys were dropped
   */
  purgeExpired(): number {
    const horizon = nowSeconds(this.#clock) - identityLimits.linkTtlSecondsMax - identityLimits.clockSkewSeconds;
    let dropped = 0;
    for (const tenant of this.#tenants.values()) {
      for (const [kid, record] of tenant.keys) {
        if (record.validTo < horizon) {
          tenant.keys.delete(kid);
          dropped++;
        }
      }
    }
    return dropped;
  }

  async #verifyIdentityToken(token: string, publicJwk: PublicJwk): Promise<{ claims: IdentityClaims; kid: string; key: CryptoKey }> {
    try {
      gateToken(token, "identity token");
      const decoded = decodeToken(token, "tessera-id+jwt", "identity token");
      const claims = parseIdentityClaims(decoded.payload);
      const anchor = this.get(claims.tenant, decoded.kid);
      if (anchor === undefined || anchor.principal !== claims.iss || anchor.identityJti !== undefined) {
        throw new IdentityError("ERR_IDENTITY_TOKEN_INVALID", `identity token not signed by an authority anchor of ${claims.tenant}`);
      }
      if (anchor.status === "compromised" || claims.iat < anchor.validFrom || claims.iat > anchor.validTo) {
        throw new IdentityError("ERR_IDENTITY_TOKEN_INVALID", "the authority key was not valid when the identity token was issued");
      }
      const kid = await jwkThumbprint(checkPublicJwk(publicJwk));
      if (kid !== claims.cnf.jkt)
        throw new IdentityError("ERR_IDENTITY_TOKEN_INVALID", "cnf.jkt is not the thumbprint of the presented key");
      const maxTokenAgeSeconds = claims.exp - claims.iat;
      await verifySignature(decoded, {
        key: anchor.publicKey,
        now: new Date(this.#clock.now()),
        maxTokenAgeSeconds,
        what: "identity token",
        step: 9,
      });
      return { claims, kid, key: await importPublicJwk(publicJwk) };
    } catch (error) {
      if (error instanceof AuthorizationError) {
        throw new IdentityError("ERR_IDENTITY_TOKEN_INVALID", `identity token refused: ${error.message}`, {
          cause: error,
          details: { reason: error.reason },
        });
      }
      throw error;
    }
  }

  #renew(tenant: TenantDirectory, existing: KeyRecord, claims: IdentityClaims): KeyRecord {
    if (existing.principal !== claims.sub) {
      throw new IdentityError("ERR_IDENTITY_KID_CONFLICT", `kid ${existing.kid} is already certified for another principal`, {
        details: { kid: existing.kid },
      });
    }
    if (existing.status !== "active" || existing.leaseEpoch !== claims.agent?.epoch) {
      throw new IdentityError(
        "ERR_IDENTITY_STALE_EPOCH",
        `kid ${existing.kid} is ${existing.status} or of another lease epoch; mint a new key`,
      );
    }
    const renewed: KeyRecord = { ...existing, validTo: Math.max(existing.validTo, claims.exp), identityJti: claims.jti };
    this.#replace(tenant, renewed, "renewed");
    return renewed;
  }

  #assertNoConflict(tenant: TenantDirectory, record: KeyRecord): void {
    const existing = tenant.keys.get(record.kid);
    if (existing !== undefined && existing.principal !== record.principal) {
      throw new IdentityError("ERR_IDENTITY_KID_CONFLICT", `kid ${record.kid} is already certified for another principal`, {
        details: { kid: record.kid },
      });
    }
  }

  #require(tenant: TenantDirectory, kid: string): KeyRecord {
    const record = tenant.keys.get(kid);
    if (record === undefined) throw new IdentityError("ERR_IDENTITY_UNKNOWN_KEY", `no key ${kid} in this tenant`, { details: { kid } });
    return record;
  }

  #replace(tenant: TenantDirectory, record: KeyRecord, kind: DirectoryChange["kind"]): void {
    tenant.keys.set(record.kid, record);
    this.#changed(record.tenant, kind, record.kid);
  }

  #tenant(tenant: string): TenantDirectory {
    let entries = this.#tenants.get(tenant);
    if (entries === undefined) {
      entries = { epoch: 0, statusEpoch: 0, keys: new Map(), agentEpochs: new Map() };
      this.#tenants.set(tenant, entries);
    }
    return entries;
  }

  #changed(tenant: string, kind: DirectoryChange["kind"], kid: string): void {
    const entries = this.#tenants.get(tenant);
    assert(entries !== undefined, "a change is made to an existing tenant directory");
    entries.epoch += 1;
    // A new key or a longer validity cannot fail a link that verified; anything else may.
    if (kind !== "certified" && kind !== "renewed") entries.statusEpoch += 1;
    const change: DirectoryChange = { tenant, epoch: entries.epoch, kind, kid };
    for (const listener of this.#listeners) listener(change);
  }
}
