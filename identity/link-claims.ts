import { AgentError } from "../core/errors.js";
import type { Capability } from "./capabilities.js";
import { isAction, isResource } from "./capabilities.js";
import type { CaveatPredicate, CaveatStatement } from "./caveats.js";
import { compileCaveats } from "./caveats.js";
import { checkMembers, claimHash, claimInt, claimJti, claimObject, claimPrincipal, claimString, claimTimes } from "./claims-schema.js";
import { deny } from "./errors.js";
import { identityLimits } from "./limits.js";
import type { Principal } from "./principal.js";

/** The human on whose behalf a tenant-authority root acts (IDENTITY.md §11). */
export interface OnBehalfOf {
  /** The human's principal, `tsr:<tenant>:user:<id>`. */
  readonly user: string;
  /** base64url SHA-256 of the authentication evidence the embedding service checked. */
  readonly authn_h: string;
}

/** The task and message that caused a delegation; audit only. */
export interface TaskRef {
  /** Task id. */
  readonly id: string;
  /** Message id that caused it. */
  readonly cause: string;
}

/** Claims of a delegation link, `tessera-dlg+jwt` (IDENTITY.md §4). */
export interface LinkClaims {
  /** Schema version, 1. */
  readonly v: 1;
  /** Delegator. */
  readonly iss: string;
  /** Delegate: the next link's `iss`, or the invoker for the leaf. */
  readonly aud: string;
  /** Root principal, constant along the chain. */
  readonly sub: string;
  /** Tenant. */
  readonly tenant: string;
  /** Revocation id, 128-bit random. */
  readonly jti: string;
  /** Issued at, seconds. */
  readonly iat: number;
  /** Not before, seconds. */
  readonly nbf: number;
  /** Expiry, seconds; always present. */
  readonly exp: number;
  /** Depth: 0 at the root. */
  readonly dep: number;
  /** Remaining re-delegation budget. */
  readonly mdl: number;
  /** Hash of the parent link, `null` at the root. */
  readonly prf: string | null;
  /** 1–16 capabilities. */
  readonly caps: readonly Capability[];
  /** Causing task, audit only. */
  readonly task?: TaskRef;
  /** The human behind a tenant-authority root. */
  readonly obo?: OnBehalfOf;
}

/** A link whose claims passed the strict schema, with its principals parsed and caveats compiled. */
export interface ParsedLink {
  /** The claims. */
  readonly claims: LinkClaims;
  /** Parsed `iss`. */
  readonly issuer: Principal;
  /** Parsed `aud`. */
  readonly audience: Principal;
  /** Parsed `sub`. */
  readonly subject: Principal;
  /** One compiled predicate per capability, in order. */
  readonly predicates: readonly CaveatPredicate[];
}

const required = ["v", "iss", "aud", "sub", "tenant", "jti", "iat", "nbf", "exp", "dep", "mdl", "prf", "caps"] as const;
const optional = ["task", "obo"] as const;

/**
 * Step 2 for a link: the strict claim schema, including caveat limits. Rules that relate a link to
 * its neighbours (linkage, narrowing) are checked by the chain verifier.
 *
 * @param payload - a decoded link payload
 * @param index - the link's position in its chain, for messages
 * @returns the parsed link
 * @throws AuthorizationError `ERR_AUTHZ_SCHEMA`, `ERR_AUTHZ_LIMITS` or `ERR_AUTHZ_TIME`
 * @example
 * ```ts
 * const link = parseLinkClaims(decodeToken(token, "tessera-dlg+jwt", "link 0").payload, 0)
 * ```
 */
