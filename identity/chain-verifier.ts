import type { Clock } from "../core/clock.js";
import { assertNarrower } from "./capabilities.js";
import type { Capability } from "./capabilities.js";
import type { CaveatPredicate } from "./caveats.js";
import { nowSeconds, tokenHash } from "./encoding.js";
import { deny } from "./errors.js";
import { statusEpochOf, type KeyRecord, type KeyResolver } from "./key-directory.js";
import type { LinkClaims, OnBehalfOf, ParsedLink } from "./link-claims.js";
import { parseLinkClaims } from "./link-claims.js";
import { identityLimits } from "./limits.js";
import type { RevocationReader } from "./revocation-list.js";
import { decodeToken, gateChain, verifySignature } from "./token-codec.js";
import type { DecodedToken } from "./token-codec.js";

/** What the root-authority oracle is asked (IDENTITY.md §6 step 5). */
export interface RootAuthorityRequest {
  /** The tenant. */
  readonly tenant: string;
  /** The root principal (`sub`): a tenant authority or a human. */
  readonly subject: string;
  /** For a tenant-authority root, the human it acts for (`obo.user`), whose role decides. */
  readonly onBehalfOf: string | undefined;
  /** The capability the root grants. */
  readonly capability: Capability;
}

/**
 * The ReBAC/RBAC lookup behind every root: may this principal (or the human a tenant-authority
 * root acts for) grant this resource and action? Deny by returning false.
 */
export type RootAuthorityOracle = (request: RootAuthorityRequest) => boolean | Promise<boolean>;

/** What the verifier needs besides the chain. */
export interface ChainContext {
  /** The verifier's tenant `T`. */
  readonly tenant: string;
  /** The tenant directory `D_T`. */
  readonly directory: KeyResolver;
  /** Revocation state `R_T`. */
  readonly revocations: RevocationReader;
  /** The root-authority oracle. */
  readonly rootAuthority: RootAuthorityOracle;
  /** The node clock corrected to the store's clock (IDENTITY.md §6). */
  readonly clock: Clock;
}

/** One verified link, as the cache keeps it and the audit record shows it. */
export interface VerifiedLink {
  /** base64url SHA-256 of the link. */
  readonly hash: string;
  /** Revocation id. */
  readonly jti: string;
  /** Delegator. */
  readonly iss: string;
  /** Delegate. */
  readonly aud: string;
  /** Signing key. */
  readonly kid: string;
  /** Issued at, seconds. */
  readonly iat: number;
  /** Not before, seconds. */
  readonly nbf: number;
  /** Expiry, seconds. */
  readonly exp: number;
  /** Capabilities. */
  readonly caps: readonly Capability[];
  /** Compiled caveats, one per capability. */
  readonly predicates: readonly CaveatPredicate[];
}

/** The verified summary of a chain: the cache value of IDENTITY.md §8. */
export interface VerifiedChain {
  /** Tenant. */
  readonly tenant: string;
  /** Root principal on whose authority the chain stands. */
  readonly subject: string;
  /** The human behind a tenant-authority root. */
  readonly onBehalfOf: OnBehalfOf | undefined;
  /** The leaf's audience: the only principal that may invoke with it. */
  readonly holder: string;
  /** Effective window start (the leaf's `nbf`), seconds. */
  readonly nbf: number;
  /** Effective window end (the leaf's `exp`), seconds. */
  readonly exp: number;
  /** Hash of the leaf, which commits to every parent. */
  readonly leafHash: string;
  /** The links, root first. */
  readonly links: readonly VerifiedLink[];
  /** The tokens as presented, root first. */
  readonly tokens: readonly string[];
  /** The directory epoch the verification holds for (read with its last checks; audits name it on a miss). */
  readonly directoryEpoch: number;
  /** The status epoch (`statusEpochOf`) the verification holds for: a cached hit requires it unchanged. */
  readonly statusEpoch: number;
  /** When the root-authority oracle was asked (the context clock, ms): a hit requires it at most `chainCacheTtlMs` old. */
  readonly verifiedAtMs: number;
}

