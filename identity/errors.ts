/**
 * Errors of the identity module. Every denial is an {@link AuthorizationError} with a stable `code`
 * (switch on it) and a short `reason` that goes into the audit record's `code` field
 * (IDENTITY.md §12). Programmer bugs stay `InvariantError` from core.
 *
 * Codes thrown by `identity/`:
 *
 * | code | reason | thrown when (IDENTITY.md §6 step) |
 * |---|---|---|
 * | `ERR_AUTHZ_LIMITS` | limits | size gate: token or chain too large, malformed compact JWS (0); payload too deep, caveat or glob limits (2); args over the tool's cap (10) |
 * | `ERR_AUTHZ_DEPTH` | depth | more links than `delegationDepthMax` (0); re-delegation budget `mdl` exhausted (6) |
 * | `ERR_AUTHZ_ALG` | alg | header `alg` is not `EdDSA` (1) |
 * | `ERR_AUTHZ_TYP` | typ | header `typ` is not the expected token type (1) |
 * | `ERR_AUTHZ_HEADER` | header | header is not exactly `{alg, typ, kid}` or not canonical JSON (1) |
 * | `ERR_AUTHZ_SCHEMA` | schema | payload is not the strict claim schema: unknown or missing claim, wrong type, duplicate key (2) |
 * | `ERR_AUTHZ_TENANT` | tenant | token, issuer, audience or subject of another tenant (3, 10) |
 * | `ERR_AUTHZ_KEY` | key | `kid` not in the tenant directory, certified for another principal, outside its validity, or a non-active key invoking (4, 10) |
 * | `ERR_AUTHZ_ROOT` | root | root not self-issued, or the root-authority oracle refuses a capability (5) |
 * | `ERR_AUTHZ_LINKAGE` | linkage | `prf`, `dep` or `sub` does not link to the previous token (5, 10) |
 * | `ERR_AUTHZ_AUDIENCE` | audience | a link's `iss` is not the previous `aud`; invoker is not the holder; invocation for another tool (5, 10) |
 * | `ERR_AUTHZ_WIDEN` | widen | a capability not covered by the parent, or `*` / `/` below a root (6) |
 * | `ERR_AUTHZ_TIME` | time | not narrowed in time, expired, not yet valid, too long-lived (7, 10, 12) |
 * | `ERR_AUTHZ_REVOKED` | revoked | link, hash, key or principal revoked; key compromised (4, 8, cache hit) |
 * | `ERR_AUTHZ_REVOCATION_STALE` | stale | the revocation feed is older than its bound and the tool fails closed (§9) |
 * | `ERR_AUTHZ_SIGNATURE` | sig | a signature does not verify (9, 10) |
 * | `ERR_AUTHZ_ARGS` | args | `args_h` differs from the hash of the args presented (10) |
 * | `ERR_AUTHZ_EFFECT` | effect | `eff` differs from the journal's effect id (10) |
 * | `ERR_AUTHZ_REPLAY` | replay | invocation, approval or one-shot grant seen before (10, 12) |
 * | `ERR_AUTHZ_REPLAY_STORE_FULL` | replay | the replay store is full of unexpired entries; retryable, fails closed |
 * | `ERR_AUTHZ_CAPABILITY` | capability | no capability of some link covers the tool's resource and action (11) |
 * | `ERR_AUTHZ_CAVEAT` | caveat | a caveat of some link is false on the args (11) |
 * | `ERR_AUTHZ_APPROVAL_REQUIRED` | approval | the tool's gate requires an approval and none was presented (12) |
 * | `ERR_AUTHZ_APPROVAL` | approval | the approval is invalid: not a human, no role, four-eyes, intent mismatch, WebAuthn (12) |
 * | `ERR_AUTHZ_CHAIN_REQUIRED` | chain-required | session mode: the chain is not cached, resend the bundle (§8) |
 * | `ERR_AUTHZ_SCOPE` | scope | a chain handle used outside the task that delivered it (§1, §10) |
 *
 * Other codes: `ERR_PRINCIPAL_INVALID`, `ERR_CAVEAT_INVALID`, `ERR_CAPABILITY_INVALID`,
 * `ERR_JCS_INVALID` (all core `ValidationError`); `ERR_IDENTITY_TOKEN_INVALID`,
 * `ERR_IDENTITY_KID_CONFLICT`, `ERR_IDENTITY_STALE_EPOCH`, `ERR_IDENTITY_UNKNOWN_KEY`
 * ({@link IdentityError}); `ERR_VAULT_NOT_DECLARED`, `ERR_VAULT_SECRET_NOT_FOUND`,
 * `ERR_VAULT_DECRYPT`, `ERR_VAULT_UNVERIFIED`, `ERR_VAULT_ALREADY_RELEASED`, `ERR_VAULT_TENANT`
 * ({@link VaultError}).
 */
