import type { CryptoKey, PublicJwk } from "./keys.js";

/** Status of a certified key (IDENTITY.md §2, §10). */
export type KeyStatus = "active" | "retired" | "compromised";

/**
 * One entry of a tenant's key directory: which principal a `kid` is certified for, and when.
 * Entries come only from identity tokens signed by the tenant's authority (or, for the authority's
 * own keys, from the tenant's configured trust anchors).
 */
export interface KeyRecord {
  /** RFC 7638 thumbprint of `publicJwk`. */
  readonly kid: string;
  /** Tenant whose directory holds it. */
  readonly tenant: string;
  /** The principal the key is certified for. */
  readonly principal: string;
  /** The public key. */
  readonly publicJwk: PublicJwk;
  /** The public key, imported for verification. */
  readonly publicKey: CryptoKey;
  /** Start of validity, in seconds since the epoch. */
  readonly validFrom: number;
  /** End of validity, in seconds since the epoch; set to the rotation time on retirement. */
  readonly validTo: number;
  /** `active` may sign anything; `retired` still verifies links it signed while valid, never a new invocation; `compromised` verifies nothing. */
  readonly status: KeyStatus;
  /** `jti` of the identity token that certified it (audit `actor.id_jti`); `undefined` for trust anchors. */
  readonly identityJti: string | undefined;
  /** Lease epoch the key was minted under, for agents. */
  readonly leaseEpoch: number | undefined;
  /** Node that minted it, for agents (audit `actor.runtime`). */
  readonly node: string | undefined;
}

/**
 * The read side of a tenant key directory, as verifiers use it: synchronous, because every node
 * keeps a cache of it refreshed by the per-tenant `authz` subject, and verification must be pure
 * and bounded. Lookups are always scoped by tenant; there is no cross-tenant read.
 */
export interface KeyResolver {
  /**
   * Looks a key up in one tenant's directory.
   *
   * @param tenant - the verifier's tenant
   * @param kid - the `kid` from a token header
   * @returns the record, or `undefined` when that tenant has no such key
   */
  get(tenant: string, kid: string): KeyRecord | undefined;
  /**
   * The tenant's directory epoch: it increases on every change (new key, renewal, retirement,
   * compromise). Audit records name it; cached verifications are checked against the status epoch.
   *
   * @param tenant - the tenant
   * @returns the epoch, 0 for a tenant never written
   */
  epoch(tenant: string): number;
  /**
   * The tenant's status epoch: it increases only on the changes that can withdraw trust from a
   * key already in the directory (a retirement, including the predecessors a new lease holder's
   * key retires; a compromise; an anchor change), not when a key is certified or renewed. Those
   * add trust and cannot make a verified link fail, so a cached chain verification stays valid
   * while this epoch is unchanged (IDENTITY.md §8). A resolver without it is read through
   * {@link statusEpochOf}, which falls back to {@link KeyResolver.epoch}: every change then
   * invalidates the cache, as before.
   *
   * @param tenant - the tenant
   * @returns the status epoch, 0 for a tenant never written
   */
  statusEpoch?(tenant: string): number;
}

/**
 * The epoch a cached chain verification is checked against: the resolver's status epoch, or its
 * directory epoch when it has none.
 *
 * @param directory - the key resolver
 * @param tenant - the tenant
 * @returns the epoch to compare
 */
export function statusEpochOf(directory: KeyResolver, tenant: string): number {
  return directory.statusEpoch === undefined ? directory.epoch(tenant) : directory.statusEpoch(tenant);
}

/** A tenant authority's public key, configured out of band: the root of trust of one tenant. */
export interface AuthorityAnchor {
  /** The tenant. */
  readonly tenant: string;
  /** The authority principal, `tsr:<tenant>:authority:<id>`. */
  readonly principal: string;
  /** The authority's public key. */
  readonly publicJwk: PublicJwk;
  /** Start of validity, seconds. */
  readonly validFrom: number;
  /** End of validity, seconds; rotation publishes the next anchor in advance (two in the set). */
  readonly validTo: number;
}

/** A directory change, announced so that caches on every node refresh at once. */
export interface DirectoryChange {
  /** The tenant whose directory changed. */
  readonly tenant: string;
  /** The new epoch. */
  readonly epoch: number;
  /** What happened. */
  readonly kind: "anchor" | "certified" | "renewed" | "retired" | "compromised";
  /** The key concerned. */
  readonly kid: string;
}

/**
 * The full key directory port: reads plus the only ways to write it. A Store-backed adapter keeps
 * the table keyed by `(tenant, kid)` and publishes each change on the tenant's `authz` subject; the
 * in-memory one is `MemoryKeyDirectory`.
 */
export interface KeyDirectory extends KeyResolver {
  /**
   * Adds a tenant authority key (a trust anchor). Administrative: called when a tenant is created
   * and when its authority key rotates.
   *
   * @param anchor - the authority key
   * @returns the stored record
   */
  addAuthority(anchor: AuthorityAnchor): Promise<KeyRecord>;
  /**
   * Registers a key from an identity token (`tessera-id+jwt`) after verifying it against the
   * tenant's authority anchors and checking `cnf.jkt` equals the thumbprint of `publicJwk`. A new
   * agent key with a higher lease epoch retires the principal's previous keys.
   *
   * @param token - the identity token
   * @param publicJwk - the certified public key
   * @returns the stored record
   */
  registerIdentity(token: string, publicJwk: PublicJwk): Promise<KeyRecord>;
  /**
   * Retires a key: it keeps verifying what it signed until `atSeconds` and never signs an
   * invocation again.
   *
   * @param tenant - the tenant
   * @param kid - the key
   * @param atSeconds - the retirement time, which becomes `validTo`
   */
  retire(tenant: string, kid: string, atSeconds: number): Promise<void>;
  /**
   * Marks a key compromised: everything it ever signed fails at once, cached results included.
   *
   * @param tenant - the tenant
   * @param kid - the key
   */
  markCompromised(tenant: string, kid: string): Promise<void>;
  /**
   * Subscribes to changes.
   *
   * @param listener - called after each change
   * @returns a function that unsubscribes
   */
  onChange(listener: (change: DirectoryChange) => void): () => void;
}