export function parseLinkClaims(payload: Record<string, unknown>, index: number): ParsedLink {
  const what = `link ${index}`;
  checkMembers(payload, required, optional, what);
  if (payload.v !== 1) deny("ERR_AUTHZ_SCHEMA", `${what}: v must be 1`, 2);
  const issuer = claimPrincipal(payload.iss, `${what} iss`);
  const audience = claimPrincipal(payload.aud, `${what} aud`);
  const subject = claimPrincipal(payload.sub, `${what} sub`);
  if (audience.kind === "authority" || audience.kind === "tool")
    deny("ERR_AUTHZ_SCHEMA", `${what}: aud must be an agent, user or service`, 2);
  const times = claimTimes(payload, what, identityLimits.linkTtlSecondsMax, 7);
  const dep = claimInt(payload.dep, `${what} dep`);
  const mdl = claimInt(payload.mdl, `${what} mdl`);
  if (dep >= identityLimits.delegationDepthMax || mdl >= identityLimits.delegationDepthMax) {
    deny("ERR_AUTHZ_DEPTH", `${what}: dep and mdl are below ${identityLimits.delegationDepthMax}`, 2);
  }
  const prf = payload.prf === null ? null : claimHash(payload.prf, `${what} prf`);
  const { caps, predicates } = parseCaps(payload.caps, what);
  let claims: LinkClaims = {
    v: 1,
    iss: payload.iss as string,
    aud: payload.aud as string,
    sub: payload.sub as string,
    tenant: claimString(payload.tenant, `${what} tenant`),
    jti: claimJti(payload.jti, `${what} jti`),
    ...times,
    dep,
    mdl,
    prf,
    caps,
  };
  if (payload.task !== undefined) {
    const task = claimObject(payload.task, `${what} task`);
    checkMembers(task, ["id", "cause"], [], `${what} task`);
    claims = {
      ...claims,
      task: { id: claimString(task.id, `${what} task.id`, 128), cause: claimString(task.cause, `${what} task.cause`, 128) },
    };
  }
  if (payload.obo !== undefined) {
    const obo = claimObject(payload.obo, `${what} obo`);
    checkMembers(obo, ["user", "authn_h"], [], `${what} obo`);
    if (claimPrincipal(obo.user, `${what} obo.user`).kind !== "user") deny("ERR_AUTHZ_SCHEMA", `${what}: obo.user must be a user`, 2);
    claims = { ...claims, obo: { user: obo.user as string, authn_h: claimHash(obo.authn_h, `${what} obo.authn_h`) } };
  }
  return { claims, issuer, audience, subject, predicates };
}

function parseCaps(value: unknown, what: string): { caps: Capability[]; predicates: CaveatPredicate[] } {
  if (!Array.isArray(value) || value.length < 1 || value.length > identityLimits.capabilitiesPerLinkMax) {
    deny("ERR_AUTHZ_SCHEMA", `${what}: caps must hold 1–${identityLimits.capabilitiesPerLinkMax} capabilities`, 2);
  }
  const caps: Capability[] = [];
  const predicates: CaveatPredicate[] = [];
  for (const item of value) {
    const cap = claimObject(item, `${what} cap`);
    checkMembers(cap, ["res", "act", "cav"], [], `${what} cap`);
    // `*` and `/` are syntactically valid here; where they may appear is checked at step 6.
    if (!isResource(cap.res, true) || !isAction(cap.act, true)) deny("ERR_AUTHZ_SCHEMA", `${what}: bad res or act`, 2);
    if (!Array.isArray(cap.cav)) deny("ERR_AUTHZ_SCHEMA", `${what}: cav must be an array`, 2);
    predicates.push(compileOrDeny(cap.cav, what));
    caps.push({ res: cap.res, act: cap.act, cav: cap.cav as CaveatStatement[] });
  }
  return { caps, predicates };
}

function compileOrDeny(cav: unknown, what: string): CaveatPredicate {
  try {
    return compileCaveats(cav);
  } catch (error) {
    if (error instanceof AgentError && error.code === "ERR_CAVEAT_INVALID") {
      const code = error.details.problem === "limits" ? "ERR_AUTHZ_LIMITS" : "ERR_AUTHZ_SCHEMA";
      return deny(code, `${what}: ${error.message}`, 2);
    }
    throw error;
  }
}
