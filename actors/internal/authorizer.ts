import type { Clock } from "../../core/clock.js";
import { AgentError } from "../../core/errors.js";
import type { Json } from "../../core/json.js";
import {
  ActorSigner,
  AuthorizationError,
  ChainCache,
  MemoryReplayStore,
  MemoryRevocationList,
  createInvocationVerifier,
  readLeaf,
  tokenHash,
  verifyChain,
  type InvocationVerifier,
  type KeyDirectory,
  type ReplayStore,
  type RevocationEntry,
  type RevocationList,
  type VerifiedInvocation,
} from "../../identity/index.js";
import type { ToolDefinition } from "../define-tool.js";
import type { NodeIdentityOptions } from "../node-identity.js";
import type { Store } from "../../core/ports/store.js";
import type { Logger } from "../logger.js";
import { StoreKeyDirectory } from "./store-key-directory.js";

/** Lifetime of an actor's identity token, in seconds (IDENTITY.md §3: at most an hour, renewed at half-life). */
const agentIdentityTtlSeconds = 3600;

/** @internal What a cell needs to act under its own identity. */
export interface ActorIdentityFacts {
  tenantId: string;
  actorId: string;
  agentType: string;
  agentVersion: number;
  parentId: string | undefined;
  nodeId: string;
  epoch: number;
}

/**
 * @internal The node's use of the identity module: actor keys, chain checks at intake, signed and
 * verified invocations, attenuated links for children and messages.
 */
export class Authorizer {
  readonly #options: NodeIdentityOptions;
  readonly #clock: Clock;
  readonly directory: KeyDirectory;
  readonly revocations: RevocationList;
  readonly #replay: ReplayStore;
  readonly #cache: ChainCache;
  readonly #verifiers = new Map<string, InvocationVerifier>();
  #anchored: Promise<void> | undefined;
  readonly #storeDirectory: StoreKeyDirectory | undefined;
  readonly #syncedAt = new Map<string, number>();
  readonly #certifiedAt = new WeakMap<ActorSigner, number>();

  constructor(options: NodeIdentityOptions, clock: Clock, store: Store, logger: Logger) {
    this.#options = options;
    this.#clock = clock;
    this.revocations = options.revocations ?? new MemoryRevocationList({ clock });
    this.#storeDirectory =
      options.directory === undefined ? new StoreKeyDirectory(store, clock, logger, (entry) => this.revocations.revoke(entry)) : undefined;
    this.directory = options.directory ?? this.#storeDirectory!;
    this.#replay = options.replay ?? new MemoryReplayStore({ clock });
    this.#cache = new ChainCache();
  }

  /** The principal of an actor. */
  static principalOf(tenantId: string, actorId: string): string {
    return `tsr:${tenantId}:agent:${actorId}`;
  }

  /** The reference under which a chain is stored: its leaf's hash. */
  static chainRefOf(chain: readonly string[]): string {
    return tokenHash(chain[chain.length - 1]!);
  }

