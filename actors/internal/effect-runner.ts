import { SpanStatusCode, type Tracer } from "@opentelemetry/api";
import type { Clock } from "../../core/clock.js";
import { AgentError, OutcomeUnknownError, serializeError, TimeoutError, type SerializedError } from "../../core/errors.js";
import { newId } from "../../core/ids.js";
import { encodeBounded, type Json } from "../../core/json.js";
import type { Limits } from "../../core/limits.js";
import type { ModelClient, ModelRequest, ModelResponse } from "../../core/ports/model-client.js";
import type { EffectOutcome, EffectRecord, Store } from "../../core/ports/store.js";
import type { AgentDefinition } from "../define-agent.js";
import type { ToolDefinition } from "../define-tool.js";
import type { Logger } from "../logger.js";
import type { ActorSigner } from "../../identity/index.js";
import { isAuthorizationError, type Authorizer } from "./authorizer.js";

/** @internal What the runner hands back to the actor when an effect is settled. */
export interface SettledEffect {
  outcome: EffectOutcome;
  /** The event the actor applies. */
  event: { type: string } & Record<string, Json>;
  /** A result too large to keep inline, to be written as a blob in the same commit. */
  blob: { blobId: string; data: string } | undefined;
}

/** @internal The actor an effect belongs to, as the runner sees it. */
export interface EffectOwner {
  def: AgentDefinition;
  epoch: number;
  /** False once the actor is evicted or finished: late results are dropped. */
  isLive(): boolean;
  settle(settled: SettledEffect): void;
  /** Tells waiters that an effect changed state outside a step (e.g. became unknown). */
  touched(): void;
  /** The actor's current key with a certificate that is not past half its life (identity enabled). */
  freshSigner(): Promise<ActorSigner | undefined>;
  /** Reports that an effect's bookkeeping failed; the owner reloads and re-dispatches it. */
  effectFailed(): void;
  /** The tokens of a chain the actor holds, by reference. */
  chainTokens(chainRef: string | undefined): Promise<string[] | undefined>;
}

/** @internal Dependencies of the runner. */
export interface EffectRunnerDeps {
  store: Store;
  clock: Clock;
  limits: Limits;
  tracer: Tracer;
  logger: Logger;
  model: ModelClient | undefined;
  retry: { baseDelayMs: number; maxDelayMs: number };
  authorizer: Authorizer | undefined;
  /**
   * Whether the node surely still holds its lease. Checked before a tool or model is called, so a
   * node that was paused past its lease calls nothing when it wakes (the store's epoch check
   * refuses its commits too).
   */
  leaseValid(): boolean;
  /** Whether a kill switch stops the agent type in the tenant: then no call starts (the halt step follows). */
  killed(tenantId: string, agentType: string): boolean;
}

/**
 * @internal Runs effects after their step committed: at most once for non-idempotent tools, with
 * capped exponential backoff and full jitter for idempotent ones, attempts counted in the store.
 */
export class EffectRunner {
  readonly #deps: EffectRunnerDeps;
  readonly #inflight = new Map<string, AbortController>();
  #closed = false;

  constructor(deps: EffectRunnerDeps) {
    this.#deps = deps;
  }

  /** Effects currently executing. */
  get inflightCount(): number {
    return this.#inflight.size;
  }

