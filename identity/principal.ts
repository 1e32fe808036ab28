import { ValidationError } from "../core/errors.js";

/** The kinds of principal (IDENTITY.md §2). */
export type PrincipalKind = "user" | "agent" | "service" | "tool" | "authority";

/** A parsed principal id `tsr:<tenant>:<kind>:<id>`. */
export interface Principal {
  /** Tenant id: lower-case letters, digits, `_` and `-`, 1–64 characters, starting with a letter or digit. */
  readonly tenant: string;
  /** What the principal is. */
  readonly kind: PrincipalKind;
  /** Id within tenant and kind: letters, digits and `._~@-`, 1–128 characters, starting with a letter or digit. */
  readonly id: string;
}

/** Characters of a formatted principal id; the longest valid one is `4 + 64 + 1 + 9 + 1 + 128`. */
export const principalCharsMax = 207;

const tenantPattern = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const idPattern = /^[A-Za-z0-9][A-Za-z0-9._~@-]{0,127}$/;
const kinds: ReadonlySet<string> = new Set<PrincipalKind>(["user", "agent", "service", "tool", "authority"]);

/**
 * Parses and strictly validates a principal id. Anything unexpected (a fifth segment, an unknown
 * kind, upper case in the tenant, a non-string) is refused, so that two spellings can never name the
 * same principal.
 *
 * @param text - the principal id, e.g. `tsr:t_acme:agent:refund-worker-3`
 * @returns its parts
 * @throws ValidationError `ERR_PRINCIPAL_INVALID`
 * @example
 * ```ts
 * parsePrincipal("tsr:t_acme:user:alice") // { tenant: "t_acme", kind: "user", id: "alice" }
 * ```
 */
export function parsePrincipal(text: unknown): Principal {
  const parsed = tryParsePrincipal(text);
  if (parsed === undefined) {
    const shown = typeof text === "string" ? JSON.stringify(text.slice(0, 64)) : typeof text;
    throw new ValidationError("ERR_PRINCIPAL_INVALID", `not a principal id (tsr:<tenant>:<kind>:<id>): ${shown}`);
  }
  return parsed;
}

/**
 * Like {@link parsePrincipal} but returns `undefined` instead of throwing, for verifiers that map
 * the failure to their own code.
 *
 * @param text - a candidate principal id
 * @returns its parts, or `undefined` when it is not a valid principal id
 * @example
 * ```ts
 * tryParsePrincipal("tsr:T:agent:x") // undefined: tenants are lower case
 * ```
 */
export function tryParsePrincipal(text: unknown): Principal | undefined {
  if (typeof text !== "string" || text.length > principalCharsMax) return undefined;
  const parts = text.split(":");
  if (parts.length !== 4) return undefined;
  const [scheme, tenant, kind, id] = parts as [string, string, string, string];
  if (scheme !== "tsr" || !tenantPattern.test(tenant) || !kinds.has(kind) || !idPattern.test(id)) return undefined;
  return { tenant, kind: kind as PrincipalKind, id };
}

/**
 * Formats a principal id, validating each part.
 *
 * @param principal - tenant, kind and id
 * @returns `tsr:<tenant>:<kind>:<id>`
 * @throws ValidationError `ERR_PRINCIPAL_INVALID` when a part is invalid
 * @example
 * ```ts
 * formatPrincipal({ tenant: "t_acme", kind: "tool", id: "refund" }) // "tsr:t_acme:tool:refund"
 * ```
 */
export function formatPrincipal(principal: Principal): string {
  const text = `tsr:${principal.tenant}:${principal.kind}:${principal.id}`;
  parsePrincipal(text);
  return text;
}

/**
 * Whether `text` is a valid tenant id.
 *
 * @param text - a candidate tenant id
 * @returns true when it may be used as the tenant segment of a principal
 * @example
 * ```ts
 * isTenantId("t_acme") // true
 * ```
 */
export function isTenantId(text: unknown): text is string {
  return typeof text === "string" && tenantPattern.test(text);
}
