import { deny } from "./errors.js";
import { identityLimits } from "./limits.js";
import type { Principal } from "./principal.js";
import { tryParsePrincipal } from "./principal.js";

/**
 * Strict schema helpers shared by every token type's claim parser (IDENTITY.md §6 step 2). Each
 * throws `ERR_AUTHZ_SCHEMA` naming the token and the claim.
 *
 * @internal
 */

const jtiPattern = /^[A-Za-z0-9_-]{22,64}$/;
const hashPattern = /^[A-Za-z0-9_-]{43}$/;

/**
 * Requires the payload's members to be exactly `required` plus any of `optional`.
 *
 * @internal
 */
export function checkMembers(
  payload: Record<string, unknown>,
  required: readonly string[],
  optional: readonly string[],
  what: string,
): void {
  for (const name of required) if (!Object.hasOwn(payload, name)) deny("ERR_AUTHZ_SCHEMA", `${what}: missing claim ${name}`, 2);
  for (const name of Object.keys(payload)) {
    if (!required.includes(name) && !optional.includes(name))
      deny("ERR_AUTHZ_SCHEMA", `${what}: unknown claim ${JSON.stringify(name.slice(0, 32))}`, 2);
  }
}

/** A string of 1 to `maxChars` characters. @internal */
export function claimString(value: unknown, what: string, maxChars: number = identityLimits.claimCharsMax): string {
  if (typeof value !== "string" || value.length === 0 || value.length > maxChars)
    deny("ERR_AUTHZ_SCHEMA", `${what} must be a string of 1–${maxChars} characters`, 2);
  return value;
}

/** A safe integer, at least `min`. @internal */
export function claimInt(value: unknown, what: string, min = 0): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min)
    deny("ERR_AUTHZ_SCHEMA", `${what} must be an integer ≥ ${min}`, 2);
  return value;
}

/** A valid principal id. @internal */
export function claimPrincipal(value: unknown, what: string): Principal {
  const principal = tryParsePrincipal(value);
  if (principal === undefined) return deny("ERR_AUTHZ_SCHEMA", `${what} must be a principal id`, 2);
  return principal;
}

/** A token id: 128 bits or more of base64url. @internal */
export function claimJti(value: unknown, what: string): string {
  if (typeof value !== "string" || !jtiPattern.test(value)) deny("ERR_AUTHZ_SCHEMA", `${what} must be 22–64 characters of base64url`, 2);
  return value;
}

/** A base64url SHA-256. @internal */
export function claimHash(value: unknown, what: string): string {
  if (typeof value !== "string" || !hashPattern.test(value)) deny("ERR_AUTHZ_SCHEMA", `${what} must be a base64url SHA-256`, 2);
  return value;
}

/** A plain JSON object (not an array, not null). @internal */
export function claimObject(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) deny("ERR_AUTHZ_SCHEMA", `${what} must be an object`, 2);
  return value as Record<string, unknown>;
}

/**
 * The time claims every token has, in seconds: `iat ≤ exp`, `nbf ≤ exp` when present, and a
 * lifetime (`exp − min(iat, nbf)`) of at most `lifetimeMax`.
 *
 * @internal
 */
export function claimTimes(
  payload: Record<string, unknown>,
  what: string,
  lifetimeMaxSeconds: number,
  step = 2,
): { iat: number; nbf: number; exp: number } {
  const iat = claimInt(payload.iat, `${what} iat`);
  const exp = claimInt(payload.exp, `${what} exp`);
  const nbf = payload.nbf === undefined ? iat : claimInt(payload.nbf, `${what} nbf`);
  if (nbf > exp || iat > exp) deny("ERR_AUTHZ_TIME", `${what}: iat and nbf must not be after exp`, step);
  if (exp - Math.min(iat, nbf) > lifetimeMaxSeconds) deny("ERR_AUTHZ_TIME", `${what} lives longer than ${lifetimeMaxSeconds} s`, step);
  return { iat, nbf, exp };
}