interface CheckedLink {
  readonly decoded: DecodedToken;
  readonly parsed: ParsedLink;
  readonly hash: string;
  readonly key: KeyRecord;
}

/**
 * Verifies a delegation chain cold: IDENTITY.md §6 steps 0–9, cheapest first. Steps 0–8 are pure
 * and synchronous; the root-authority oracle and the signatures (all links in parallel) follow.
 * If the directory changed while those were awaited, key binding and revocation are checked again
 * against the current directory, so a key compromised mid-verification is never trusted.
 *
 * @param chain - the links, root first
 * @param context - tenant, directory, revocations, oracle, clock
 * @returns the verified summary
 * @throws AuthorizationError with the code of the first failing step
 * @example
 * ```ts
 * const verified = await verifyChain(chain, { tenant: "t_acme", directory, revocations, rootAuthority, clock })
 * ```
 */
export async function verifyChain(chain: unknown, context: ChainContext): Promise<VerifiedChain> {
  gateChain(chain);
  const epochAtStart = context.directory.epoch(context.tenant);
  const decoded = chain.map((token, index) => decodeToken(token, "tessera-dlg+jwt", `link ${index}`));
  const parsed = decoded.map((token, index) => parseLinkClaims(token.payload, index));
  const now = nowSeconds(context.clock);
  const checked: CheckedLink[] = [];
  parsed.forEach((link, index) => {
    const previous = checked[index - 1];
    const hash = tokenHash(chain[index] as string);
    checkTenant(link, index, context.tenant);
    const key = checkKeyBinding(link.claims, (decoded[index] as DecodedToken).kid, index, context);
    checkLinkage(link, previous, index);
    checkAttenuation(link, previous, index);
    checkTime(link.claims, previous?.parsed.claims, index, now);
    checkRevocation(link.claims, hash, key.kid, index, context);
    checked.push({ decoded: decoded[index] as DecodedToken, parsed: link, hash, key });
  });
  // The oracle's answer is as old as the question: a cached entry's age counts from here.
  const askedAtMs = context.clock.now();
  await checkRootAuthority(checked[0] as CheckedLink, context);
  const currentDate = new Date(context.clock.now());
  await Promise.all(
    checked.map((link, index) =>
      verifySignature(link.decoded, {
        key: link.key.publicKey,
        now: currentDate,
        maxTokenAgeSeconds: identityLimits.linkTtlSecondsMax,
        what: `link ${index}`,
        step: 9,
      }),
    ),
  );
  const epoch = context.directory.epoch(context.tenant);
  if (epoch !== epochAtStart) {
    checked.forEach((link, index) => {
      checkKeyBinding(link.parsed.claims, link.decoded.kid, index, context);
      checkRevocation(link.parsed.claims, link.hash, link.key.kid, index, context);
    });
  }
  return summarize(checked, chain, context.tenant, epoch, statusEpochOf(context.directory, context.tenant), askedAtMs);
}

/**
 * The cached path's per-hit checks (IDENTITY.md §8): the wall-clock window of every link with skew,
 * and every link's `jti`, hash, `kid` and issuer against the current revocation state. The caller
 * has already matched the tenant, the exact tokens, the status epoch and the entry's age.
 *
 * @param verified - a cached summary
 * @param context - the verifier context
 * @throws AuthorizationError `ERR_AUTHZ_TIME` or `ERR_AUTHZ_REVOKED`
 * @example
 * ```ts
 * recheckVerifiedChain(cached, context)
 * ```
 */
export function recheckVerifiedChain(verified: VerifiedChain, context: ChainContext): void {
  const now = nowSeconds(context.clock);
  verified.links.forEach((link, index) => {
    checkWallClock(link, index, now);
    checkRevocation(link, link.hash, link.kid, index, context);
  });
}

