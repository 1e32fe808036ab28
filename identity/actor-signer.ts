import { assert } from "../core/assert.js";
import type { Clock } from "../core/clock.js";
import { ValidationError } from "../core/errors.js";
import type { Capability } from "./capabilities.js";
import { attenuate } from "./delegation.js";
import { deny } from "./errors.js";
import { signInvocation } from "./invocation.js";
import type { PublicJwk } from "./keys.js";
import { SigningKey } from "./keys.js";
import { parsePrincipal } from "./principal.js";

/** Tasks one signer may have open at once (steps in progress plus their dispatched effects). */
const openTasksMax = 4096;

/**
 * An opaque handle to the chain a task (a mailbox message or XState event) delivered. Valid only
 * while that task is open; it cannot be forged, and code holding another task's handle cannot
 * reach this task's chain.
 */
export interface ChainHandle {
  /** The task (message) id the handle is scoped to. */
  readonly taskId: string;
}

/** Options of {@link ActorSigner.signInvocation}. */
export interface ActorInvocationOptions {
  /** The tool principal. */
  readonly tool: string;
  /** Resource. */
  readonly res: string;
  /** Action. */
  readonly act: string;
  /** The exact args. */
  readonly args: unknown;
  /** The journal's effect id. */
  readonly effectId: string;
  /** Lifetime, seconds, ≤ 120. @defaultValue 60 */
  readonly ttlSeconds?: number;
}

/** Options of {@link ActorSigner.delegate}. */
export interface ActorDelegationOptions {
  /** The delegate. */
  readonly aud: string;
  /** Capabilities, narrower than the task's chain. */
  readonly caps: readonly Capability[];
  /** Lifetime, seconds. @defaultValue 3600, clipped to the parent */
  readonly ttlSeconds?: number;
  /** Remaining budget. @defaultValue the parent's − 1 */
  readonly mdl?: number;
}

/**
 * An actor's signer (IDENTITY.md §10 "signer isolation"): it holds the actor's non-extractable key
 * and offers only two operations, both through a task-scoped chain handle. While processing
 * message M the actor can sign only with M's chain; the runtime hands the code for M only M's handle, and handles of finished tasks or look-alike objects are refused
 * (`ERR_AUTHZ_SCOPE`). Keep the signer in the runtime's effect layer, out of reach of tool code and
 * of the model's context.
 *
 * @example
 * ```ts
 * const signer = await ActorSigner.create({ principal: "tsr:t_acme:agent:refund-worker-3", clock })
 * const handle = signer.beginTask("msg_8841", message.chain)
 * const inv = await signer.signInvocation(handle, { tool, res: "tool:refund", act: "/invoke", args, effectId })
 * signer.endTask(handle)
 * ```
 */
export class ActorSigner {
  /** The actor principal. */
  readonly principal: string;
  readonly #key: SigningKey;
  readonly #clock: Clock;
  /** Open tasks: a handle is valid exactly while it is a key here. */
  readonly #open = new Map<ChainHandle, readonly string[] | undefined>();

  private constructor(principal: string, key: SigningKey, clock: Clock) {
    this.principal = principal;
    this.#key = key;
    this.#clock = clock;
  }

  /**
   * Mints a fresh non-extractable key for an actor, at spawn, rehydration or lease takeover.
   * Certify `publicJwk` with the tenant authority and register it before signing.
   *
   * @param options - the actor principal and clock
   * @returns the signer
   * @throws ValidationError when the principal is not an agent
   */
  static async create(options: { readonly principal: string; readonly clock: Clock }): Promise<ActorSigner> {
    if (parsePrincipal(options.principal).kind !== "agent")
      throw new ValidationError("ERR_VALIDATION", "actor signers are for agent principals");
    return new ActorSigner(options.principal, await SigningKey.generate(), options.clock);
  }

  /** The key id. */
  get kid(): string {
    return this.#key.kid;
  }

  /** The public key to certify. */
  get publicJwk(): PublicJwk {
    return this.#key.publicJwk;
  }

  /**
   * Opens the task that delivered `chain` and returns its handle. Give the handle only to the code
   * handling that task (the step that processes the message, and the effects it planned, which
   * are dispatched after the commit and may overlap later steps). Handles are unforgeable: a
   * look-alike object is refused.
   *
   * @param taskId - the message or event id
   * @param chain - the chain the message carried, or `undefined` when it carried none
   * @returns the handle, valid until {@link endTask}
   * @throws InvariantError when more than 4096 tasks are open (a leak in the runtime)
   */
  beginTask(taskId: string, chain: readonly string[] | undefined): ChainHandle {
    assert(this.#open.size < openTasksMax, `more than ${openTasksMax} open tasks: endTask is not being called`);
    const handle: ChainHandle = Object.freeze({ taskId });
    this.#open.set(handle, chain === undefined ? undefined : Object.freeze([...chain]));
    return handle;
  }

  /**
   * Closes a task once its step and its effects are done; its handle is dead from now on.
   *
   * @param handle - the handle {@link beginTask} returned
   */
  endTask(handle: ChainHandle): void {
    this.#open.delete(handle);
  }

  /**
   * Signs an invocation with the handle's task's chain.
   *
   * @param handle - the task's handle
   * @param options - tool, capability, args, effect id
   * @returns the invocation JWS
   * @throws AuthorizationError `ERR_AUTHZ_SCOPE` for a handle of another or a finished task, or when the task carried no chain
   */
  async signInvocation(handle: ChainHandle, options: ActorInvocationOptions): Promise<string> {
    const chain = this.#chainOf(handle);
    return signInvocation({ principal: this.principal, key: this.#key }, { ...options, chain, cause: handle.taskId, clock: this.#clock });
  }

  /**
   * Attenuates the handle's task's chain to another actor, for a message it will process under
   * the requester's authority.
   *
   * @param handle - the task's handle
   * @param options - delegate, capabilities, lifetime, budget
   * @returns the extended chain to attach to the message
   * @throws AuthorizationError `ERR_AUTHZ_SCOPE`, or the narrowing errors of `attenuate`
   */
  async delegate(handle: ChainHandle, options: ActorDelegationOptions): Promise<readonly string[]> {
    const chain = this.#chainOf(handle);
    return attenuate(
      { principal: this.principal, key: this.#key },
      { ...options, chain, task: { id: handle.taskId, cause: handle.taskId }, clock: this.#clock },
    );
  }

  #chainOf(handle: ChainHandle): readonly string[] {
    if (!this.#open.has(handle)) deny("ERR_AUTHZ_SCOPE", `chain handle of task ${handle.taskId} is not an open task of this actor`);
    const chain = this.#open.get(handle);
    if (chain === undefined) return deny("ERR_AUTHZ_SCOPE", `task ${handle.taskId} carried no chain`);
    return chain;
  }
}
