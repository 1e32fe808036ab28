import type { Clock } from "../core/clock.js";
import { ValidationError } from "../core/errors.js";
import { issueRootLink } from "./delegation.js";
import type { RootLinkOptions } from "./delegation.js";
import { nowSeconds, randomJti } from "./encoding.js";
import type { AgentFacts, IdentityClaims } from "./identity-token.js";
import type { AuthorityAnchor } from "./key-directory.js";
import { checkPublicJwk, jwkThumbprint, SigningKey } from "./keys.js";
import type { PublicJwk } from "./keys.js";
import { identityLimits } from "./limits.js";
import { formatPrincipal, parsePrincipal } from "./principal.js";

/** An identity token and the claims it carries. */
export interface IdentityCertificate {
  /** The `tessera-id+jwt`. */
  readonly token: string;
  /** Its claims. */
  readonly claims: IdentityClaims;
}

/** Options of {@link TenantAuthority.create}. */
export interface TenantAuthorityOptions {
  /** The tenant. */
  readonly tenant: string;
  /** The authority's id within the tenant. @defaultValue "tenant" */
  readonly id?: string;
  /** Issuer time. */
  readonly clock: Clock;
  /** An existing key (e.g. loaded from the vault or backed by a KMS); generated when omitted. */
  readonly key?: SigningKey;
  /** How long the anchor is valid, in seconds (rotation every 90 days, next key published ahead). @defaultValue 7776000 */
  readonly anchorValiditySeconds?: number;
}

/** Options of {@link TenantAuthority.certifyAgent}. */
export interface CertifyAgentOptions extends Omit<AgentFacts, "epoch"> {
  /** The agent principal, `tsr:<tenant>:agent:<actor id>`. */
  readonly principal: string;
  /** The key to certify (the actor signer's public key). */
  readonly publicJwk: PublicJwk;
  /** The lease epoch the key is minted under. */
  readonly leaseEpoch: number;
  /** Lifetime, seconds, at most 3600; renew at half-life. @defaultValue 3600 */
  readonly ttlSeconds?: number;
}

/** Options of {@link TenantAuthority.certifyHuman}. */
export interface CertifyHumanOptions {
  /** The human principal, `tsr:<tenant>:user:<id>`. */
  readonly principal: string;
  /** The client's public key. */
  readonly publicJwk: PublicJwk;
  /** Authentication context class from the embedding service's login. */
  readonly acr: string;
  /** Authentication methods, e.g. `["pwd", "otp"]` or `["hwk"]`. */
  readonly amr: readonly string[];
  /** Lifetime, seconds, at most 43200. @defaultValue 43200 */
  readonly ttlSeconds?: number;
}

/**
 * A tenant's authority: the key that certifies actor and human keys (identity tokens) and signs
 * vouched-human roots. It is the tenant's root of trust; its public key is the anchor every
 * directory of the tenant is configured with. Keep it in the vault (or a KMS) in production.
 *
 * @example
 * ```ts
 * const authority = await TenantAuthority.create({ tenant: "t_acme", clock })
 * await directory.addAuthority(authority.anchor())
 * const certificate = await authority.certifyAgent({ principal, publicJwk, type: "refund-worker", version: "3", parent: null, node: "node-7", leaseEpoch: 4 })
 * ```
 */
export class TenantAuthority {
  /** The tenant. */
  readonly tenant: string;
  /** The authority principal, `tsr:<tenant>:authority:<id>`. */
  readonly principal: string;
  /** The anchor's validity start, seconds. */
  readonly validFrom: number;
  /** The anchor's validity end, seconds. */
  readonly validTo: number;
  readonly #key: SigningKey;
  readonly #clock: Clock;

  private constructor(tenant: string, principal: string, key: SigningKey, clock: Clock, validitySeconds: number) {
    this.tenant = tenant;
    this.principal = principal;
    this.#key = key;
    this.#clock = clock;
    this.validFrom = nowSeconds(clock);
    this.validTo = this.validFrom + validitySeconds;
  }

  /**
   * Creates an authority with a fresh (or the given) key.
   *
   * @param options - tenant, id, clock, key, anchor validity
   * @returns the authority
   * @throws ValidationError `ERR_PRINCIPAL_INVALID` for a bad tenant or id
   */
  static async create(options: TenantAuthorityOptions): Promise<TenantAuthority> {
    const principal = formatPrincipal({ tenant: options.tenant, kind: "authority", id: options.id ?? "tenant" });
    const key = options.key ?? (await SigningKey.generate());
    return new TenantAuthority(options.tenant, principal, key, options.clock, options.anchorValiditySeconds ?? 90 * 24 * 3600);
  }

