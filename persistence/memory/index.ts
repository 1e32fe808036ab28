import type { Store } from "../../core/ports/store.js";
import { MemoryStore } from "./memory-store.js";

/**
 * Creates an in-memory {@link Store} with the same semantics as the SQL stores (it passes the same
 * conformance suite). Nothing survives the process: use it for unit tests and examples, and
 * `createPgliteStore` or `createPgStore` for anything that must be durable.
 *
 * Values are deep-copied (`structuredClone`) on the way in and out, so a caller can never change
 * stored state by mutating an object it passed in or got back.
 *
 * @returns a store whose `migrate()` does nothing and whose `close()` makes every later call fail
 *   with `StoreError` `ERR_STORE_UNAVAILABLE`
 * @throws nothing
 * @example
 * ```ts
 * const store = createMemoryStore();
 * await store.migrate();
 * const { actor } = await store.createActor({ tenantId: "acme", actorId: "act_1", ... });
 * ```
 */
export function createMemoryStore(): Store & AsyncDisposable {
  return new MemoryStore();
}
