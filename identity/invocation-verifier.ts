import { assert } from "../core/assert.js";
import type { Clock } from "../core/clock.js";
import { AgentError, LimitError } from "../core/errors.js";
import { verifyApproval } from "./approval.js";
import type { ApprovalPolicy, VerifiedApproval } from "./approval.js";
import { canonicalize } from "./canonical-json.js";
import { covers, isAction, isResource } from "./capabilities.js";
import type { ChainCache } from "./chain-cache.js";
import { recheckVerifiedChain, verifyChain } from "./chain-verifier.js";
import type { ChainContext, RootAuthorityOracle, VerifiedChain } from "./chain-verifier.js";
import { nowSeconds, tokenHash } from "./encoding.js";
import { deny } from "./errors.js";
import { parseInvocationClaims } from "./invocation.js";
import type { ParsedInvocation } from "./invocation.js";
import { statusEpochOf, type KeyRecord, type KeyResolver } from "./key-directory.js";
import { identityLimits } from "./limits.js";
import { parsePrincipal } from "./principal.js";
import type { ReplayStore } from "./replay-store.js";
import type { RevocationReader } from "./revocation-list.js";
import { decodeToken, gateChain, gateToken, verifySignature } from "./token-codec.js";
import { createVerifiedInvocation, deepFreeze } from "./verified-invocation.js";
import type { AuthorizationAudit, VerifiedInvocation } from "./verified-invocation.js";

/** A tool as the verifier sees it: its principal, its static requirements and its gate. */
export interface ToolPolicy {
  /** The tool principal, `tsr:<tenant>:tool:<id>`: the invocation's `aud`. */
  readonly id: string;
  /** The only resource it accepts, e.g. `tool:refund`. */
  readonly res: string;
  /** The actions it accepts, e.g. `["/invoke"]`. */
  readonly acts: readonly string[];
  /** Largest canonical args, in bytes. @defaultValue 65536 */
  readonly argsBytesMax?: number;
  /**
   * `read`: read-only, may fail open on a stale revocation feed when the tenant opted in;
   * anything else fails closed. @defaultValue "write"
   */
  readonly risk?: "read" | "write";
  /** The approval gate; absent when the tool never needs approval. */
  readonly approval?: ApprovalPolicy;
}

/** Options of {@link createInvocationVerifier}. */
export interface InvocationVerifierOptions {
  /** The executor's tenant `T`. */
  readonly tenant: string;
  /** The tool this verifier guards. */
  readonly tool: ToolPolicy;
  /** Tenant key directory. */
  readonly directory: KeyResolver;
  /** Revocation state. */
  readonly revocations: RevocationReader;
  /** Single-use store for invocations, approvals and one-shot grants; share it across executors of a tool. */
  readonly replay: ReplayStore;
  /** Root-authority oracle. */
  readonly rootAuthority: RootAuthorityOracle;
  /** The node clock corrected to the store's clock. */
  readonly clock: Clock;
  /** Verified-chain cache; omit to always verify cold. */
  readonly cache?: ChainCache;
  /** Oldest acceptable revocation feed, in ms. @defaultValue 5000 */
  readonly revocationStalenessMsMax?: number;
  /** The tenant opted in to read-only tools failing open on a stale feed. @defaultValue false */
  readonly failOpenReadOnlyWhenStale?: boolean;
}

/** One call to verify: the bundle of IDENTITY.md §13 plus the journal's effect id. */
export interface InvocationRequest {
  /** The chain, root first; omit in session mode (the executor has it cached by the invocation's `prf`). */
  readonly chain?: readonly string[];
  /** The invocation JWS. */
  readonly invocation: string;
  /** The exact args the tool will execute. */
  readonly args: unknown;
  /** The effect id the journal holds for this call. */
  readonly effectId: string;
  /** The approval JWS, for gated calls. */
  readonly approval?: string;
}