  /** The key id of the authority key. */
  get kid(): string {
    return this.#key.kid;
  }

  /**
   * The trust anchor to configure in every directory of the tenant.
   *
   * @returns tenant, principal, public key and validity
   */
  anchor(): AuthorityAnchor {
    return {
      tenant: this.tenant,
      principal: this.principal,
      publicJwk: this.#key.publicJwk,
      validFrom: this.validFrom,
      validTo: this.validTo,
    };
  }

  /**
   * Certifies an actor's key (`tessera-id+jwt`, ≤ 1 h). Called in the transaction that takes the
   * actor's lease, and again at half-life to renew.
   *
   * @param options - the agent principal, key, facts and lease epoch
   * @returns the identity token and its claims
   * @throws ValidationError for a principal of another tenant or kind, or a bad lifetime
   */
  async certifyAgent(options: CertifyAgentOptions): Promise<IdentityCertificate> {
    this.#checkSubject(options.principal, "agent");
    if (options.parent !== null) this.#checkSubject(options.parent, "agent");
    if (!Number.isSafeInteger(options.leaseEpoch) || options.leaseEpoch < 0)
      throw new ValidationError("ERR_VALIDATION", "leaseEpoch is a non-negative integer");
    const agent: AgentFacts = {
      type: options.type,
      version: options.version,
      parent: options.parent,
      node: options.node,
      epoch: options.leaseEpoch,
    };
    return this.#certify(options.principal, options.publicJwk, options.ttlSeconds, identityLimits.agentIdentityTtlSecondsMax, { agent });
  }

  /**
   * Certifies a human principal key (`tessera-id+jwt` with `acr`/`amr`, ≤ 12 h), after the
   * embedding service authenticated the human.
   *
   * @param options - the user principal, key and authentication context
   * @returns the identity token and its claims
   * @throws ValidationError for a principal of another tenant or kind, or a bad lifetime
   */
  async certifyHuman(options: CertifyHumanOptions): Promise<IdentityCertificate> {
    this.#checkSubject(options.principal, "user");
    return this.#certify(options.principal, options.publicJwk, options.ttlSeconds, identityLimits.humanIdentityTtlSecondsMax, {
      acr: options.acr,
      amr: [...options.amr],
    });
  }

  /**
   * Issues a vouched-human root: signed by the authority, `iss = sub = authority`, naming the
   * human and the hash of the authentication evidence in `obo`.
   *
   * @param options - as {@link issueRootLink}, with `onBehalfOf` required
   * @returns the root link
   */
  async issueRootLink(
    options: Omit<RootLinkOptions, "clock" | "onBehalfOf"> & { readonly onBehalfOf: { readonly user: string; readonly authnHash: string } },
  ): Promise<string> {
    return issueRootLink({ principal: this.principal, key: this.#key }, { ...options, clock: this.#clock });
  }

  async #certify(
    subject: string,
    publicJwk: PublicJwk,
    ttlSeconds: number | undefined,
    ttlMax: number,
    extra: Pick<IdentityClaims, "agent" | "acr" | "amr">,
  ): Promise<IdentityCertificate> {
    const ttl = ttlSeconds ?? ttlMax;
    if (!Number.isSafeInteger(ttl) || ttl < 1 || ttl > ttlMax) throw new ValidationError("ERR_VALIDATION", `ttlSeconds in 1..${ttlMax}`);
    const now = nowSeconds(this.#clock);
    const claims: IdentityClaims = {
      v: 1,
      iss: this.principal,
      sub: subject,
      tenant: this.tenant,
      jti: randomJti(),
      iat: now,
      nbf: now,
      exp: now + ttl,
      cnf: { jkt: await jwkThumbprint(checkPublicJwk(publicJwk)) },
      ...extra,
    };
    return { token: await this.#key.signCompact("tessera-id+jwt", claims), claims };
  }

  #checkSubject(principal: string, kind: "agent" | "user"): void {
    const parsed = parsePrincipal(principal);
    if (parsed.tenant !== this.tenant || parsed.kind !== kind)
      throw new ValidationError("ERR_VALIDATION", `${principal} is not a ${kind} of ${this.tenant}`);
  }
}
