import { createHash } from "node:crypto";
import type { Clock } from "../core/clock.js";
import { ValidationError } from "../core/errors.js";
import { canonicalize } from "./canonical-json.js";
import type { VerifiedChain } from "./chain-verifier.js";
import { checkMembers, claimHash, claimJti, claimObject, claimPrincipal, claimString, claimTimes } from "./claims-schema.js";
import type { LinkIssuer } from "./delegation.js";
import { nowSeconds, randomJti, tokenHash } from "./encoding.js";
import { AuthorizationError, deny } from "./errors.js";
import type { KeyResolver } from "./key-directory.js";
import { identityLimits } from "./limits.js";
import { parsePrincipal } from "./principal.js";
import type { RevocationReader } from "./revocation-list.js";
import { decodeToken, gateToken, verifySignature } from "./token-codec.js";
import type { WebAuthnAssertion, WebAuthnPolicy } from "./webauthn.js";
import { verifyWebAuthnAssertion } from "./webauthn.js";

/** Longest string in an approval: its WebAuthn client data runs to a few hundred characters. */
const approvalStringCharsMax = 2048;

/** Claims of an approval, `tessera-apv+jwt` (IDENTITY.md §11). */
export interface ApprovalClaims {
  /** The human approver. */
  readonly iss: string;
  /** The tool principal. */
  readonly aud: string;
  /** Tenant. */
  readonly tenant: string;
  /** Single-use id. */
  readonly jti: string;
  /** Issued at, seconds. */
  readonly iat: number;
  /** Expiry, seconds; at most 900 s after `iat`. */
  readonly exp: number;
  /** The decision. */
  readonly dec: "approve";
  /** {@link approvalIntent} of the exact call approved. */
  readonly intent: string;
  /** Hash of the human-readable summary the approver saw. */
  readonly summary_h: string;
  /** Approval-as-grant: hash of the one-shot root link the approver signed for this call. */
  readonly grant?: string;
  /** The WebAuthn assertion over {@link approvalChallenge}. */
  readonly wa?: WebAuthnAssertion;
}

/** What an approval's intent binds (IDENTITY.md §11, with the effect id as the product adds). */
export interface IntentInput {
  /** Tenant. */
  readonly tenant: string;
  /** Tool principal. */
  readonly tool: string;
  /** Resource. */
  readonly res: string;
  /** Action. */
  readonly act: string;
  /** Args hash. */
  readonly argsHash: string;
  /** The invoker, by actor principal (not key, so it survives rehydration). */
  readonly invoker: string;
  /** The chain's root principal. */
  readonly subject: string;
  /** The chain's leaf hash. */
  readonly leafHash: string;
  /** The effect id. */
  readonly effectId: string;
}

/**
 * The intent an approval approves: `b64url(SHA-256(JCS({tenant, tool, res, act, args_h, invoker,
 * sub, chain, eff})))`. Because it includes the args hash, the leaf hash and the effect id, an
 * approval cannot be moved to other args, another chain, another tool or another effect.
 *
 * @param input - the call
 * @returns 43 characters of base64url
 * @example
 * ```ts
 * const intent = approvalIntent({ tenant, tool, res, act, argsHash, invoker, subject, leafHash, effectId })
 * ```
 */
export function approvalIntent(input: IntentInput): string {
  return tokenHash(
    canonicalize({
      tenant: input.tenant,
      tool: input.tool,
      res: input.res,
      act: input.act,
      args_h: input.argsHash,
      invoker: input.invoker,
      sub: input.subject,
      chain: input.leafHash,
      eff: input.effectId,
    }),
  );
}

/**
 * The WebAuthn challenge of an approval: SHA-256 of the JCS of its claims without `wa`.
 *
 * @param claims - the approval claims (any `wa` member is ignored)
 * @returns the 32 challenge bytes
 * @example
 * ```ts
 * navigator.credentials.get({ publicKey: { challenge: approvalChallenge(claims), userVerification: "required" } })
 * ```
 */
