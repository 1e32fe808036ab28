import { randomBytes } from "node:crypto";
import type { Clock } from "../core/clock.js";
import { sha256 } from "../core/ids.js";

/**
 * The hash that links tokens: base64url SHA-256 of a compact JWS's ASCII bytes (`prf`, cache keys,
 * audit `h`). A compact JWS that passed the size gate is pure base64url and dots, so its UTF-8 bytes
 * are its ASCII bytes.
 *
 * @param token - a compact JWS
 * @returns 43 characters of base64url
 * @example
 * ```ts
 * const prf = tokenHash(parentLink)
 * ```
 */
export function tokenHash(token: string): string {
  return sha256(token);
}

/**
 * A fresh 128-bit random token id (`jti`), base64url, 22 characters.
 *
 * @returns a new id, never repeated in practice
 * @example
 * ```ts
 * const jti = randomJti()
 * ```
 */
export function randomJti(): string {
  return randomBytes(16).toString("base64url");
}

/**
 * The clock's time in whole seconds, the unit of every JWT time claim.
 *
 * @param clock - the verifier's or issuer's clock, corrected to the store's time (IDENTITY.md §6)
 * @returns seconds since the epoch, rounded down
 * @example
 * ```ts
 * const iat = nowSeconds(clock)
 * ```
 */
export function nowSeconds(clock: Clock): number {
  return Math.floor(clock.now() / 1000);
}

const base64urlPattern = /^[A-Za-z0-9_-]*$/;

/**
 * Decodes base64url only when it is in its one canonical form: the alphabet without padding, and
 * zero bits in the unused tail. Node's decoder ignores stray characters and non-zero tail bits, and
 * jose verifies a signature whose last character was changed within those bits; refusing
 * non-canonical text keeps one token from having two spellings (and two hashes).
 *
 * @param text - base64url text
 * @returns the bytes, or `undefined` when the text is not canonical base64url
 * @example
 * ```ts
 * decodeCanonicalBase64url("eyJ9") // bytes of '{"}'
 * ```
 */
export function decodeCanonicalBase64url(text: string): Buffer | undefined {
  if (!base64urlPattern.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, "base64url");
  return bytes.toString("base64url") === text ? bytes : undefined;
}
