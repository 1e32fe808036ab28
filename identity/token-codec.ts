import type { CryptoKey } from "./keys.js";
import { errors as joseErrors, jwtVerify } from "jose";
import { decodeCanonicalBase64url } from "./encoding.js";
import { deny } from "./errors.js";
import { identityLimits } from "./limits.js";

/** The token types of IDENTITY.md §3; each is verified only as itself. */
export type TokenType = "tessera-id+jwt" | "tessera-dlg+jwt" | "tessera-inv+jwt" | "tessera-apv+jwt" | "tessera-rev+jwt";

/** A token that passed the size, header and payload-shape gates, not yet its claim schema or signature. */
export interface DecodedToken {
  /** The compact JWS as presented. */
  readonly token: string;
  /** Its type (equal to the expected one). */
  readonly typ: TokenType;
  /** The header `kid`. */
  readonly kid: string;
  /** The payload: a JSON object in canonical `JSON.stringify` form, depth-bounded. */
  readonly payload: Record<string, unknown>;
}

// Three base64url segments, ASCII only, so the string's length is its byte length. The signature
// may be empty here so that an unsigned (`alg: none`) token is refused for its algorithm at step 1.
const compactPattern = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const ed25519SignatureChars = 86;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Step 0 for one token: a string of at most `tokenBytesMax` bytes made of three base64url segments.
 * Nothing is decoded; a 1 MiB token is refused after one length comparison.
 *
 * @param token - the candidate compact JWS
 * @param what - which token, for the message (`link 2`, `invocation`)
 * @throws AuthorizationError `ERR_AUTHZ_LIMITS`
 * @example
 * ```ts
 * gateToken(invocation, "invocation")
 * ```
 */
export function gateToken(token: unknown, what: string): asserts token is string {
  if (typeof token !== "string") deny("ERR_AUTHZ_LIMITS", `${what} is not a string`, 0);
  if (token.length > identityLimits.tokenBytesMax) {
    deny("ERR_AUTHZ_LIMITS", `${what} is longer than ${identityLimits.tokenBytesMax} bytes`, 0, { limit: "tokenBytesMax" });
  }
  if (!compactPattern.test(token)) deny("ERR_AUTHZ_LIMITS", `${what} is not a compact JWS of three base64url segments`, 0);
}

/**
 * Step 0 for a chain: an array of 1 to `delegationDepthMax` tokens, each gated by
 * {@link gateToken}, together at most `chainBytesMax` bytes. The count is checked before any
 * element is touched, so a 10,000-link chain costs one comparison.
 *
 * @param chain - the candidate chain, root first
 * @throws AuthorizationError `ERR_AUTHZ_DEPTH` or `ERR_AUTHZ_LIMITS`
 * @example
 * ```ts
 * gateChain(bundle.chain)
 * ```
 */
export function gateChain(chain: unknown): asserts chain is readonly string[] {
  if (!Array.isArray(chain)) deny("ERR_AUTHZ_LIMITS", "the chain is not an array", 0);
  const count = chain.length;
  if (count < 1 || count > identityLimits.delegationDepthMax) {
    deny("ERR_AUTHZ_DEPTH", `a chain has 1 to ${identityLimits.delegationDepthMax} links, this one ${count}`, 0, {
      limit: "delegationDepthMax",
    });
  }
  let bytes = 0;
  for (let index = 0; index < count; index++) {
    const link: unknown = chain[index];
    gateToken(link, `link ${index}`);
    bytes += link.length;
  }
  if (bytes > identityLimits.chainBytesMax)
    deny("ERR_AUTHZ_LIMITS", `the chain is longer than ${identityLimits.chainBytesMax} bytes`, 0, { limit: "chainBytesMax" });
}

/**
 * Steps 1 and the shape half of step 2 for one gated token: the header is exactly
 * `{"alg":"EdDSA","typ":typ,"kid":…}` (no `crit`, `b64`, `jwk`, `jku`, `x5c`, `x5u` or anything
 * else); the payload is a JSON object no deeper than `payloadDepthMax`, with no duplicate member and
 * in `JSON.stringify` form (re-serialising it gives the same text), whose strings and member
 * names are at most `stringCharsMax` characters; the signature is 64 bytes of canonical
 * base64url. Claims are checked by each token type's schema afterwards.
 *
 * @param token - a token that passed {@link gateToken}
 * @param typ - the type it must have
 * @param what - which token, for messages
 * @param stringCharsMax - longest string in the payload
 * @defaultValue stringCharsMax 256 (approvals carry WebAuthn fields and pass more)
 * @returns the decoded token
 * @throws AuthorizationError `ERR_AUTHZ_ALG`, `ERR_AUTHZ_TYP`, `ERR_AUTHZ_HEADER`, `ERR_AUTHZ_SCHEMA`, `ERR_AUTHZ_LIMITS` or `ERR_AUTHZ_SIGNATURE`
 * @example
 * ```ts
 * const decoded = decodeToken(link, "tessera-dlg+jwt", "link 0")
 * ```
 */