  async #ensureAnchors(): Promise<void> {
    this.#anchored ??= (async () => {
      for (const authority of this.#options.authorities.values()) await this.directory.addAuthority(authority.anchor());
    })();
    return this.#anchored;
  }

  /**
   * Checks a chain presented with a run or an event: valid, not revoked, of this tenant, and held by
   * the actor it is for.
   *
   * @throws AuthorizationError `ERR_AUTHZ_*`
   */
  async checkIntake(tenantId: string, actorId: string, chain: unknown): Promise<string[]> {
    await this.#ensureAnchors();
    await this.#syncDirectory(tenantId);
    if (!Array.isArray(chain) || chain.length === 0) {
      throw new AuthorizationError("ERR_AUTHZ_CHAIN_REQUIRED", "this node enforces delegation: a chain is required", {
        details: { tenantId, actorId },
      } as never);
    }
    const verified = await verifyChain(chain, this.#chainContext(tenantId));
    const holder = Authorizer.principalOf(tenantId, actorId);
    if (verified.holder !== holder) {
      throw new AuthorizationError("ERR_AUTHZ_AUDIENCE", `the chain is held by ${verified.holder}, not by ${holder}`, {
        details: { holder: verified.holder },
      } as never);
    }
    // The verification the actor's tool calls would otherwise repeat cold (same tenant, directory,
    // revocations, oracle and clock): cached, a call re-checks time and revocation, and the oracle's
    // answer counts for at most chainCacheTtlMs (IDENTITY.md §8).
    this.#cache.set(verified);
    return chain as string[];
  }

  /**
   * The actor's signer with a certificate that is not past half its life: identity tokens are
   * short-lived (an hour), so a long-resident actor's key is re-certified, same key, same epoch.
   */
  async fresh(signer: ActorSigner, facts: ActorIdentityFacts): Promise<ActorSigner> {
    const certifiedAt = this.#certifiedAt.get(signer) ?? 0;
    if (this.#clock.now() - certifiedAt < (agentIdentityTtlSeconds * 1000) / 2) return signer;
    await this.#certify(signer, facts);
    return signer;
  }

  /** Mints an actor's key and has its tenant authority certify it (a new key on every activation). */
  async signerFor(facts: ActorIdentityFacts): Promise<ActorSigner> {
    await this.#ensureAnchors();
    const signer = await ActorSigner.create({ principal: Authorizer.principalOf(facts.tenantId, facts.actorId), clock: this.#clock });
    await this.#certify(signer, facts);
    return signer;
  }

  async #certify(signer: ActorSigner, facts: ActorIdentityFacts): Promise<void> {
    const authority = this.#options.authorities.get(facts.tenantId);
    if (authority === undefined) {
      throw new AgentError("ERR_AUTHZ_TENANT", `no authority is configured for tenant ${facts.tenantId}`, {
        details: { tenantId: facts.tenantId },
      });
    }
    const certificate = await authority.certifyAgent({
      principal: signer.principal,
      publicJwk: signer.publicJwk,
      type: facts.agentType,
      version: String(facts.agentVersion),
      parent: facts.parentId === undefined ? null : Authorizer.principalOf(facts.tenantId, facts.parentId),
      node: facts.nodeId,
      leaseEpoch: facts.epoch,
      ttlSeconds: agentIdentityTtlSeconds,
    });
    await this.directory.registerIdentity(certificate.token, signer.publicJwk);
    this.#certifiedAt.set(signer, this.#clock.now());
  }

  /**
   * Signs an invocation with the actor's current key under the effect's chain and verifies it as
   * the tool's executor would. Returns the verified invocation (arguments, audit record).
   *
   * @throws AuthorizationError `ERR_AUTHZ_*` when the chain does not cover the call
   */
  async authorize(
    signer: ActorSigner,
    tenantId: string,
    tool: ToolDefinition,
    effectId: string,
    args: Json,
    chain: readonly string[] | undefined,
  ): Promise<VerifiedInvocation> {
    if (chain === undefined) {
      throw new AuthorizationError("ERR_AUTHZ_CHAIN_REQUIRED", `no delegation chain covers this call of ${tool.name}`, {
        details: { tool: tool.name },
      } as never);
    }
    // Keys certified or retired by other nodes (a lease taken over) count here within a second.
    await this.#syncDirectory(tenantId);
    const toolPrincipal = `tsr:${tenantId}:tool:${tool.name}`;
    const handle = signer.beginTask(effectId, chain);
    try {
      const invocation = await signer.signInvocation(handle, {
        tool: toolPrincipal,
        res: `tool:${tool.name}`,
        act: "/invoke",
        args,
        effectId,
      });
      return await this.#verifier(tenantId, tool).verify({ chain, invocation, args, effectId });
    } finally {
      signer.endTask(handle);
    }
  }

  /**
   * Revokes at once on this node and records the revocation in the tenant's stored log, where every
   * other node (and any node started later) picks it up when it next reads the log.
   */
  async revoke(entry: RevocationEntry): Promise<void> {
    await this.revocations.revoke(entry);
    await this.#storeDirectory?.appendRevocation(entry);
  }

  /** Releases the secrets a tool declared, for a verified invocation only. */
  secretsFor(tenantId: string, tool: ToolDefinition, verified: VerifiedInvocation): Readonly<Record<string, string>> {
    if ((tool.secrets ?? []).length === 0) return {};
    const vault = this.#options.vaults?.get(tenantId);
    if (vault === undefined)
      throw new AgentError("ERR_VAULT_MISSING", `tool ${tool.name} declares secrets but tenant ${tenantId} has no vault`);
    return vault.release(verified);
  }

  /** Redacts the tenant's secret values from a value about to be recorded. */
  redact<T>(tenantId: string, value: T): T {
    const vault = this.#options.vaults?.get(tenantId);
    return vault === undefined ? value : vault.redact(value);
  }

  /**
   * Issues a link from the actor to `audience`, attenuated from the task's chain with the same
   * capabilities and one less re-delegation.
   */
  async delegate(signer: ActorSigner, taskId: string, chain: readonly string[], audience: string): Promise<string[]> {
    const leaf = readLeaf(chain);
    const handle = signer.beginTask(taskId, chain);
    try {
      return [...(await signer.delegate(handle, { aud: audience, caps: leaf.claims.caps }))];
    } finally {
      signer.endTask(handle);
    }
  }

  /** Picks up keys other nodes certified (human keys, rotated anchors), at most once a second per tenant. */
  async #syncDirectory(tenantId: string): Promise<void> {
    if (this.#storeDirectory === undefined) return;
    const now = this.#clock.now();
    if (now - (this.#syncedAt.get(tenantId) ?? -Infinity) < 1000) return;
    this.#syncedAt.set(tenantId, now);
    await this.#storeDirectory.sync(tenantId);
  }

  #chainContext(tenantId: string) {
    return {
      tenant: tenantId,
      directory: this.directory,
      revocations: this.revocations,
      rootAuthority: this.#options.rootAuthority,
      clock: this.#clock,
    };
  }

  #verifier(tenantId: string, tool: ToolDefinition): InvocationVerifier {
    const key = `${tenantId}\u0000${tool.name}`;
    let verifier = this.#verifiers.get(key);
    if (verifier === undefined) {
      const vault = this.#options.vaults?.get(tenantId);
      if (vault !== undefined && (tool.secrets ?? []).length > 0)
        vault.declareTool(`tsr:${tenantId}:tool:${tool.name}`, tool.secrets ?? []);
      verifier = createInvocationVerifier({
        tenant: tenantId,
        tool: {
          id: `tsr:${tenantId}:tool:${tool.name}`,
          res: `tool:${tool.name}`,
          acts: ["/invoke"],
          risk: tool.idempotent ? "read" : "write",
        },
        directory: this.directory,
        revocations: this.revocations,
        replay: this.#replay,
        rootAuthority: this.#options.rootAuthority,
        clock: this.#clock,
        cache: this.#cache,
      });
      this.#verifiers.set(key, verifier);
    }
    return verifier;
  }
}

/** @internal Whether an error is a refusal by the identity layer. */
export function isAuthorizationError(error: unknown): error is AuthorizationError {
  return error instanceof AuthorizationError;
}