/** Verifies tool calls for one tool of one tenant. */
export interface InvocationVerifier {
  /** The options it was created with. */
  readonly options: InvocationVerifierOptions;
  /**
   * Runs IDENTITY.md §6 steps 0–12 for one call and, when every check passes, consumes the
   * invocation's (and approval's) single use.
   *
   * @param request - chain, invocation, args, effect id, approval
   * @returns the authorised context for the audit record and the vault
   * @throws AuthorizationError with the code of the first failing step
   */
  verify(request: InvocationRequest): Promise<VerifiedInvocation>;
}

/**
 * Creates the verifier a tool executor runs before every call (IDENTITY.md §6). The order is
 * cheapest first: sizes, headers and schemas of every token; the invocation's self-contained
 * claims (tenant, tool, time, args hash, effect id); the chain (from the cache with per-hit
 * re-checks, or cold, steps 0–9); the invocation's holder, key and linkage to the chain and its
 * signature (10); authorization on the args through every link (11); the approval gate (12); and
 * last, single use of the invocation, approval and one-shot grant.
 *
 * @param options - tenant, tool, directory, revocations, replay store, oracle, clock, cache
 * @returns the verifier
 * @example
 * ```ts
 * const verifier = createInvocationVerifier({ tenant: "t_acme", tool: { id: "tsr:t_acme:tool:refund", res: "tool:refund", acts: ["/invoke"] },
 *   directory, revocations, replay, rootAuthority, clock, cache })
 * const verified = await verifier.verify({ chain, invocation, args, effectId })
 * ```
 */
export function createInvocationVerifier(options: InvocationVerifierOptions): InvocationVerifier {
  const tool = parsePrincipal(options.tool.id);
  assert(tool.kind === "tool" && tool.tenant === options.tenant, "the verifier guards a tool of its own tenant");
  assert(isResource(options.tool.res, false), "the tool's resource is valid");
  assert(options.tool.acts.length > 0 && options.tool.acts.every((act) => isAction(act, false)), "the tool's actions are valid");
  const context: ChainContext = options;
  return { options, verify: (request) => verifyRequest(request, options, context) };
}

async function verifyRequest(
  request: InvocationRequest,
  options: InvocationVerifierOptions,
  context: ChainContext,
): Promise<VerifiedInvocation> {
  const { tool } = options;
  gateToken(request.invocation, "invocation");
  if (request.chain !== undefined) gateChain(request.chain);
  const revocationStale = checkFeed(options);
  const canonicalArgs = canonicalArgsOf(request.args, tool.argsBytesMax ?? identityLimits.argsBytesMaxDefault);
  const decoded = decodeToken(request.invocation, "tessera-inv+jwt", "invocation");
  const invocation = parseInvocationClaims(decoded.payload);
  checkInvocationClaims(invocation, canonicalArgs, request.effectId, options);
  const { chain, cache, directoryEpoch } = await resolveChain(request.chain, invocation.claims.prf, options, context);
  const claims = invocation.claims;
  if (claims.iss !== chain.holder) deny("ERR_AUTHZ_AUDIENCE", "invoker is not the chain holder", 10);
  const invoker = checkInvokerKey(claims, decoded.kid, options);
  if (claims.sub !== chain.subject) deny("ERR_AUTHZ_LINKAGE", "invocation sub is not the chain's sub", 10);
  if (claims.prf !== chain.leafHash) deny("ERR_AUTHZ_LINKAGE", "invocation prf is not the hash of the leaf", 10);
  await verifySignature(decoded, {
    key: invoker.publicKey,
    now: new Date(options.clock.now()),
    maxTokenAgeSeconds: identityLimits.invocationTtlSecondsMax,
    what: "invocation",
    step: 10,
  });
  const args = deepFreeze(JSON.parse(canonicalArgs) as unknown);
  authorize(chain, claims, args, tool);
  const approval = await checkGate(request.approval, chain, invocation, args, options);
  await consumeSingleUse(claims, approval, chain, options);
  return createVerifiedInvocation({
    args,
    revocationStale,
    tokens: { chain: chain.tokens, invocation: request.invocation, approval: approval === undefined ? undefined : request.approval },
    audit: auditOf(request.invocation, claims, invoker, chain, approval, cache, directoryEpoch, options),
  });
}

