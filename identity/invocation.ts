import type { Clock } from "../core/clock.js";
import { ValidationError } from "../core/errors.js";
import { defaultLimits } from "../core/limits.js";
import { argsHash } from "./canonical-json.js";
import { isAction, isResource } from "./capabilities.js";
import { checkMembers, claimHash, claimJti, claimPrincipal, claimString, claimTimes } from "./claims-schema.js";
import type { LinkIssuer } from "./delegation.js";
import { readLeaf } from "./delegation.js";
import { nowSeconds, randomJti, tokenHash } from "./encoding.js";
import { deny } from "./errors.js";
import { identityLimits } from "./limits.js";
import type { Principal } from "./principal.js";
import { parsePrincipal } from "./principal.js";

/** Claims of an invocation, `tessera-inv+jwt` (IDENTITY.md §7). */
export interface InvocationClaims {
  /** The invoker: the chain's holder. */
  readonly iss: string;
  /** The tool principal, `tsr:<tenant>:tool:<id>`. */
  readonly aud: string;
  /** The chain's root principal. */
  readonly sub: string;
  /** Tenant. */
  readonly tenant: string;
  /** Fresh per attempt; single use. */
  readonly jti: string;
  /** Issued at, seconds. */
  readonly iat: number;
  /** Expiry, seconds; at most 120 s after `iat`. */
  readonly exp: number;
  /** Resource wanted. */
  readonly res: string;
  /** Action wanted. */
  readonly act: string;
  /** base64url SHA-256 of the JCS args. */
  readonly args_h: string;
  /** The journal's effect id: the same on every retry of one effect. */
  readonly eff: string;
  /** Hash of the chain's leaf. */
  readonly prf: string;
  /** The message that caused the call, audit only. */
  readonly cause?: string;
}

/** An invocation whose claims passed the strict schema. */
export interface ParsedInvocation {
  /** The claims. */
  readonly claims: InvocationClaims;
  /** Parsed `iss`. */
  readonly issuer: Principal;
  /** Parsed `aud`. */
  readonly audience: Principal;
  /** Parsed `sub`. */
  readonly subject: Principal;
}

const required = ["iss", "aud", "sub", "tenant", "jti", "iat", "exp", "res", "act", "args_h", "eff", "prf"] as const;
const optional = ["cause"] as const;
const effectIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/**
 * Step 2 for an invocation: its strict claim schema, including `exp − iat ≤ 120`.
 *
 * @param payload - a decoded invocation payload
 * @returns the parsed invocation
 * @throws AuthorizationError `ERR_AUTHZ_SCHEMA` or `ERR_AUTHZ_TIME`
 * @example
 * ```ts
 * const invocation = parseInvocationClaims(decodeToken(token, "tessera-inv+jwt", "invocation").payload)
 * ```
 */
export function parseInvocationClaims(payload: Record<string, unknown>): ParsedInvocation {
  const what = "invocation";
  checkMembers(payload, required, optional, what);
  const issuer = claimPrincipal(payload.iss, `${what} iss`);
  const audience = claimPrincipal(payload.aud, `${what} aud`);
  const subject = claimPrincipal(payload.sub, `${what} sub`);
  if (audience.kind !== "tool") deny("ERR_AUTHZ_AUDIENCE", `${what}: aud must be a tool`, 10);
  const times = claimTimes(payload, what, identityLimits.invocationTtlSecondsMax, 10);
  if (!isResource(payload.res, false) || !isAction(payload.act, false)) deny("ERR_AUTHZ_SCHEMA", `${what}: bad res or act`, 2);
  if (typeof payload.eff !== "string" || !effectIdPattern.test(payload.eff)) deny("ERR_AUTHZ_SCHEMA", `${what}: bad eff`, 2);
  const claims: InvocationClaims = {
    iss: payload.iss as string,
    aud: payload.aud as string,
    sub: payload.sub as string,
    tenant: claimString(payload.tenant, `${what} tenant`),
    jti: claimJti(payload.jti, `${what} jti`),
    iat: times.iat,
    exp: times.exp,
    res: payload.res,
    act: payload.act,
    args_h: claimHash(payload.args_h, `${what} args_h`),
    eff: payload.eff,
    prf: claimHash(payload.prf, `${what} prf`),
    ...(payload.cause === undefined ? {} : { cause: claimString(payload.cause, `${what} cause`, 128) }),
  };
  return { claims, issuer, audience, subject };
}

/** Options of {@link signInvocation}. */
export interface SignInvocationOptions {
  /** The chain the invoker holds, root first. */
  readonly chain: readonly string[];
  /** The tool principal. */
  readonly tool: string;
  /** Resource. */
  readonly res: string;
  /** Action. */
  readonly act: string;
  /** The exact args the tool will receive. */
  readonly args: unknown;
  /** The journal's effect id. */
  readonly effectId: string;
  /** The causing message, audit only. */
  readonly cause?: string;
  /** Lifetime, seconds, at most 120. @defaultValue 60 */
  readonly ttlSeconds?: number;
  /** Invoker time. */
  readonly clock: Clock;
}

/**
 * Signs an invocation with the holder's current key: proof of possession of the chain, bound to
 * one tool, one set of args (by hash) and one effect. A fresh `jti` every call, so a retry of the
 * same effect is a new invocation with the same `eff`.
 *
 * @param invoker - the chain's holder and its key
 * @param options - chain, tool, capability, args, effect
 * @returns the compact JWS
 * @throws AuthorizationError `ERR_AUTHZ_AUDIENCE` when the invoker does not hold the chain
 * @throws ValidationError for bad args, tool, resource or lifetime
 * @example
 * ```ts
 * const inv = await signInvocation({ principal: worker, key }, { chain, tool: refundTool, res: "tool:refund", act: "/invoke", args, effectId, clock })
 * ```
 */
export async function signInvocation(invoker: LinkIssuer, options: SignInvocationOptions): Promise<string> {
  const leaf = readLeaf(options.chain).claims;
  if (leaf.aud !== invoker.principal) deny("ERR_AUTHZ_AUDIENCE", `invoker ${invoker.principal} is not the chain holder ${leaf.aud}`, 10);
  const tool = parsePrincipal(options.tool);
  if (tool.kind !== "tool" || tool.tenant !== leaf.tenant)
    throw new ValidationError("ERR_VALIDATION", "the audience of an invocation is a tool of the chain's tenant");
  if (!isResource(options.res, false) || !isAction(options.act, false)) throw new ValidationError("ERR_VALIDATION", "bad res or act");
  if (!effectIdPattern.test(options.effectId)) throw new ValidationError("ERR_VALIDATION", "bad effect id");
  const ttl = options.ttlSeconds ?? 60;
  if (!Number.isSafeInteger(ttl) || ttl < 1 || ttl > identityLimits.invocationTtlSecondsMax)
    throw new ValidationError("ERR_VALIDATION", "ttlSeconds in 1..120");
  const now = nowSeconds(options.clock);
  const claims: InvocationClaims = {
    iss: invoker.principal,
    aud: options.tool,
    sub: leaf.sub,
    tenant: leaf.tenant,
    jti: randomJti(),
    iat: now,
    exp: now + ttl,
    res: options.res,
    act: options.act,
    args_h: argsHash(options.args, { depthMax: identityLimits.argsDepthMax, charsMax: defaultLimits.payloadBytesMax }),
    eff: options.effectId,
    prf: tokenHash(options.chain[options.chain.length - 1] as string),
    ...(options.cause === undefined ? {} : { cause: options.cause }),
  };
  return invoker.key.signCompact("tessera-inv+jwt", claims);
}