  /**
   * Dispatches an effect. `recovering` says the effect was found open in the store by a node
   * that (re)activated its actor: a non-idempotent one that was running becomes `unknown`.
   */
  dispatch(owner: EffectOwner, effect: EffectRecord, recovering: boolean): void {
    void this.#run(owner, effect, recovering).catch((error: unknown) => {
      this.#deps.logger.error({ err: serializeError(error), actorId: effect.actorId, effectId: effect.effectId }, "effect dispatch failed");
      if (!this.#closed) owner.effectFailed();
    });
  }

  /** Aborts every executing effect; their outcomes are dropped and recovery redoes them. */
  close(): void {
    this.#closed = true;
    this.abortAll(new AgentError("ERR_NODE_CLOSED", "node is closing"));
  }

  /** Aborts every executing effect (the node lost its lease); the runner stays usable. */
  abortAll(reason: Error): void {
    for (const controller of this.#inflight.values()) controller.abort(reason);
  }

  async #run(owner: EffectOwner, effect: EffectRecord, recovering: boolean): Promise<void> {
    const { store, clock } = this.#deps;
    const key = { tenantId: effect.tenantId, actorId: effect.actorId, effectId: effect.effectId };
    const tool = effect.kind === "tool" ? owner.def.tools.find((t) => t.name === effect.name) : undefined;
    // Idempotent only if it was when planned and still is: a redeploy that changed the declaration
    // never turns a running non-idempotent effect into a retried one.
    const idempotent = effect.kind === "model" || (effect.idempotent && (tool?.idempotent ?? true));
    if (!this.#deps.leaseValid()) return owner.effectFailed();
    // A kill switch stops every call that has not started; the actor's halt step cancels the effect.
    if (this.#deps.killed(effect.tenantId, owner.def.type)) return;
    if (!idempotent) {
      if (effect.state === "running") {
        // It may or may not have happened: never retried blindly, left for reconciliation.
        await store.updateEffect(
          key.tenantId,
          key.actorId,
          key.effectId,
          { state: "unknown", updatedAt: clock.now() },
          { fromStates: ["running"], epoch: owner.epoch },
        );
        this.#deps.logger.warn(
          { ...key, tool: effect.name },
          "non-idempotent effect was running during a crash: now unknown, awaiting reconcile",
        );
        owner.touched();
        return;
      }
      const claimed = await store.updateEffect(
        key.tenantId,
        key.actorId,
        key.effectId,
        { state: "running", attempts: 1, updatedAt: clock.now() },
        { fromStates: ["planned"], epoch: owner.epoch },
      );
      if (!claimed || !owner.isLive()) return;
      return this.#attempt(owner, effect, 1, false);
    }
    const attemptsMax = tool?.retry?.attemptsMax ?? this.#deps.limits.effectAttemptsMax;
    let attempt = effect.attempts + 1;
    if (recovering || effect.attempts === 0) {
      // The attempt that was under way when the previous owner stopped counts.
      if (attempt > attemptsMax)
        return this.#giveUp(owner, effect, attempt - 1, {
          code: "ERR_TOOL_FAILED",
          message: `effect ${effect.effectId} used all ${attemptsMax} attempts`,
        });
      const ok = await store.updateEffect(
        key.tenantId,
        key.actorId,
        key.effectId,
        { state: "running", attempts: attempt, updatedAt: clock.now() },
        { fromStates: ["planned", "running"], epoch: owner.epoch },
      );
      if (!ok) return;
    } else {
      // Dispatched right after the step that committed it with its first attempt counted.
      attempt = effect.attempts;
    }
    const waitMs = (effect.nextAttemptAt ?? 0) - clock.now();
    if (waitMs > 0) await new Promise<void>((resolve) => clock.setTimer(resolve, waitMs));
    if (!owner.isLive() || this.#closed) return;
    if (!this.#deps.leaseValid()) return owner.effectFailed();
    if (this.#deps.killed(effect.tenantId, owner.def.type)) return;
    return this.#attempt(owner, effect, attempt, true);
  }

  async #attempt(owner: EffectOwner, effect: EffectRecord, attempt: number, idempotent: boolean): Promise<void> {
    const { limits, tracer } = this.#deps;
    const tool = effect.kind === "tool" ? owner.def.tools.find((t) => t.name === effect.name) : undefined;
    const timeoutMs = tool?.timeoutMs ?? limits.toolTimeoutMsDefault;
    const controller = new AbortController();
    const slot = `${effect.tenantId}\u0000${effect.actorId}\u0000${effect.effectId}`;
    this.#inflight.set(slot, controller);
    const cancelTimeout = this.#deps.clock.setTimer(
      () =>
        controller.abort(
          new TimeoutError(`${effect.kind} ${effect.name} timed out after ${timeoutMs} ms`, { details: { tool: effect.name, timeoutMs } }),
        ),
      timeoutMs,
    );
    const span = tracer.startSpan(`tessera.effect ${effect.name}`, {
      attributes: {
        "tessera.tenant": effect.tenantId,
        "tessera.actor": effect.actorId,
        "tessera.effect": effect.effectId,
        "tessera.attempt": attempt,
        "tessera.effect.kind": effect.kind,
      },
    });
    try {
      const raced = await this.#execute(owner, effect, attempt, controller.signal);
      span.end();
      if (!owner.isLive()) return;
      owner.settle(this.#settled(effect, attempt, raced.output, raced.usage, raced.audit));
    } catch (thrown) {
      if (thrown instanceof LeaseLost) {
        span.end();
        return owner.effectFailed();
      }
      const error = controller.signal.aborted ? controller.signal.reason : thrown;
      span.setStatus({ code: SpanStatusCode.ERROR, message: String((error as Error)?.message ?? error) });
      span.end();
      if (!owner.isLive() || this.#closed) return;
      await this.#failed(owner, effect, attempt, idempotent, error);
    } finally {
      cancelTimeout();
      this.#inflight.delete(slot);
    }
  }

  async #execute(
    owner: EffectOwner,
    effect: EffectRecord,
    attempt: number,
    signal: AbortSignal,
  ): Promise<{ output: unknown; usage: EffectOutcome["usage"]; audit?: Json }> {
    // A timeout aborts the signal; a tool that ignores its signal is still abandoned at the deadline.
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
    // Raced only once the call starts: an abort before that (a node closing during authorization)
    // must not surface as an unhandled rejection, which would end the embedding process.
    aborted.catch(() => undefined);
    if (effect.kind === "model") {
      const model = this.#deps.model;
      if (model === undefined) throw new AgentError("ERR_CONFIG", "an agent called a model but the node has no `model` option");
      if (!this.#deps.leaseValid()) throw new LeaseLost();
      const response: ModelResponse = await Promise.race([
        model.complete(effect.args as unknown as ModelRequest, { signal, idempotencyKey: effect.idempotencyKey }),
        aborted,
      ]);
      return { output: response, usage: response.usage };
    }
    const tool = owner.def.tools.find((t) => t.name === effect.name);
    if (tool === undefined)
      throw new AgentError("ERR_UNKNOWN_TOOL", `agent ${owner.def.type} has no tool "${effect.name}"`, { details: { tool: effect.name } });
    const authorized = await this.#authorize(owner, effect, tool);
    // The runner checked the lease before this attempt, but awaits lie between that check and
    // here: a node paused among them (SIGSTOP, a frozen VM) must not start the call when it wakes.
    if (!this.#deps.leaseValid()) throw new LeaseLost();
    const context = {
      idempotencyKey: effect.idempotencyKey,
      signal,
      tenantId: effect.tenantId,
      actorId: effect.actorId,
      effectId: effect.effectId,
      attempt,
      epoch: owner.epoch,
      secrets: authorized?.secrets ?? {},
      authorization: authorized?.audit,
    };
    const raw = await Promise.race([tool.execute(authorized?.args ?? effect.args, context), aborted]);
    const parsed = tool.output.safeParse(raw);
    if (!parsed.success) {
      throw new AgentError("ERR_TOOL_OUTPUT_INVALID", `output of tool ${tool.name} does not match its schema`, {
        details: { tool: tool.name, issues: parsed.error.issues as unknown as Json },
      });
    }
    return { output: parsed.data, usage: undefined, audit: authorized?.audit as Json | undefined };
  }

  /**
   * With identity enabled: a fresh invocation signed by the actor's current key under the effect's
   * chain, verified as the executor would, before anything runs. Without it: nothing to check.
   */
  async #authorize(
    owner: EffectOwner,
    effect: EffectRecord,
    tool: ToolDefinition,
  ): Promise<{ args: Json; secrets: Readonly<Record<string, string>>; audit: Readonly<Record<string, unknown>> } | undefined> {
    const authorizer = this.#deps.authorizer;
    if (authorizer === undefined) return undefined;
    const signer = await owner.freshSigner();
    if (signer === undefined) throw new AgentError("ERR_AUTHZ_KEY", `actor ${effect.actorId} has no key on this node`);
    const chain = await owner.chainTokens(effect.chainRef);
    const verified = await authorizer.authorize(signer, effect.tenantId, tool, effect.effectId, effect.args, chain);
    const audit = JSON.parse(JSON.stringify(verified.audit)) as Readonly<Record<string, unknown>>;
    return { args: verified.args as Json, secrets: authorizer.secretsFor(effect.tenantId, tool, verified), audit };
  }

  #settled(
    effect: EffectRecord,
    attempt: number,
    rawOutput: unknown,
    usage: EffectOutcome["usage"],
    audit: Json | undefined,
  ): SettledEffect {
    const { limits } = this.#deps;
    // Secret values never reach the journal, the effect record or the model's context.
    const output = this.#deps.authorizer?.redact(effect.tenantId, rawOutput) ?? rawOutput;
    let text: string;
    try {
      text = encodeBounded(output, {
        bytesMax: limits.payloadBytesMax,
        depthMax: limits.jsonDepthMax,
        what: `result of ${effect.kind} ${effect.name}`,
      });
    } catch (error) {
      return this.#failure(effect, attempt, serializeError(error));
    }
    const big = Buffer.byteLength(text) > limits.inlinePayloadBytesMax;
    const blob = big ? { blobId: newId("blob"), data: text } : undefined;
    const result = JSON.parse(text) as Json;
    return {
      outcome: {
        effectId: effect.effectId,
        state: "completed",
        result: big ? undefined : result,
        resultRef: blob?.blobId,
        error: undefined,
        usage,
        attempts: attempt,
        audit,
      },
      event: { type: `${effect.kind}.${effect.name}.done`, effectId: effect.effectId, output: result },
      blob,
    };
  }

  #failure(effect: EffectRecord, attempt: number, rawError: SerializedError, audit?: Json): SettledEffect {
    const error = this.#deps.authorizer?.redact(effect.tenantId, rawError) ?? rawError;
    return {
      outcome: {
        effectId: effect.effectId,
        state: "failed",
        result: undefined,
        resultRef: undefined,
        error,
        usage: undefined,
        attempts: attempt,
        audit,
      },
      event: { type: `${effect.kind}.${effect.name}.failed`, effectId: effect.effectId, error: error as unknown as Json },
      blob: undefined,
    };
  }

  async #failed(owner: EffectOwner, effect: EffectRecord, attempt: number, idempotent: boolean, error: unknown): Promise<void> {
    const { store, clock } = this.#deps;
    const serialized = serializeError(error);
    const key = [effect.tenantId, effect.actorId, effect.effectId] as const;
    if (isAuthorizationError(error)) {
      // A denial is final: the tool was never called, and the same chain will not cover it later.
      const denied = { denied: { code: error.code, reason: error.reason, step: error.step ?? null }, invoker: effect.actorId } as Json;
      return owner.settle(this.#failure(effect, attempt, serialized, denied));
    }
    if (!idempotent) {
      if (error instanceof TimeoutError || error instanceof OutcomeUnknownError) {
        // Timed out, or no answer: the tool may have acted. At most once means we cannot try again or call it failed.
        await store.updateEffect(
          ...key,
          { state: "unknown", error: serialized, updatedAt: clock.now() },
          { fromStates: ["running"], epoch: owner.epoch },
        );
        owner.touched();
        return;
      }
      return owner.settle(this.#failure(effect, attempt, serialized));
    }
    const tool = effect.kind === "tool" ? owner.def.tools.find((t) => t.name === effect.name) : undefined;
    const attemptsMax = tool?.retry?.attemptsMax ?? this.#deps.limits.effectAttemptsMax;
    const retryable = !(error instanceof AgentError) || error.retryable;
    if (!retryable || attempt >= attemptsMax) return this.#giveUp(owner, effect, attempt, serialized);
    const base = tool?.retry?.baseDelayMs ?? this.#deps.retry.baseDelayMs;
    const cap = tool?.retry?.maxDelayMs ?? this.#deps.retry.maxDelayMs;
    const delayMs = Math.floor(Math.random() * Math.min(cap, base * 2 ** (attempt - 1)));
    const next = attempt + 1;
    const ok = await store.updateEffect(
      ...key,
      { state: "running", attempts: next, nextAttemptAt: clock.now() + delayMs, error: serialized, updatedAt: clock.now() },
      { fromStates: ["planned", "running"], epoch: owner.epoch },
    );
    if (!ok) return;
    await new Promise<void>((resolve) => clock.setTimer(resolve, delayMs));
    if (!owner.isLive() || this.#closed) return;
    return this.#attempt(owner, effect, next, true);
  }

  #giveUp(owner: EffectOwner, effect: EffectRecord, attempts: number, error: SerializedError): void {
    owner.settle(this.#failure(effect, attempts, { ...error, details: { ...error.details, attempts } }));
  }
}

/** Thrown by an attempt that found, just before the call, that the node no longer surely holds its lease. */
class LeaseLost extends Error {}