export function approvalChallenge(claims: ApprovalClaims): Buffer {
  const { wa: _ignored, ...signed } = claims;
  return createHash("sha256").update(canonicalize(signed)).digest();
}

/** Options of {@link signApproval}. */
export interface SignApprovalOptions {
  /** The tool principal. */
  readonly tool: string;
  /** The intent shown by the approval request. */
  readonly intent: string;
  /** The human-readable summary the approver confirmed. */
  readonly summary: string;
  /** Lifetime, seconds, at most 900. @defaultValue 900 */
  readonly ttlSeconds?: number;
  /** Approval-as-grant: the hash of the one-shot root link for this call. */
  readonly grant?: string;
  /** Obtains the WebAuthn assertion over the challenge (the browser's `navigator.credentials.get`). */
  readonly webauthn?: (challenge: Buffer) => Promise<WebAuthnAssertion>;
  /** Approver time. */
  readonly clock: Clock;
}

/**
 * Signs an approval of one exact intent with the approver's certified session key, optionally
 * with a WebAuthn assertion over its challenge.
 *
 * @param approver - a human principal and its certified key
 * @param options - tool, intent, summary, lifetime, grant, WebAuthn
 * @returns the compact JWS
 * @throws ValidationError when the approver is not a human or the lifetime is out of range
 * @example
 * ```ts
 * const apv = await signApproval({ principal: bob, key }, { tool, intent, summary: "refund €45 to c_123", clock })
 * ```
 */
export async function signApproval(approver: LinkIssuer, options: SignApprovalOptions): Promise<string> {
  const principal = parsePrincipal(approver.principal);
  if (principal.kind !== "user") throw new ValidationError("ERR_VALIDATION", "approvals are signed by humans");
  const ttl = options.ttlSeconds ?? identityLimits.approvalTtlSecondsMax;
  if (!Number.isSafeInteger(ttl) || ttl < 1 || ttl > identityLimits.approvalTtlSecondsMax)
    throw new ValidationError("ERR_VALIDATION", "ttlSeconds in 1..900");
  const now = nowSeconds(options.clock);
  const claims: ApprovalClaims = {
    iss: approver.principal,
    aud: options.tool,
    tenant: principal.tenant,
    jti: randomJti(),
    iat: now,
    exp: now + ttl,
    dec: "approve",
    intent: options.intent,
    summary_h: tokenHash(options.summary),
    ...(options.grant === undefined ? {} : { grant: options.grant }),
  };
  const wa = options.webauthn === undefined ? undefined : await options.webauthn(approvalChallenge(claims));
  return approver.key.signCompact("tessera-apv+jwt", wa === undefined ? claims : { ...claims, wa });
}

/** Who may approve for a tool (a ReBAC lookup). */
export type ApproverOracle = (request: {
  readonly tenant: string;
  readonly approver: string;
  readonly tool: string;
}) => boolean | Promise<boolean>;

/** A tool's approval gate (IDENTITY.md §11, DESIGN §6). */
export interface ApprovalPolicy {
  /** Whether these args need approval, e.g. `amount > 25`. */
  readonly required: (args: unknown) => boolean;
  /** The approver-role lookup. */
  readonly approvers: ApproverOracle;
  /** Four-eyes: the approver is not the invoker, the root subject or the root's human. */
  readonly fourEyes: boolean;
  /** When set, a WebAuthn assertion is required and verified with this policy. */
  readonly webauthn?: WebAuthnPolicy;
}

/** What {@link verifyApproval} checks an approval against. */
export interface ApprovalContext {
  /** The call, to recompute the intent. */
  readonly intent: IntentInput;
  /** The verified chain of the call. */
  readonly chain: VerifiedChain;
  /** The call's args. */
  readonly args: unknown;
  /** The tool's policy. */
  readonly policy: ApprovalPolicy;
  /** The tenant directory. */
  readonly directory: KeyResolver;
  /** Revocation state. */
  readonly revocations: RevocationReader;
  /** The verifier's clock. */
  readonly clock: Clock;
}

