import type { Clock } from "../core/clock.js";
import { ValidationError } from "../core/errors.js";
import { assertNarrower, checkCapabilities } from "./capabilities.js";
import type { Capability } from "./capabilities.js";
import { compileCaveats } from "./caveats.js";
import { nowSeconds, randomJti, tokenHash } from "./encoding.js";
import { deny } from "./errors.js";
import type { SigningKey } from "./keys.js";
import type { LinkClaims, ParsedLink, TaskRef } from "./link-claims.js";
import { parseLinkClaims } from "./link-claims.js";
import { identityLimits } from "./limits.js";
import { parsePrincipal } from "./principal.js";
import { decodeToken, gateChain } from "./token-codec.js";

/** Who signs a link: a principal and the key certified for it. */
export interface LinkIssuer {
  /** The issuing principal. */
  readonly principal: string;
  /** Its signing key (certified in the tenant directory, or a tenant authority anchor). */
  readonly key: SigningKey;
}

/** Options of {@link issueRootLink}. */
export interface RootLinkOptions {
  /** The first delegate. */
  readonly aud: string;
  /** What is granted; `*` resources only from a tenant authority. */
  readonly caps: readonly Capability[];
  /** Re-delegation budget below this root (0 = the delegate may only invoke). */
  readonly mdl: number;
  /** Lifetime, seconds. @defaultValue 3600 */
  readonly ttlSeconds?: number;
  /** The human a tenant-authority root acts for; required for authority roots, refused otherwise. */
  readonly onBehalfOf?: { readonly user: string; readonly authnHash: string };
  /** The causing task, for audit. */
  readonly task?: TaskRef;
  /** Issuer time. */
  readonly clock: Clock;
}

/** Options of {@link attenuate}. */
export interface AttenuateOptions {
  /** The chain the issuer holds (its leaf's `aud` is the issuer), root first. */
  readonly chain: readonly string[];
  /** The next delegate. */
  readonly aud: string;
  /** Capabilities, each covered by one of the leaf's. */
  readonly caps: readonly Capability[];
  /** Remaining budget. @defaultValue the parent's `mdl − 1` */
  readonly mdl?: number;
  /** Lifetime, seconds, clipped to the parent's expiry. @defaultValue 3600 */
  readonly ttlSeconds?: number;
  /** The causing task, for audit. */
  readonly task?: TaskRef;
  /** Issuer time. */
  readonly clock: Clock;
}

/**
 * Issues a root link (`dep 0`, `prf null`, `iss = sub`): by a tenant authority on behalf of a
 * human it authenticated (`onBehalfOf`), or by a human with a certified principal key.
 *
 * @param issuer - the root principal and its key
 * @param options - audience, capabilities, budget, lifetime
 * @returns the link, a one-element chain's only token
 * @throws ValidationError `ERR_CAPABILITY_INVALID`, `ERR_CAVEAT_INVALID` or `ERR_VALIDATION` for a bad grant
 * @example
 * ```ts
 * const root = await issueRootLink({ principal: alice, key }, { aud: orchestrator, caps, mdl: 2, clock })
 * ```
 */
export async function issueRootLink(issuer: LinkIssuer, options: RootLinkOptions): Promise<string> {
  const principal = parsePrincipal(issuer.principal);
  const authority = principal.kind === "authority";
  if (!authority && principal.kind !== "user")
    throw new ValidationError("ERR_VALIDATION", "roots are issued by a tenant authority or a human");
  if (authority !== (options.onBehalfOf !== undefined)) {
    throw new ValidationError("ERR_VALIDATION", "a tenant-authority root names the human it acts for (onBehalfOf); a human root does not");
  }
  checkGrant(options.caps, { root: true, authorityRoot: authority });
  checkInteger(options.mdl, 0, identityLimits.delegationDepthMax - 1, "mdl");
  const now = nowSeconds(options.clock);
  const claims: LinkClaims = {
    v: 1,
    iss: issuer.principal,
    aud: parsePrincipalIn(options.aud, principal.tenant),
    sub: issuer.principal,
    tenant: principal.tenant,
    jti: randomJti(),
    iat: now,
    nbf: now,
    exp: now + lifetime(options.ttlSeconds),
    dep: 0,
    mdl: options.mdl,
    prf: null,
    caps: options.caps,
    ...(options.task === undefined ? {} : { task: options.task }),
    ...(options.onBehalfOf === undefined
      ? {}
      : { obo: { user: parsePrincipalIn(options.onBehalfOf.user, principal.tenant), authn_h: options.onBehalfOf.authnHash } }),
  };
  return issuer.key.signCompact("tessera-dlg+jwt", claims);
}