import { AgentError } from "../core/errors.js";
import type { AgentErrorOptions } from "../core/errors.js";

/** The short denial reason written into the audit record (IDENTITY.md §12 `code`). */
export type AuthorizationReason =
  | "limits"
  | "depth"
  | "alg"
  | "typ"
  | "header"
  | "schema"
  | "tenant"
  | "key"
  | "root"
  | "linkage"
  | "audience"
  | "widen"
  | "time"
  | "revoked"
  | "stale"
  | "sig"
  | "args"
  | "effect"
  | "replay"
  | "capability"
  | "caveat"
  | "approval"
  | "chain-required"
  | "scope";

const reasonOfCode = {
  ERR_AUTHZ_LIMITS: "limits",
  ERR_AUTHZ_DEPTH: "depth",
  ERR_AUTHZ_ALG: "alg",
  ERR_AUTHZ_TYP: "typ",
  ERR_AUTHZ_HEADER: "header",
  ERR_AUTHZ_SCHEMA: "schema",
  ERR_AUTHZ_TENANT: "tenant",
  ERR_AUTHZ_KEY: "key",
  ERR_AUTHZ_ROOT: "root",
  ERR_AUTHZ_LINKAGE: "linkage",
  ERR_AUTHZ_AUDIENCE: "audience",
  ERR_AUTHZ_WIDEN: "widen",
  ERR_AUTHZ_TIME: "time",
  ERR_AUTHZ_REVOKED: "revoked",
  ERR_AUTHZ_REVOCATION_STALE: "stale",
  ERR_AUTHZ_SIGNATURE: "sig",
  ERR_AUTHZ_ARGS: "args",
  ERR_AUTHZ_EFFECT: "effect",
  ERR_AUTHZ_REPLAY: "replay",
  ERR_AUTHZ_REPLAY_STORE_FULL: "replay",
  ERR_AUTHZ_CAPABILITY: "capability",
  ERR_AUTHZ_CAVEAT: "caveat",
  ERR_AUTHZ_APPROVAL_REQUIRED: "approval",
  ERR_AUTHZ_APPROVAL: "approval",
  ERR_AUTHZ_CHAIN_REQUIRED: "chain-required",
  ERR_AUTHZ_SCOPE: "scope",
} as const satisfies Record<string, AuthorizationReason>;

/** Every code an {@link AuthorizationError} can carry. */
export type AuthorizationCode = keyof typeof reasonOfCode;

/** Options of an {@link AuthorizationError}: the step of IDENTITY.md §6 that denied, and context. */
export interface AuthorizationErrorOptions extends AgentErrorOptions {
  /** The verification step (0–13) of IDENTITY.md §6 that denied. */
  step?: number;
}

/**
 * A denial: the presented chain, invocation or approval does not authorise the call. Never retry the
 * same tokens; `retryable` is true only for `ERR_AUTHZ_REPLAY_STORE_FULL`, `ERR_AUTHZ_REVOCATION_STALE`
 * and `ERR_AUTHZ_CHAIN_REQUIRED`, where the same call may pass later or with the full bundle.
 *
 * @example
 * ```ts
 * try { await verifier.verify(request) } catch (e) {
 *   if (e instanceof AuthorizationError) audit.deny(e.reason, e.code)
 * }
 * ```
 */
export class AuthorizationError extends AgentError {
  /** The short reason for the audit record. */
  readonly reason: AuthorizationReason;
  /** The verification step that denied, when one applies. */
  readonly step: number | undefined;

  /**
   * @param code - one of {@link AuthorizationCode}
   * @param message - what was wrong, naming the token (link index) and the claim
   * @param options - step, details (`link`, `claim`, limits) and cause
   */
  constructor(code: AuthorizationCode, message: string, options: AuthorizationErrorOptions = {}) {
    const retryable =
      code === "ERR_AUTHZ_REPLAY_STORE_FULL" || code === "ERR_AUTHZ_REVOCATION_STALE" || code === "ERR_AUTHZ_CHAIN_REQUIRED";
    super(code, message, { retryable, ...options, details: { step: options.step, ...options.details } });
    this.reason = reasonOfCode[code];
    this.step = options.step;
  }
}

/** An identity token or directory operation was refused (registration, rotation, compromise). */
export class IdentityError extends AgentError {}

/** The vault refused to store or release a secret. */
export class VaultError extends AgentError {}

/**
 * Shorthand used throughout the verifier.
 *
 * @internal
 */
export function deny(code: AuthorizationCode, message: string, step?: number, details?: Record<string, unknown>): never {
  throw new AuthorizationError(code, message, { step, details });
}