/** An approval that passed every check except single use (the caller records its `jti`). */
export interface VerifiedApproval {
  /** The claims. */
  readonly claims: ApprovalClaims;
  /** Hash of the token. */
  readonly hash: string;
  /** How the approver proved presence. */
  readonly method: "session-key" | "webauthn+session-key";
}

/**
 * Step 12: verifies an approval for one call. Every failure is `ERR_AUTHZ_APPROVAL` with the
 * failed check in `details.check` (`human`, `role`, `four-eyes`, `intent`, `time`, `key`, `grant`,
 * `webauthn-…`); single use is the caller's last step.
 *
 * @param token - the approval JWS
 * @param context - the call and the verifier's state
 * @returns the verified approval
 * @throws AuthorizationError `ERR_AUTHZ_APPROVAL`
 * @example
 * ```ts
 * const approval = await verifyApproval(apv, { intent, chain, args, policy, directory, revocations, clock })
 * ```
 */
export async function verifyApproval(token: unknown, context: ApprovalContext): Promise<VerifiedApproval> {
  try {
    return await verifyApprovalUnwrapped(token, context);
  } catch (error) {
    if (error instanceof AuthorizationError && error.code !== "ERR_AUTHZ_APPROVAL") {
      throw new AuthorizationError("ERR_AUTHZ_APPROVAL", `approval: ${error.message}`, {
        step: 12,
        cause: error,
        details: { check: error.reason },
      });
    }
    throw error;
  }
}

async function verifyApprovalUnwrapped(token: unknown, context: ApprovalContext): Promise<VerifiedApproval> {
  const fail: (check: string, message: string) => never = (check, message) =>
    deny("ERR_AUTHZ_APPROVAL", `approval: ${message}`, 12, { check });
  const { intent, chain } = context;
  gateToken(token, "approval");
  const decoded = decodeToken(token, "tessera-apv+jwt", "approval", approvalStringCharsMax);
  const claims = parseApprovalClaims(decoded.payload);
  const approver = parsePrincipal(claims.iss);
  if (claims.tenant !== intent.tenant || approver.tenant !== intent.tenant) fail("tenant", "approval of another tenant");
  if (approver.kind !== "user") fail("human", "approver must be a human principal");
  if (claims.aud !== intent.tool) fail("audience", "approval for another tool");
  const now = nowSeconds(context.clock);
  const skew = identityLimits.clockSkewSeconds;
  if (now + skew < claims.iat || now - skew >= claims.exp) fail("time", "approval expired or not yet valid");
  const key = context.directory.get(intent.tenant, decoded.kid);
  if (
    key === undefined ||
    key.principal !== claims.iss ||
    key.status !== "active" ||
    claims.iat < key.validFrom ||
    claims.iat > key.validTo
  ) {
    fail("key", "approval not signed by the approver's active certified key");
  }
  const revokedAt = context.revocations.principalRevokedAt(intent.tenant, claims.iss);
  if (context.revocations.isKeyRevoked(intent.tenant, key.kid) || (revokedAt !== undefined && revokedAt > claims.iat))
    fail("key", "approver key or principal revoked");
  if (claims.intent !== approvalIntent(intent)) fail("intent", "intent mismatch");
  if ((await context.policy.approvers({ tenant: intent.tenant, approver: claims.iss, tool: intent.tool })) !== true)
    fail("role", "approver lacks the approver role");
  if (claims.grant === undefined) {
    const fourEyesBlocked = [intent.invoker, chain.subject, chain.onBehalfOf?.user];
    if (context.policy.fourEyes && fourEyesBlocked.includes(claims.iss))
      fail("four-eyes", "four-eyes: approver is the invoker or the chain's principal");
  } else {
    checkGrant(claims, context, fail);
  }
  await verifySignature(decoded, {
    key: key.publicKey,
    now: new Date(context.clock.now()),
    maxTokenAgeSeconds: identityLimits.approvalTtlSecondsMax,
    what: "approval",
    step: 12,
  });
  const webauthn = context.policy.webauthn;
  if (webauthn !== undefined) {
    if (claims.wa === undefined) fail("webauthn-missing", "a WebAuthn assertion is required");
    verifyWebAuthnAssertion(claims.wa, {
      tenant: intent.tenant,
      approver: claims.iss,
      challenge: approvalChallenge(claims),
      policy: webauthn,
    });
  }
  return { claims, hash: tokenHash(token), method: claims.wa === undefined ? "session-key" : "webauthn+session-key" };
}

