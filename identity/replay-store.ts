import type { Clock } from "../core/clock.js";
import { assert } from "../core/assert.js";
import { AuthorizationError } from "./errors.js";
import { identityLimits } from "./limits.js";

/**
 * The single-use store for invocation and approval ids (IDENTITY.md §7): keys live until their
 * token's expiry plus skew, at most about 150 s for invocations. With several executors, share one
 * store (a Store table or a TTL key-value bucket), or partition by tool so each owns its set.
 */
export interface ReplayStore {
  /**
   * Atomically records `key` unless it is already present and unexpired.
   *
   * @param key - `(tenant, issuer, jti)` encoded by the caller
   * @param expiresAtMs - when the entry may be forgotten
   * @returns true when the key was new (the token is fresh), false when it was seen (a replay)
   * @throws AuthorizationError `ERR_AUTHZ_REPLAY_STORE_FULL` (retryable) when full of unexpired entries
   */
  checkAndInsert(key: string, expiresAtMs: number): Promise<boolean>;
}

/** Options of {@link MemoryReplayStore}. */
export interface MemoryReplayStoreOptions {
  /** Time for expiry. */
  readonly clock: Clock;
  /** Unexpired entries held at most. @defaultValue 100000 */
  readonly entriesMax?: number;
}

/**
 * The in-memory {@link ReplayStore}: bounded, and fails closed when full. Evicting an unexpired
 * entry would let its token be replayed, so when the bound is reached after dropping expired
 * entries, new tokens are refused (retryably) until old ones expire.
 *
 * @example
 * ```ts
 * const replay = new MemoryReplayStore({ clock })
 * await replay.checkAndInsert("t_acme\u0000tsr:t_acme:agent:w\u0000jti", expMs) // true, then false
 * ```
 */
export class MemoryReplayStore implements ReplayStore {
  readonly #clock: Clock;
  readonly #entriesMax: number;
  /** Insertion order is expiry order only approximately, so the sweep scans until the first live entry and a full sweep runs when full. */
  readonly #entries = new Map<string, number>();

  /** @param options - clock and bound */
  constructor(options: MemoryReplayStoreOptions) {
    this.#clock = options.clock;
    this.#entriesMax = options.entriesMax ?? identityLimits.replayEntriesMax;
    assert(Number.isSafeInteger(this.#entriesMax) && this.#entriesMax > 0, "entriesMax is a positive integer");
  }

  /** Entries currently held, expired ones included until swept. */
  get size(): number {
    return this.#entries.size;
  }

  async checkAndInsert(key: string, expiresAtMs: number): Promise<boolean> {
    const now = this.#clock.now();
    const existing = this.#entries.get(key);
    if (existing !== undefined && existing > now) return false;
    this.#sweep(now, false);
    if (this.#entries.size >= this.#entriesMax) this.#sweep(now, true);
    if (this.#entries.size >= this.#entriesMax) {
      throw new AuthorizationError("ERR_AUTHZ_REPLAY_STORE_FULL", `replay store holds ${this.#entriesMax} unexpired entries`, {
        details: { limit: "replayEntriesMax", max: this.#entriesMax },
      });
    }
    this.#entries.delete(key);
    this.#entries.set(key, expiresAtMs);
    return true;
  }

  #sweep(now: number, full: boolean): void {
    for (const [key, expiresAt] of this.#entries) {
      if (expiresAt <= now) this.#entries.delete(key);
      else if (!full) return;
    }
  }
}
