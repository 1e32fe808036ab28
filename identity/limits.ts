import { assert } from "../core/assert.js";

/**
 * Every limit of the identity module, named with its unit (IDENTITY.md §3–§9). They live here rather
 * than in `core/limits.ts` because only `identity/` enforces them and the token format fixes them:
 * a verifier that accepted a longer chain than its peers would split the cluster's notion of what
 * is authorised.
 */
export interface IdentityLimits {
  /** Links in one chain (`MAX_DEPTH`). @defaultValue 5 */
  readonly delegationDepthMax: number;
  /** Bytes of one compact JWS (link, invocation, approval, identity token). @defaultValue 4096 */
  readonly tokenBytesMax: number;
  /** Bytes of all links of one chain together. @defaultValue 16384 */
  readonly chainBytesMax: number;
  /** Clock skew `S` absorbed against the wall clock, in seconds. Never applied between tokens. @defaultValue 30 */
  readonly clockSkewSeconds: number;
  /** Lifetime of a link when the issuer gives none, in seconds. @defaultValue 3600 */
  readonly linkTtlSecondsDefault: number;
  /** `exp − nbf` and `exp − iat` of a link, in seconds. @defaultValue 86400 */
  readonly linkTtlSecondsMax: number;
  /** `exp − iat` of an invocation, in seconds. @defaultValue 120 */
  readonly invocationTtlSecondsMax: number;
  /** `exp − iat` of an approval, in seconds. @defaultValue 900 */
  readonly approvalTtlSecondsMax: number;
  /** Lifetime of an agent's identity token, in seconds. @defaultValue 3600 */
  readonly agentIdentityTtlSecondsMax: number;
  /** Lifetime of a human principal key's identity token, in seconds. @defaultValue 43200 */
  readonly humanIdentityTtlSecondsMax: number;
  /** Capabilities in one link. @defaultValue 16 */
  readonly capabilitiesPerLinkMax: number;
  /** Caveat statements in one capability. @defaultValue 64 */
  readonly caveatNodesMax: number;
  /** Nesting of caveat statements in one capability. @defaultValue 6 */
  readonly caveatDepthMax: number;
  /** Characters of a `like` glob. @defaultValue 128 */
  readonly globCharsMax: number;
  /** `*` wildcards in a `like` glob. @defaultValue 4 */
  readonly globWildcardsMax: number;
  /** Characters of any string claim. @defaultValue 256 */
  readonly claimCharsMax: number;
  /** Nesting of objects and arrays in a token payload. @defaultValue 24 */
  readonly payloadDepthMax: number;
  /** Nesting of objects and arrays in tool args. @defaultValue 32 */
  readonly argsDepthMax: number;
  /** Bytes of the canonical args of one call when the tool declares no cap. @defaultValue 65536 */
  readonly argsBytesMaxDefault: number;
  /** Verified chains kept per executor process. @defaultValue 10000 */
  readonly chainCacheEntriesMax: number;
  /** Unexpired invocation and approval ids one replay store holds. @defaultValue 100000 */
  readonly replayEntriesMax: number;
  /** Age of the revocation feed beyond which gated and high-risk tools fail closed, in ms. @defaultValue 5000 */
  readonly revocationStalenessMsMax: number;
  /**
   * Age of a cached chain verification beyond which a hit is verified cold again, in ms: the
   * root-authority oracle's answers (step 5, which a hit skips) count for at most this long, and a
   * chain in use costs one cold verification per interval. @defaultValue 60000
   */
  readonly chainCacheTtlMs: number;
}

/** The limits IDENTITY.md fixes. */
export const identityLimits: IdentityLimits = Object.freeze({
  delegationDepthMax: 5,
  tokenBytesMax: 4096,
  chainBytesMax: 16_384,
  clockSkewSeconds: 30,
  linkTtlSecondsDefault: 3600,
  linkTtlSecondsMax: 24 * 3600,
  invocationTtlSecondsMax: 120,
  approvalTtlSecondsMax: 900,
  agentIdentityTtlSecondsMax: 3600,
  humanIdentityTtlSecondsMax: 12 * 3600,
  capabilitiesPerLinkMax: 16,
  caveatNodesMax: 64,
  caveatDepthMax: 6,
  globCharsMax: 128,
  globWildcardsMax: 4,
  claimCharsMax: 256,
  payloadDepthMax: 24,
  argsDepthMax: 32,
  argsBytesMaxDefault: 64 * 1024,
  chainCacheEntriesMax: 10_000,
  replayEntriesMax: 100_000,
  revocationStalenessMsMax: 5000,
  chainCacheTtlMs: 60_000,
});

// Relationships the rest of the module relies on, checked once at load.
assert(identityLimits.chainBytesMax >= identityLimits.tokenBytesMax, "a chain holds at least one full-size link");
assert(
  identityLimits.chainBytesMax <= identityLimits.delegationDepthMax * identityLimits.tokenBytesMax,
  "chainBytesMax binds before delegationDepthMax × tokenBytesMax",
);
assert(identityLimits.linkTtlSecondsDefault <= identityLimits.linkTtlSecondsMax, "default link TTL within the maximum");
assert(identityLimits.invocationTtlSecondsMax < identityLimits.linkTtlSecondsMax, "invocations are shorter than links");
assert(identityLimits.agentIdentityTtlSecondsMax <= identityLimits.humanIdentityTtlSecondsMax, "agent keys live no longer than human keys");
// A connective (`["and", [st…]]`) costs two JSON levels; caps sit four levels deep in the payload.
assert(identityLimits.caveatDepthMax * 2 + 4 < identityLimits.payloadDepthMax, "caveats nest inside caps inside the payload");
assert(identityLimits.clockSkewSeconds * 2 < identityLimits.invocationTtlSecondsMax, "skew is small against the invocation lifetime");
