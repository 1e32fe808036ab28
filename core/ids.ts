import { createHash, randomUUID } from "node:crypto";

/** A random id with a readable prefix, e.g. `act_3f0c…`. Random so that no key is a write hotspot. */
export function newId(prefix: string): string {
  return `${prefix}_${randomUUID().replaceAll("-", "")}`;
}

/** SHA-256 of a string, base64url. */
export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("base64url");
}

/**
 * The idempotency key of an effect: derived from (tenant, actor, effect id) only, so it is the same
 * on every retry and after any crash, and different across tenants and actors.
 *
 * @example
 * ```ts
 * idempotencyKeyOf("acme", "act_1", "e-3-0") // "tsr-…"
 * ```
 */
export function idempotencyKeyOf(tenantId: string, actorId: string, effectId: string): string {
  return `tsr-${sha256(JSON.stringify([tenantId, actorId, effectId])).slice(0, 32)}`;
}