function checkTenant(link: ParsedLink, index: number, tenant: string): void {
  if (link.claims.tenant !== tenant)
    deny("ERR_AUTHZ_TENANT", `link ${index}: tenant ${link.claims.tenant} is not ${tenant}`, 3, { link: index });
  if (link.issuer.tenant !== tenant || link.audience.tenant !== tenant || link.subject.tenant !== tenant) {
    deny("ERR_AUTHZ_TENANT", `link ${index}: iss, aud and sub must belong to ${tenant}`, 3, { link: index });
  }
}

/** Step 4: the header `kid` is certified, in this tenant, for this issuer, at the link's `iat`. */
function checkKeyBinding(
  claims: { readonly iss: string; readonly iat: number },
  kid: string,
  index: number,
  context: ChainContext,
): KeyRecord {
  const key = context.directory.get(context.tenant, kid);
  if (key === undefined) return deny("ERR_AUTHZ_KEY", `link ${index}: kid not certified in tenant ${context.tenant}`, 4, { link: index });
  if (key.principal !== claims.iss) deny("ERR_AUTHZ_KEY", `link ${index}: kid not certified for issuer ${claims.iss}`, 4, { link: index });
  if (key.status === "compromised") deny("ERR_AUTHZ_REVOKED", `link ${index}: the issuer key is compromised`, 4, { link: index });
  if (claims.iat < key.validFrom || claims.iat > key.validTo) {
    deny("ERR_AUTHZ_KEY", `link ${index}: signed at ${claims.iat}, outside the key's validity ${key.validFrom}..${key.validTo}`, 4, {
      link: index,
    });
  }
  return key;
}

/** Step 5: root shape, or hash, depth, subject and audience linkage to the previous link. */
function checkLinkage(link: ParsedLink, previous: CheckedLink | undefined, index: number): void {
  const claims = link.claims;
  if (previous === undefined) {
    if (claims.prf !== null || claims.dep !== 0) deny("ERR_AUTHZ_LINKAGE", "link 0: a root has prf null and dep 0", 5, { link: 0 });
    if (claims.iss !== claims.sub) deny("ERR_AUTHZ_ROOT", "link 0: a root is issued by its subject (iss = sub)", 5, { link: 0 });
    const authority = link.issuer.kind === "authority";
    if (!authority && link.issuer.kind !== "user")
      deny("ERR_AUTHZ_ROOT", "link 0: roots are issued by a tenant authority or a human", 5, { link: 0 });
    if (authority !== (claims.obo !== undefined))
      deny("ERR_AUTHZ_ROOT", "link 0: a tenant-authority root, and only it, names its human (obo)", 5, { link: 0 });
    return;
  }
  const parent = previous.parsed.claims;
  if (claims.obo !== undefined) deny("ERR_AUTHZ_SCHEMA", `link ${index}: obo is for roots only`, 2, { link: index });
  if (claims.prf !== previous.hash)
    deny("ERR_AUTHZ_LINKAGE", `link ${index}: prf is not the hash of link ${index - 1}`, 5, { link: index });
  if (claims.dep !== index) deny("ERR_AUTHZ_LINKAGE", `link ${index}: dep must be ${index}`, 5, { link: index });
  if (claims.sub !== parent.sub) deny("ERR_AUTHZ_LINKAGE", `link ${index}: sub changed along the chain`, 5, { link: index });
  if (claims.iss !== parent.aud)
    deny("ERR_AUTHZ_AUDIENCE", `link ${index}: issuer ${claims.iss} is not the previous audience ${parent.aud}`, 5, { link: index });
}

/** Step 6: `*` only at a tenant-authority root, `/` only at a root; caps covered; budget spent. */
function checkAttenuation(link: ParsedLink, previous: CheckedLink | undefined, index: number): void {
  const claims = link.claims;
  for (const cap of claims.caps) {
    if (cap.res === "*" && (previous !== undefined || link.issuer.kind !== "authority")) {
      deny("ERR_AUTHZ_WIDEN", `link ${index}: res * is allowed only at a tenant-authority root`, 6, { link: index });
    }
    if (cap.act === "/" && previous !== undefined)
      deny("ERR_AUTHZ_WIDEN", `link ${index}: act / is allowed only at a root`, 6, { link: index });
  }
  if (previous === undefined) return;
  const parent = previous.parsed.claims;
  assertNarrower(parent.caps, claims.caps, index);
  if (claims.mdl > parent.mdl - 1)
    deny("ERR_AUTHZ_DEPTH", `link ${index}: re-delegation budget exhausted (mdl ${claims.mdl}, parent ${parent.mdl})`, 6, { link: index });
}