/** The authorization fields of the audit record (IDENTITY.md §12). */
function auditOf(
  invocation: string,
  claims: ParsedInvocation["claims"],
  invoker: KeyRecord,
  chain: VerifiedChain,
  approval: VerifiedApproval | undefined,
  cache: AuthorizationAudit["verifier"]["cache"],
  directoryEpoch: number,
  options: InvocationVerifierOptions,
): AuthorizationAudit {
  return {
    tenant: options.tenant,
    tool: options.tool.id,
    res: claims.res,
    act: claims.act,
    actor: { principal: claims.iss, kid: invoker.kid, identityJti: invoker.identityJti, runtime: invoker.node },
    onBehalfOf: chain.subject,
    rootOnBehalfOf: chain.onBehalfOf === undefined ? undefined : { user: chain.onBehalfOf.user, authnHash: chain.onBehalfOf.authn_h },
    chain: chain.links.map(({ hash, jti, iss, aud, kid, exp }) => ({ hash, jti, iss, aud, kid, exp })),
    invocation: { hash: tokenHash(invocation), jti: claims.jti, eff: claims.eff, argsHash: claims.args_h, cause: claims.cause },
    approval:
      approval === undefined
        ? undefined
        : {
            hash: approval.hash,
            approver: approval.claims.iss,
            method: approval.method,
            jti: approval.claims.jti,
            grant: approval.claims.grant !== undefined,
          },
    verifier: {
      version: "tessera-authz/1",
      directoryEpoch,
      revocationPosition: options.revocations.feed(options.tenant).position,
      cache,
    },
  };
}

/** §9: a stale revocation feed fails closed, except read-only ungated tools where the tenant opted in. */
function checkFeed(options: InvocationVerifierOptions): boolean {
  const { syncedAtMs } = options.revocations.feed(options.tenant);
  const maxMs = options.revocationStalenessMsMax ?? identityLimits.revocationStalenessMsMax;
  if (syncedAtMs !== undefined && options.clock.now() - syncedAtMs <= maxMs) return false;
  const failOpen = options.failOpenReadOnlyWhenStale === true && options.tool.risk === "read" && options.tool.approval === undefined;
  if (!failOpen) deny("ERR_AUTHZ_REVOCATION_STALE", `the revocation feed is older than ${maxMs} ms`, 8);
  return true;
}

function canonicalArgsOf(args: unknown, bytesMax: number): string {
  let text: string;
  try {
    text = canonicalize(args, { depthMax: identityLimits.argsDepthMax, charsMax: bytesMax });
  } catch (error) {
    if (error instanceof LimitError) {
      return deny("ERR_AUTHZ_LIMITS", `args: ${error.message}`, 10, {
        limit: error.code === "ERR_PAYLOAD_TOO_DEEP" ? "argsDepthMax" : "argsBytesMax",
      });
    }
    if (error instanceof AgentError && error.code === "ERR_JCS_INVALID") return deny("ERR_AUTHZ_ARGS", `args: ${error.message}`, 10);
    throw error;
  }
  if (Buffer.byteLength(text, "utf8") > bytesMax)
    deny("ERR_AUTHZ_LIMITS", `args are larger than the tool's ${bytesMax} bytes`, 10, { limit: "argsBytesMax" });
  return text;
}