/**
 * Issues the next link of a chain the issuer holds, narrower than its parent in capabilities, time
 * and budget, and returns the extended chain. The same rules the verifier applies are checked
 * here first, so an over-broad delegation fails where it is made.
 *
 * @param issuer - the holder of `options.chain` (its leaf's `aud`) and its key
 * @param options - chain, audience, capabilities, budget, lifetime
 * @returns the chain with the new link appended
 * @throws AuthorizationError `ERR_AUTHZ_AUDIENCE` (not the holder), `ERR_AUTHZ_DEPTH` (no budget or too deep), `ERR_AUTHZ_WIDEN`, `ERR_AUTHZ_TIME` (parent expired)
 * @throws ValidationError `ERR_CAPABILITY_INVALID` or `ERR_CAVEAT_INVALID`
 * @example
 * ```ts
 * const chain2 = await attenuate({ principal: orchestrator, key }, { chain, aud: worker, caps: narrower, clock })
 * ```
 */
export async function attenuate(issuer: LinkIssuer, options: AttenuateOptions): Promise<readonly string[]> {
  const parent = readLeaf(options.chain);
  const parentClaims = parent.claims;
  if (parentClaims.aud !== issuer.principal) deny("ERR_AUTHZ_AUDIENCE", `only the holder ${parentClaims.aud} can attenuate this chain`, 5);
  if (options.chain.length >= identityLimits.delegationDepthMax) deny("ERR_AUTHZ_DEPTH", "the chain is at its maximum depth", 0);
  const mdl = options.mdl ?? parentClaims.mdl - 1;
  if (parentClaims.mdl < 1 || mdl > parentClaims.mdl - 1 || mdl < 0)
    deny("ERR_AUTHZ_DEPTH", "the re-delegation budget (mdl) does not allow this link", 6);
  checkGrant(options.caps, { root: false, authorityRoot: false });
  assertNarrower(parentClaims.caps, options.caps, options.chain.length);
  const now = nowSeconds(options.clock);
  const nbf = Math.max(parentClaims.nbf, now);
  const exp = Math.min(parentClaims.exp, now + lifetime(options.ttlSeconds));
  if (nbf > exp) deny("ERR_AUTHZ_TIME", "the parent link has expired", 7);
  const claims: LinkClaims = {
    v: 1,
    iss: issuer.principal,
    aud: parsePrincipalIn(options.aud, parentClaims.tenant),
    sub: parentClaims.sub,
    tenant: parentClaims.tenant,
    jti: randomJti(),
    iat: now,
    nbf,
    exp,
    dep: parentClaims.dep + 1,
    mdl,
    prf: tokenHash(options.chain[options.chain.length - 1] as string),
    caps: options.caps,
    ...(options.task === undefined ? {} : { task: options.task }),
  };
  return [...options.chain, await issuer.key.signCompact("tessera-dlg+jwt", claims)];
}

/**
 * Reads the leaf of a chain without verifying it (the verifier does that); used to derive the
 * next link's claims and by runtimes to route a chain to its holder.
 *
 * @param chain - a chain, root first
 * @returns the parsed leaf
 * @throws AuthorizationError when the chain fails the size gate or the leaf its schema
 * @example
 * ```ts
 * readLeaf(chain).claims.aud // the holder
 * ```
 */
export function readLeaf(chain: readonly string[]): ParsedLink {
  gateChain(chain);
  const index = chain.length - 1;
  return parseLinkClaims(decodeToken(chain[index] as string, "tessera-dlg+jwt", `link ${index}`).payload, index);
}

function checkGrant(caps: readonly Capability[], options: { root: boolean; authorityRoot: boolean }): void {
  if (caps.length > identityLimits.capabilitiesPerLinkMax) throw new ValidationError("ERR_CAPABILITY_INVALID", "too many capabilities");
  checkCapabilities(caps, options);
  for (const cap of caps) compileCaveats(cap.cav);
}

function lifetime(ttlSeconds: number | undefined): number {
  const ttl = ttlSeconds ?? identityLimits.linkTtlSecondsDefault;
  checkInteger(ttl, 1, identityLimits.linkTtlSecondsMax, "ttlSeconds");
  return ttl;
}

function checkInteger(value: number, min: number, max: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < min || value > max)
    throw new ValidationError("ERR_VALIDATION", `${name} must be an integer in ${min}..${max}`);
}

function parsePrincipalIn(text: string, tenant: string): string {
  if (parsePrincipal(text).tenant !== tenant) throw new ValidationError("ERR_VALIDATION", `${text} is not in tenant ${tenant}`);
  return text;
}
