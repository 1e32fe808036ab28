import { InvariantError } from "../core/assert.js";

/** One link as the audit record shows it (IDENTITY.md §12 `chain[]`). */
export interface AuditLink {
  /** Hash of the link. */
  readonly hash: string;
  /** Its `jti`. */
  readonly jti: string;
  /** Delegator. */
  readonly iss: string;
  /** Delegate. */
  readonly aud: string;
  /** Signing key. */
  readonly kid: string;
  /** Expiry, seconds. */
  readonly exp: number;
}

/** The authorization part of an audit record (IDENTITY.md §12), for an allowed call. */
export interface AuthorizationAudit {
  /** Tenant. */
  readonly tenant: string;
  /** Tool principal. */
  readonly tool: string;
  /** Resource. */
  readonly res: string;
  /** Action. */
  readonly act: string;
  /** Who acted: the invoker, its key, the identity token that certified it, the node that minted it. */
  readonly actor: {
    readonly principal: string;
    readonly kid: string;
    readonly identityJti: string | undefined;
    readonly runtime: string | undefined;
  };
  /** On whose authority (the chain's `sub`). */
  readonly onBehalfOf: string;
  /** For a tenant-authority root: the human and the hash of their authentication evidence. */
  readonly rootOnBehalfOf: { readonly user: string; readonly authnHash: string } | undefined;
  /** The chain, root first. */
  readonly chain: readonly AuditLink[];
  /** The invocation. */
  readonly invocation: {
    readonly hash: string;
    readonly jti: string;
    readonly eff: string;
    readonly argsHash: string;
    readonly cause: string | undefined;
  };
  /** The approval, when the call was gated. */
  readonly approval:
    | {
        readonly hash: string;
        readonly approver: string;
        readonly method: "session-key" | "webauthn+session-key";
        readonly jti: string;
        readonly grant: boolean;
      }
    | undefined;
  /** Verifier state the decision was made under. */
  readonly verifier: {
    readonly version: "tessera-authz/1";
    readonly directoryEpoch: number;
    readonly revocationPosition: number;
    readonly cache: "hit" | "miss" | "session";
  };
}

/** The raw tokens, for write-once evidence storage (`tokens_ref`). */
export interface AuthorizationTokens {
  /** The chain, root first. */
  readonly chain: readonly string[];
  /** The invocation. */
  readonly invocation: string;
  /** The approval, when presented and used. */
  readonly approval: string | undefined;
}

/** Fields of a {@link VerifiedInvocation}. */
export interface VerifiedInvocationFields {
  /** The audit fields. */
  readonly audit: AuthorizationAudit;
  /** The verified args: a deep-frozen copy of exactly what was hashed and checked. */
  readonly args: unknown;
  /** The raw tokens. */
  readonly tokens: AuthorizationTokens;
  /** Whether the revocation feed was stale and the tool (read-only, opted in) failed open. */
  readonly revocationStale: boolean;
}

const constructionKey: unique symbol = Symbol("VerifiedInvocation");

/**
 * The authorised context of one tool call, returned only by the invocation verifier. The vault
 * releases secrets only against a genuine instance (checked by a private-field brand, not by
 * shape), and only once. Execute the tool with `args` from here, never with the caller's object:
 * this copy is exactly what was hashed and checked against every caveat.
 *
 * @example
 * ```ts
 * const verified = await verifier.verify(request)
 * await audit.write({ ...verified.audit, decision: "allow" })
 * const secrets = await vault.release(verified)
 * await tool.execute(verified.args, { secrets })
 * ```
 */
export class VerifiedInvocation {
  /** Audit fields: who, under which chain, on whose authority, with which args hash. */
  readonly audit: AuthorizationAudit;
  /** The verified args (deep-frozen). */
  readonly args: unknown;
  /** The raw tokens. */
  readonly tokens: AuthorizationTokens;
  /** True when a read-only tool failed open on a stale revocation feed. */
  readonly revocationStale: boolean;
  #secretsReleased = false;

  /**
   * @internal Only the invocation verifier constructs these.
   * @param key - the module-private construction key
   * @param fields - the verified fields
   */
  constructor(key: symbol, fields: VerifiedInvocationFields) {
    if (key !== constructionKey) throw new InvariantError("VerifiedInvocation is created only by the invocation verifier");
    this.audit = fields.audit;
    this.args = fields.args;
    this.tokens = fields.tokens;
    this.revocationStale = fields.revocationStale;
    Object.freeze(this);
  }

  /**
   * Whether `value` is a genuine instance (not an object of the same shape).
   *
   * @param value - anything
   * @returns true for instances the verifier created
   */
  static isGenuine(value: unknown): value is VerifiedInvocation {
    return typeof value === "object" && value !== null && #secretsReleased in value;
  }

  /**
   * @internal Marks the instance's secrets as released; false when they already were.
   * @param verified - a genuine instance
   * @returns whether this call is the first
   */
  static claimSecretRelease(verified: VerifiedInvocation): boolean {
    if (verified.#secretsReleased) return false;
    verified.#secretsReleased = true;
    return true;
  }
}

/**
 * @internal Creates a {@link VerifiedInvocation}; used by the invocation verifier only.
 * @param fields - the verified fields
 * @returns the branded instance
 */
export function createVerifiedInvocation(fields: VerifiedInvocationFields): VerifiedInvocation {
  return new VerifiedInvocation(constructionKey, fields);
}

/**
 * @internal Deep-freezes a JSON value.
 * @param value - a JSON value
 * @returns the same value, frozen
 */
export function deepFreeze<T>(value: T): T {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node !== null && typeof node === "object" && !Object.isFrozen(node)) {
      Object.freeze(node);
      for (const child of Object.values(node)) stack.push(child);
    }
  }
  return value;
}
