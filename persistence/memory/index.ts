import { z } from "zod";
import { ConfigError } from "../../core/errors.js";
import type { Store } from "../../core/ports/store.js";
import { MemoryStore } from "./memory-store.js";

/** Options of {@link createMemoryStore}. */
export interface MemoryStoreOptions {
  /**
   * What the store reports as `shared`. A memory store lives in one process, but cluster code
   * (several nodes over one store, leases, orphan claims) can be tested on it by saying it is
   * shared. @defaultValue false
   */
  shared?: boolean;
}

const optionsSchema = z.object({ shared: z.boolean().default(false) }).strict();

/**
 * Creates an in-memory {@link Store} with the same semantics as the SQL stores (it passes the same
 * conformance suite). Nothing survives the process: use it for unit tests and examples, and
 * `createPgliteStore` or `createPgStore` for anything that must be durable. Its "database clock"
 * for node leases is `Date.now()`.
 *
 * Values are deep-copied (`structuredClone`) on the way in and out, so a caller can never change
 * stored state by mutating an object it passed in or got back.
 *
 * @param options - `shared` (default `false`)
 * @returns a store whose `migrate()` does nothing and whose `close()` makes every later call fail
 *   with `StoreError` `ERR_STORE_UNAVAILABLE`
 * @throws ConfigError when an option is invalid
 * @example
 * ```ts
 * const store = createMemoryStore();
 * await store.migrate();
 * const { actor } = await store.createActor({ tenantId: "acme", actorId: "act_1", ... });
 * ```
 */
export function createMemoryStore(options: MemoryStoreOptions = {}): Store & AsyncDisposable {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`invalid memory store option ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}`, {
      details: { issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), code: i.code, message: i.message })) },
    });
  }
  return new MemoryStore({ shared: parsed.data.shared });
}