export function decodeToken(
  token: string,
  typ: TokenType,
  what: string,
  stringCharsMax: number = identityLimits.claimCharsMax,
): DecodedToken {
  const [headerPart, payloadPart, signaturePart] = token.split(".") as [string, string, string];
  const header = parseCanonicalObject(headerPart, "ERR_AUTHZ_HEADER", `${what} header`, 1, identityLimits.claimCharsMax);
  if (header.alg !== "EdDSA") deny("ERR_AUTHZ_ALG", `${what}: alg must be EdDSA`, 1);
  if (header.typ !== typ) deny("ERR_AUTHZ_TYP", `${what}: typ must be ${typ}`, 1);
  const members = Object.keys(header);
  if (members.length !== 3 || !("kid" in header)) deny("ERR_AUTHZ_HEADER", `${what}: the header must be exactly {alg, typ, kid}`, 1);
  if (typeof header.kid !== "string" || header.kid.length === 0 || header.kid.length > identityLimits.claimCharsMax) {
    deny("ERR_AUTHZ_HEADER", `${what}: kid must be a short string`, 1);
  }
  if (signaturePart.length !== ed25519SignatureChars || decodeCanonicalBase64url(signaturePart) === undefined) {
    deny("ERR_AUTHZ_SIGNATURE", `${what}: the signature is not 64 bytes of canonical base64url`, 1);
  }
  const payload = parseCanonicalObject(payloadPart, "ERR_AUTHZ_SCHEMA", `${what} payload`, 2, stringCharsMax);
  return { token, typ, kid: header.kid, payload };
}

function parseCanonicalObject(
  segment: string,
  code: "ERR_AUTHZ_HEADER" | "ERR_AUTHZ_SCHEMA",
  what: string,
  step: number,
  stringCharsMax: number,
): Record<string, unknown> {
  const bytes = decodeCanonicalBase64url(segment);
  if (bytes === undefined) deny(code, `${what} is not canonical base64url`, step);
  let text: string;
  let value: unknown;
  try {
    text = strictUtf8.decode(bytes);
    value = JSON.parse(text);
  } catch {
    return deny(code, `${what} is not UTF-8 JSON`, step);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) deny(code, `${what} is not a JSON object`, step);
  checkShape(value, what, step, stringCharsMax);
  // Duplicate members, whitespace, alternative escapes and number spellings all change the text.
  if (JSON.stringify(value) !== text) deny(code, `${what} is not in canonical form (duplicate member or non-canonical JSON)`, step);
  return value as Record<string, unknown>;
}

/** Depth of nesting, and the length of every string and member name, without recursion. */
function checkShape(root: object, what: string, step: number, stringCharsMax: number): void {
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number];
    if (typeof node === "string" && node.length > stringCharsMax)
      deny("ERR_AUTHZ_SCHEMA", `${what} has a string longer than ${stringCharsMax}`, step);
    if (node === null || typeof node !== "object") continue;
    if (depth > identityLimits.payloadDepthMax)
      deny("ERR_AUTHZ_LIMITS", `${what} nests deeper than ${identityLimits.payloadDepthMax}`, step);
    if (Array.isArray(node)) {
      for (const child of node) stack.push([child, depth + 1]);
    } else {
      for (const [name, child] of Object.entries(node)) {
        if (name.length > stringCharsMax) deny("ERR_AUTHZ_SCHEMA", `${what} has a member name longer than ${stringCharsMax}`, step);
        stack.push([child, depth + 1]);
      }
    }
  }
}

/** Explicit jose options for step 9; every one is given, none left to its default. */
export interface SignatureCheck {
  /** The verification key from the tenant directory, never from the token. */
  readonly key: CryptoKey;
  /** The verifier's time. */
  readonly now: Date;
  /** The token's maximum age, in seconds (its type's maximum lifetime). */
  readonly maxTokenAgeSeconds: number;
  /** Which token, for messages. */
  readonly what: string;
  /** The step to report. */
  readonly step: number;
}

/**
 * Step 9 (and the signature halves of steps 10 and 12): verifies the JWS with jose, with the
 * algorithm allow-list `["EdDSA"]`, the expected `typ`, the verifier's clock as `currentDate`, the
 * skew as `clockTolerance` and the type's lifetime as `maxTokenAge`. The time checks repeat ours as
 * a second line; ours run first and decide the error code.
 *
 * @param decoded - a token that passed {@link decodeToken} and its claim schema
 * @param check - key, time and limits
 * @throws AuthorizationError `ERR_AUTHZ_SIGNATURE` or `ERR_AUTHZ_TIME`
 * @example
 * ```ts
 * await verifySignature(decoded, { key, now, maxTokenAgeSeconds: 120, what: "invocation", step: 10 })
 * ```
 */
export async function verifySignature(decoded: DecodedToken, check: SignatureCheck): Promise<void> {
  try {
    await jwtVerify(decoded.token, check.key, {
      algorithms: ["EdDSA"],
      typ: decoded.typ,
      currentDate: check.now,
      clockTolerance: identityLimits.clockSkewSeconds,
      maxTokenAge: check.maxTokenAgeSeconds,
      requiredClaims: ["iat", "exp"],
    });
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired || error instanceof joseErrors.JWTClaimValidationFailed) {
      deny("ERR_AUTHZ_TIME", `${check.what}: ${error.message}`, check.step);
    }
    deny("ERR_AUTHZ_SIGNATURE", `${check.what}: signature does not verify`, check.step);
  }
}
