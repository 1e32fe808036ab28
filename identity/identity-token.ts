import { checkMembers, claimHash, claimInt, claimJti, claimObject, claimPrincipal, claimString, claimTimes } from "./claims-schema.js";
import { deny } from "./errors.js";
import { identityLimits } from "./limits.js";

/** Agent facts an identity token carries (IDENTITY.md §3). */
export interface AgentFacts {
  /** Agent type, e.g. `refund-worker`. */
  readonly type: string;
  /** Agent type version. */
  readonly version: string;
  /** Parent actor's principal, or `null` for a run's root actor. */
  readonly parent: string | null;
  /** Node that holds the lease and minted the key. */
  readonly node: string;
  /** Lease (fencing) epoch the key was minted under. */
  readonly epoch: number;
}

/** Claims of a `tessera-id+jwt`: binds a principal to a public key thumbprint. */
export interface IdentityClaims {
  /** Schema version, 1. */
  readonly v: 1;
  /** The tenant authority principal that certified the key. */
  readonly iss: string;
  /** The certified principal (agent, user or service). */
  readonly sub: string;
  /** Tenant. */
  readonly tenant: string;
  /** Token id, for audit (`actor.id_jti`). */
  readonly jti: string;
  /** Issued at, seconds. */
  readonly iat: number;
  /** Not before, seconds. */
  readonly nbf: number;
  /** Expiry, seconds: ≤ 1 h for agents and services, ≤ 12 h for humans. */
  readonly exp: number;
  /** Confirmation: RFC 7638 thumbprint of the certified key. */
  readonly cnf: { readonly jkt: string };
  /** Agent facts; present exactly when `sub` is an agent. */
  readonly agent?: AgentFacts;
  /** Authentication context class, for humans. */
  readonly acr?: string;
  /** Authentication methods, for humans. */
  readonly amr?: readonly string[];
}

const required = ["v", "iss", "sub", "tenant", "jti", "iat", "nbf", "exp", "cnf"] as const;
const optional = ["agent", "acr", "amr"] as const;
const amrMax = 8;

/**
 * The strict claim schema of an identity token.
 *
 * @param payload - a decoded payload
 * @returns the typed claims
 * @throws AuthorizationError `ERR_AUTHZ_SCHEMA`, `ERR_AUTHZ_TENANT` or `ERR_AUTHZ_TIME`
 * @example
 * ```ts
 * const claims = parseIdentityClaims(decodeToken(token, "tessera-id+jwt", "identity token").payload)
 * ```
 */
export function parseIdentityClaims(payload: Record<string, unknown>): IdentityClaims {
  const what = "identity token";
  checkMembers(payload, required, optional, what);
  if (payload.v !== 1) deny("ERR_AUTHZ_SCHEMA", `${what}: v must be 1`, 2);
  const tenant = claimString(payload.tenant, `${what} tenant`);
  const iss = claimPrincipal(payload.iss, `${what} iss`);
  const sub = claimPrincipal(payload.sub, `${what} sub`);
  if (iss.tenant !== tenant || sub.tenant !== tenant) deny("ERR_AUTHZ_TENANT", `${what}: iss and sub must belong to tenant ${tenant}`, 3);
  if (iss.kind !== "authority") deny("ERR_AUTHZ_SCHEMA", `${what}: iss must be a tenant authority`, 2);
  if (sub.kind !== "agent" && sub.kind !== "user" && sub.kind !== "service")
    deny("ERR_AUTHZ_SCHEMA", `${what}: only agents, users and services hold keys`, 2);
  const lifetimeMax = sub.kind === "user" ? identityLimits.humanIdentityTtlSecondsMax : identityLimits.agentIdentityTtlSecondsMax;
  const times = claimTimes(payload, what, lifetimeMax);
  const cnf = claimObject(payload.cnf, `${what} cnf`);
  checkMembers(cnf, ["jkt"], [], `${what} cnf`);
  const claims: IdentityClaims = {
    v: 1,
    iss: payload.iss as string,
    sub: payload.sub as string,
    tenant,
    jti: claimJti(payload.jti, `${what} jti`),
    ...times,
    cnf: { jkt: claimHash(cnf.jkt, `${what} cnf.jkt`) },
  };
  if (sub.kind === "agent") {
    if (payload.agent === undefined || payload.acr !== undefined || payload.amr !== undefined)
      deny("ERR_AUTHZ_SCHEMA", `${what}: an agent has agent facts and no acr/amr`, 2);
    return { ...claims, agent: parseAgentFacts(payload.agent, tenant) };
  }
  if (payload.agent !== undefined) deny("ERR_AUTHZ_SCHEMA", `${what}: only agents have agent facts`, 2);
  if (sub.kind === "user") {
    const amr = payload.amr;
    if (!Array.isArray(amr) || amr.length === 0 || amr.length > amrMax)
      deny("ERR_AUTHZ_SCHEMA", `${what}: amr must list 1–${amrMax} methods`, 2);
    return {
      ...claims,
      acr: claimString(payload.acr, `${what} acr`, 64),
      amr: amr.map((method) => claimString(method, `${what} amr`, 32)),
    };
  }
  if (payload.acr !== undefined || payload.amr !== undefined) deny("ERR_AUTHZ_SCHEMA", `${what}: acr/amr are for humans`, 2);
  return claims;
}

function parseAgentFacts(value: unknown, tenant: string): AgentFacts {
  const what = "identity token agent";
  const facts = claimObject(value, what);
  checkMembers(facts, ["type", "version", "parent", "node", "epoch"], [], what);
  let parent: string | null = null;
  if (facts.parent !== null) {
    const principal = claimPrincipal(facts.parent, `${what}.parent`);
    if (principal.tenant !== tenant) deny("ERR_AUTHZ_TENANT", `${what}.parent belongs to another tenant`, 3);
    parent = facts.parent as string;
  }
  return {
    type: claimString(facts.type, `${what}.type`, 128),
    version: claimString(facts.version, `${what}.version`, 64),
    parent,
    node: claimString(facts.node, `${what}.node`, 128),
    epoch: claimInt(facts.epoch, `${what}.epoch`),
  };
}