/**
 * Approval-as-grant (IDENTITY.md §11 b): the chain is exactly the approver's one-shot root link,
 * addressed to the invoker, no longer-lived than the approval, with one capability for exactly
 * this resource and action whose caveats are exact equality on every top-level arg and nothing
 * else. (Its caveats were already evaluated on the args in step 11; the oracle already confirmed
 * the approver holds root authority in step 5.)
 */
function checkGrant(claims: ApprovalClaims, context: ApprovalContext, fail: (check: string, message: string) => never): void {
  const { chain, intent, args } = context;
  const root = chain.links[0];
  if (chain.links.length !== 1 || root === undefined || chain.leafHash !== claims.grant)
    fail("grant", "the chain is not the approval's grant");
  if (root.iss !== claims.iss) fail("grant", "the grant is not the approver's");
  if (chain.exp > claims.exp) fail("grant", "the grant outlives the approval");
  if (intent.invoker === claims.iss) fail("four-eyes", "four-eyes: approver is the invoker");
  if (args === null || typeof args !== "object" || Array.isArray(args)) return fail("grant", "a grant needs object args");
  const cap = root.caps[0];
  if (root.caps.length !== 1 || cap === undefined || cap.res !== intent.res || cap.act !== intent.act)
    fail("grant", "the grant is not for exactly this capability");
  const keys = Object.keys(args).sort();
  const pinned = cap.cav.map((statement) =>
    statement[0] === "==" && typeof statement[1] === "string" ? statement[1].slice(1) : undefined,
  );
  if (pinned.includes(undefined) || pinned.length !== keys.length || [...pinned].sort().join("\u0000") !== keys.join("\u0000")) {
    fail("grant", "a grant pins every arg by exact equality");
  }
}

function parseApprovalClaims(payload: Record<string, unknown>): ApprovalClaims {
  const what = "approval";
  checkMembers(payload, ["iss", "aud", "tenant", "jti", "iat", "exp", "dec", "intent", "summary_h"], ["grant", "wa"], what);
  claimPrincipal(payload.iss, `${what} iss`);
  claimPrincipal(payload.aud, `${what} aud`);
  const times = claimTimes(payload, what, identityLimits.approvalTtlSecondsMax, 12);
  if (payload.dec !== "approve") deny("ERR_AUTHZ_APPROVAL", `${what}: dec must be approve`, 12, { check: "decision" });
  let claims: ApprovalClaims = {
    iss: payload.iss as string,
    aud: payload.aud as string,
    tenant: claimString(payload.tenant, `${what} tenant`),
    jti: claimJti(payload.jti, `${what} jti`),
    iat: times.iat,
    exp: times.exp,
    dec: "approve",
    intent: claimHash(payload.intent, `${what} intent`),
    summary_h: claimHash(payload.summary_h, `${what} summary_h`),
  };
  if (payload.grant !== undefined) claims = { ...claims, grant: claimHash(payload.grant, `${what} grant`) };
  if (payload.wa !== undefined) {
    const wa = claimObject(payload.wa, `${what} wa`);
    checkMembers(wa, ["credId", "authenticatorData", "clientDataJSON", "signature"], [], `${what} wa`);
    claims = {
      ...claims,
      wa: {
        credId: claimString(wa.credId, `${what} wa.credId`, 512),
        authenticatorData: claimString(wa.authenticatorData, `${what} wa.authenticatorData`, 1024),
        clientDataJSON: claimString(wa.clientDataJSON, `${what} wa.clientDataJSON`, 2048),
        signature: claimString(wa.signature, `${what} wa.signature`, 256),
      },
    };
  }
  return claims;
}