/** Step 7: exact narrowing between tokens, then the wall clock with skew. */
function checkTime(claims: LinkClaims, parent: LinkClaims | undefined, index: number, now: number): void {
  if (parent !== undefined && (claims.nbf < parent.nbf || claims.exp > parent.exp)) {
    deny("ERR_AUTHZ_TIME", `link ${index}: validity not narrowed`, 7, { link: index });
  }
  checkWallClock(claims, index, now);
}

function checkWallClock(window: { readonly nbf: number; readonly exp: number }, index: number, now: number): void {
  const skew = identityLimits.clockSkewSeconds;
  if (now + skew < window.nbf) deny("ERR_AUTHZ_TIME", `link ${index}: not yet valid`, 7, { link: index });
  if (now - skew >= window.exp) deny("ERR_AUTHZ_TIME", `link ${index}: expired`, 7, { link: index });
}

/** Step 8: the link by id and by hash, its key, and its issuer as of its `iat`. */
function checkRevocation(
  claims: { readonly jti: string; readonly iss: string; readonly iat: number },
  hash: string,
  kid: string,
  index: number,
  context: ChainContext,
): void {
  const revocations = context.revocations;
  if (revocations.isLinkRevoked(context.tenant, claims.jti, hash))
    deny("ERR_AUTHZ_REVOKED", `link ${index} is revoked`, 8, { link: index });
  if (revocations.isKeyRevoked(context.tenant, kid)) deny("ERR_AUTHZ_REVOKED", `link ${index}: its key is revoked`, 8, { link: index });
  const revokedAt = revocations.principalRevokedAt(context.tenant, claims.iss);
  if (revokedAt !== undefined && revokedAt > claims.iat)
    deny("ERR_AUTHZ_REVOKED", `link ${index}: its issuer is revoked`, 8, { link: index });
}

/** Step 5, root: the oracle must allow every capability the root grants. */
async function checkRootAuthority(root: CheckedLink, context: ChainContext): Promise<void> {
  const claims = root.parsed.claims;
  const answers = await Promise.all(
    claims.caps.map((capability) =>
      context.rootAuthority({ tenant: context.tenant, subject: claims.sub, onBehalfOf: claims.obo?.user, capability }),
    ),
  );
  answers.forEach((allowed, index) => {
    if (allowed !== true)
      deny("ERR_AUTHZ_ROOT", `link 0: ${claims.sub} may not grant capability ${index}`, 5, { link: 0, capability: index });
  });
}

function summarize(
  checked: readonly CheckedLink[],
  tokens: readonly string[],
  tenant: string,
  epoch: number,
  statusEpoch: number,
  verifiedAtMs: number,
): VerifiedChain {
  const root = (checked[0] as CheckedLink).parsed.claims;
  const leaf = checked[checked.length - 1] as CheckedLink;
  const links = checked.map(({ parsed, hash, key }): VerifiedLink => {
    const { jti, iss, aud, iat, nbf, exp, caps } = parsed.claims;
    return { hash, jti, iss, aud, kid: key.kid, iat, nbf, exp, caps, predicates: parsed.predicates };
  });
  return {
    tenant,
    subject: root.sub,
    onBehalfOf: root.obo,
    holder: leaf.parsed.claims.aud,
    nbf: leaf.parsed.claims.nbf,
    exp: leaf.parsed.claims.exp,
    leafHash: leaf.hash,
    links,
    tokens: [...tokens],
    directoryEpoch: epoch,
    statusEpoch,
    verifiedAtMs,
  };
}