/** Step 10, the checks that need neither the chain nor the directory: tenant, audience, time, args, effect. */
function checkInvocationClaims(
  invocation: ParsedInvocation,
  canonicalArgs: string,
  effectId: string,
  options: InvocationVerifierOptions,
): void {
  const { claims } = invocation;
  const tenant = options.tenant;
  if (
    claims.tenant !== tenant ||
    invocation.issuer.tenant !== tenant ||
    invocation.subject.tenant !== tenant ||
    invocation.audience.tenant !== tenant
  ) {
    deny("ERR_AUTHZ_TENANT", `invocation is not for tenant ${tenant}`, 10);
  }
  if (claims.aud !== options.tool.id) deny("ERR_AUTHZ_AUDIENCE", `invocation is for ${claims.aud}, not ${options.tool.id}`, 10);
  const now = nowSeconds(options.clock);
  const skew = identityLimits.clockSkewSeconds;
  if (now + skew < claims.iat) deny("ERR_AUTHZ_TIME", "invocation issued in the future", 10);
  if (now - skew >= claims.exp) deny("ERR_AUTHZ_TIME", "invocation expired", 10);
  if (claims.args_h !== tokenHash(canonicalArgs)) deny("ERR_AUTHZ_ARGS", "args differ from the args the invocation signed", 10);
  if (claims.eff !== effectId) deny("ERR_AUTHZ_EFFECT", "invocation is for another effect", 10);
}

/**
 * Step 10, proof of possession: the invocation's `kid` is certified for the invoker in this
 * tenant, valid when it signed, not revoked, and **active** (a retired key, such as a zombie
 * node's from the previous lease epoch, may still verify old links but never a new invocation).
 */
function checkInvokerKey(claims: ParsedInvocation["claims"], kid: string, options: InvocationVerifierOptions): KeyRecord {
  const tenant = options.tenant;
  const key = options.directory.get(tenant, kid);
  if (key === undefined || key.principal !== claims.iss) return deny("ERR_AUTHZ_KEY", "invocation kid is not certified for its issuer", 10);
  if (key.status === "compromised" || options.revocations.isKeyRevoked(tenant, key.kid))
    deny("ERR_AUTHZ_REVOKED", "invoker key is compromised or revoked", 10);
  const revokedAt = options.revocations.principalRevokedAt(tenant, claims.iss);
  if (revokedAt !== undefined && revokedAt > claims.iat) deny("ERR_AUTHZ_REVOKED", "invoker is revoked", 10);
  if (key.status !== "active") deny("ERR_AUTHZ_KEY", "invoker key is retired: only the current lease holder's key may invoke", 10);
  if (claims.iat < key.validFrom || claims.iat > key.validTo) deny("ERR_AUTHZ_KEY", "invocation signed outside the key's validity", 10);
  return key;
}

/** The cached path (exact tokens, same epoch, per-hit re-checks) or cold verification. */
async function resolveChain(
  tokens: readonly string[] | undefined,
  prf: string,
  options: InvocationVerifierOptions,
  context: ChainContext,
): Promise<{ chain: VerifiedChain; cache: "hit" | "miss" | "session"; directoryEpoch: number }> {
  const leafHash = tokens === undefined ? prf : tokenHash(tokens[tokens.length - 1] as string);
  let cached = options.cache?.get(options.tenant, leafHash);
  // An age out of [0, TTL] is stale: a clock that stepped back must not stretch the TTL.
  const age = cached === undefined ? 0 : options.clock.now() - cached.verifiedAtMs;
  if (cached !== undefined && !(age >= 0 && age <= identityLimits.chainCacheTtlMs)) {
    options.cache?.delete(options.tenant, leafHash);
    cached = undefined;
  }
  // Keys certified or renewed since leave a verification valid; a retirement or compromise does not.
  const epoch = statusEpochOf(options.directory, options.tenant);
  if (cached !== undefined && cached.statusEpoch === epoch && (tokens === undefined || sameTokens(cached.tokens, tokens))) {
    try {
      recheckVerifiedChain(cached, context);
    } catch (error) {
      options.cache?.delete(options.tenant, leafHash);
      throw error;
    }
    // The directory the hit was checked against: read in the same tick as the status epoch.
    return { chain: cached, cache: tokens === undefined ? "session" : "hit", directoryEpoch: options.directory.epoch(options.tenant) };
  }
  if (tokens === undefined) return deny("ERR_AUTHZ_CHAIN_REQUIRED", "chain required: the executor has not cached it", 8);
  const chain = await verifyChain(tokens, context);
  options.cache?.set(chain);
  return { chain, cache: "miss", directoryEpoch: chain.directoryEpoch };
}

