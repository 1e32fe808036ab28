import { assert } from "../core/assert.js";
import type { VerifiedChain } from "./chain-verifier.js";
import { identityLimits } from "./limits.js";

/** Options of {@link ChainCache}. */
export interface ChainCacheOptions {
  /** Entries kept; the least recently used is dropped beyond it. @defaultValue 10000 */
  readonly entriesMax?: number;
}

/**
 * The verified-chain cache of IDENTITY.md §8: an LRU keyed by `(tenant, leaf hash)`. It stores
 * only complete verifications (never partial results, never denials). It is a plain map: the
 * verifier decides what a hit is worth, re-checking the exact tokens, the status epoch, the entry's
 * age, the wall-clock window and revocation on every hit. One cache per executor process; it may be shared
 * by the verifiers of several tools and tenants because the tenant is part of the key.
 *
 * @example
 * ```ts
 * const cache = new ChainCache({ entriesMax: 10_000 })
 * const verifier = createInvocationVerifier({ ..., cache })
 * ```
 */
export class ChainCache {
  readonly #entriesMax: number;
  readonly #entries = new Map<string, VerifiedChain>();

  /** @param options - the size bound */
  constructor(options: ChainCacheOptions = {}) {
    this.#entriesMax = options.entriesMax ?? identityLimits.chainCacheEntriesMax;
    assert(Number.isSafeInteger(this.#entriesMax) && this.#entriesMax > 0, "entriesMax is a positive integer");
  }

  /** Entries held. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Looks a verified chain up and marks it recently used.
   *
   * @param tenant - the verifier's tenant
   * @param leafHash - hash of the chain's leaf (or an invocation's `prf` in session mode)
   * @returns the cached summary, or `undefined`
   */
  get(tenant: string, leafHash: string): VerifiedChain | undefined {
    const key = cacheKey(tenant, leafHash);
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry;
  }

  /**
   * Stores a complete verification.
   *
   * @param verified - the summary returned by `verifyChain`
   */
  set(verified: VerifiedChain): void {
    const key = cacheKey(verified.tenant, verified.leafHash);
    this.#entries.delete(key);
    this.#entries.set(key, verified);
    while (this.#entries.size > this.#entriesMax) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) break;
      this.#entries.delete(oldest.value);
    }
  }

  /**
   * Forgets one entry, e.g. after a hit failed its re-checks.
   *
   * @param tenant - the tenant
   * @param leafHash - the leaf hash
   */
  delete(tenant: string, leafHash: string): void {
    this.#entries.delete(cacheKey(tenant, leafHash));
  }

  /** Forgets everything. */
  clear(): void {
    this.#entries.clear();
  }
}

function cacheKey(tenant: string, leafHash: string): string {
  return `${tenant}\u0000${leafHash}`;
}