function sameTokens(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((token, index) => token === b[index]);
}

/** Step 11: the tool's own requirements, then every link must grant `want` with caveats true on the args. */
function authorize(chain: VerifiedChain, claims: ParsedInvocation["claims"], args: unknown, tool: ToolPolicy): void {
  const want = { res: claims.res, act: claims.act };
  if (want.res !== tool.res || !tool.acts.includes(want.act))
    deny("ERR_AUTHZ_CAPABILITY", `the tool accepts only ${tool.res} ${tool.acts.join(" ")}`, 11);
  chain.links.forEach((link, index) => {
    let covered = false;
    for (let capIndex = 0; capIndex < link.caps.length; capIndex++) {
      if (!covers(link.caps[capIndex] as { res: string; act: string }, want)) continue;
      covered = true;
      if ((link.predicates[capIndex] as (args: unknown) => boolean)(args)) return;
    }
    if (!covered) deny("ERR_AUTHZ_CAPABILITY", `link ${index} grants no capability for ${want.res} ${want.act}`, 11, { link: index });
    deny("ERR_AUTHZ_CAVEAT", `link ${index}: the args fail its caveats`, 11, { link: index });
  });
}

/** Step 12: the tool's gate. */
async function checkGate(
  token: string | undefined,
  chain: VerifiedChain,
  invocation: ParsedInvocation,
  args: unknown,
  options: InvocationVerifierOptions,
): Promise<VerifiedApproval | undefined> {
  const policy = options.tool.approval;
  if (policy === undefined || !policy.required(args)) return undefined;
  if (token === undefined) return deny("ERR_AUTHZ_APPROVAL_REQUIRED", "these args need an approval", 12);
  const claims = invocation.claims;
  const intent = {
    tenant: options.tenant,
    tool: options.tool.id,
    res: claims.res,
    act: claims.act,
    argsHash: claims.args_h,
    invoker: claims.iss,
    subject: claims.sub,
    leafHash: chain.leafHash,
    effectId: claims.eff,
  };
  return verifyApproval(token, {
    intent,
    chain,
    args,
    policy,
    directory: options.directory,
    revocations: options.revocations,
    clock: options.clock,
  });
}

/** Last: single use of the invocation, the approval and a one-shot grant, each until its expiry plus skew. */
async function consumeSingleUse(
  claims: ParsedInvocation["claims"],
  approval: VerifiedApproval | undefined,
  chain: VerifiedChain,
  options: InvocationVerifierOptions,
): Promise<void> {
  const skewMs = identityLimits.clockSkewSeconds * 1000;
  const tenant = options.tenant;
  if (!(await options.replay.checkAndInsert(`inv\u0000${tenant}\u0000${claims.iss}\u0000${claims.jti}`, claims.exp * 1000 + skewMs))) {
    deny("ERR_AUTHZ_REPLAY", "invocation replayed", 10);
  }
  if (approval === undefined) return;
  const approvalKey = `apv\u0000${tenant}\u0000${approval.claims.iss}\u0000${approval.claims.jti}`;
  if (!(await options.replay.checkAndInsert(approvalKey, approval.claims.exp * 1000 + skewMs)))
    deny("ERR_AUTHZ_REPLAY", "approval replayed", 12);
  const grant = chain.links[0];
  if (approval.claims.grant !== undefined && grant !== undefined) {
    if (!(await options.replay.checkAndInsert(`grant\u0000${tenant}\u0000${grant.jti}`, grant.exp * 1000 + skewMs)))
      deny("ERR_AUTHZ_REPLAY", "one-shot grant reused", 12);
  }
}
