import { SpanStatusCode } from "@opentelemetry/api";
import { assert } from "../../core/assert.js";
import { serializeError } from "../../core/errors.js";
import { newId, sha256 } from "../../core/ids.js";
import { canonicalJson, type Json } from "../../core/json.js";
import type { ActorStatus, EffectOutcome, EffectRecord, JournalEntry, StepCommit, StoredChain } from "../../core/ports/store.js";
import type { ActorSigner } from "../../identity/index.js";
import { Authorizer } from "./authorizer.js";
import type { AgentDefinition } from "../define-agent.js";
import { stateHashOf, toEnvelope, type ActorState } from "./actor-state.js";
import type { EffectOwner, SettledEffect } from "./effect-runner.js";
import type { LoadedActor } from "./rehydrate.js";
import { identityOf } from "./rehydrate.js";
import { planStep, type ActorIdentity, type StepPlan } from "./plan-step.js";
import type { RuntimeContext } from "./runtime-context.js";

type StepEvent = { type: string } & Record<string, Json>;

/** @internal One unit of work for an actor. */
export type WorkItem =
  | { kind: "init" }
  | { kind: "message"; messageId: string; event: StepEvent; chainRef: string | undefined }
  | { kind: "effect"; settled: SettledEffect }
  | { kind: "timer"; timerId: string; name: string };

/**
 * @internal A resident actor: its state, its in-memory queue, one step at a time. The durable
 * mailbox is in the store; this queue only orders what this node already knows about.
 */
export class ActorCell implements EffectOwner {
  readonly identity: ActorIdentity;
  def: AgentDefinition;
  state: ActorState | undefined;
  revision: number;
  snapshotSeq: number;
  lastHash: string;
  readonly epoch: number;
  status: ActorStatus = "active";
  #forceSnapshot: boolean;
  #queue: WorkItem[] = [];
  readonly #queuedMessages = new Set<string>();
  /** Messages this cell applied lately (bounded), so a late duplicate delivery is dropped, not re-applied. */
  readonly #appliedRecently = new Set<string>();
  /** Effects this cell waits for, with the chain each runs under. */
  readonly #openEffects = new Map<string, string | undefined>();
  /** Chains of armed timers, by timer id. */
  readonly #timerChains = new Map<string, string | undefined>();
  /** Chain tokens by reference (bounded). */
  readonly #chains = new Map<string, string[]>();
  /** The actor's current key, minted on activation (identity enabled). */
  signer: ActorSigner | undefined;
  /** The input the actor was created with, for its first step. */
  readonly #input: Json;
  /** The chain the actor was started or spawned under. */
  readonly ownChainRef: string | undefined;
  readonly #armed = new Map<string, { timerId: string; dueAt: number; cancel: () => void }>();
  #running = false;
  /** When the cell last had work (monotonic ms), for passivation. */
  lastActiveAt = performance.now();
  #live = true;
  readonly #runtime: RuntimeContext;

  constructor(runtime: RuntimeContext, loaded: LoadedActor) {
    this.#runtime = runtime;
    this.identity = identityOf(loaded.record);
    this.def = loaded.def;
    this.state = loaded.state;
    this.revision = loaded.record.revision;
    this.snapshotSeq = loaded.record.snapshotSeq;
    this.lastHash = loaded.record.lastHash;
    this.epoch = loaded.record.epoch;
    this.#forceSnapshot = loaded.migrated;
    this.ownChainRef = loaded.record.chainRef;
    this.#input = loaded.record.input;
  }

  /** Keeps a chain's tokens at hand (they arrived with a run or an event). */
  rememberChain(chainRef: string, tokens: string[]): void {
    if (this.#chains.size >= 64) this.#chains.delete(this.#chains.keys().next().value!);
    this.#chains.set(chainRef, tokens);
  }

  async freshSigner(): Promise<ActorSigner | undefined> {
    const authorizer = this.#runtime.authorizer;
    if (this.signer === undefined || authorizer === undefined) return this.signer;
    return authorizer.fresh(this.signer, {
      tenantId: this.identity.tenantId,
      actorId: this.identity.actorId,
      agentType: this.def.type,
      agentVersion: this.def.version,
      parentId: this.identity.parentId,
      nodeId: this.#runtime.nodeId,
      epoch: this.epoch,
    });
  }

  async chainTokens(chainRef: string | undefined): Promise<string[] | undefined> {
    if (chainRef === undefined) return undefined;
    const known = this.#chains.get(chainRef);
    if (known !== undefined) return known;
    const loaded = await this.#runtime.loadChain(this.identity.tenantId, chainRef);
    if (loaded !== undefined) this.rememberChain(chainRef, loaded);
    return loaded;
  }

  /** @returns a stable key of this actor within the node */
  get key(): string {
    return `${this.identity.tenantId}\u0000${this.identity.actorId}`;
  }

  isLive(): boolean {
    return this.#live && this.status === "active";
  }

  /** Stops the cell: drops its queue, disarms its timers; late effect results are ignored. */
  evict(): void {
    this.#live = false;
    this.#queue = [];
    for (const armed of this.#armed.values()) armed.cancel();
    this.#armed.clear();
  }

  /** Whether the cell has nothing queued or running. */
  get idle(): boolean {
    return !this.#running && this.#queue.length === 0;
  }

  /**
   * Whether the cell may leave memory: live, past its first step, nothing queued or running, and no
   * effect it waits for (an effect's result must find its cell; timers are re-armed on reactivation).
   */
  get passivatable(): boolean {
    return this.isLive() && this.revision > 0 && this.idle && this.#openEffects.size === 0;
  }

  /** The earliest deadline of the cell's armed timers (clock ms), if any. */
  earliestTimerDueAt(): number | undefined {
    let earliest: number | undefined;
    for (const armed of this.#armed.values()) if (earliest === undefined || armed.dueAt < earliest) earliest = armed.dueAt;
    return earliest;
  }

  /** Queues a mailbox message unless it is already queued. */
  enqueueMessage(messageId: string, event: StepEvent, chainRef: string | undefined): void {
    if (this.#queuedMessages.has(messageId) || this.#appliedRecently.has(messageId)) return;
    this.#queuedMessages.add(messageId);
    this.#push({ kind: "message", messageId, event, chainRef });
  }

  /** Queues the first step of an actor that has none. */
  enqueueInit(): void {
    this.#push({ kind: "init" });
  }

  settle(settled: SettledEffect): void {
    if (!this.#openEffects.has(settled.outcome.effectId)) return;
    this.#push({ kind: "effect", settled });
  }

  /** Applies an outcome established outside the runner (reconciliation of an `unknown` effect). */
  reconcile(settled: SettledEffect, chainRef: string | undefined): void {
    if (!this.#openEffects.has(settled.outcome.effectId)) this.#openEffects.set(settled.outcome.effectId, chainRef);
    this.#push({ kind: "effect", settled });
  }

  /** An effect's bookkeeping failed outside a step (a store write): reload, which re-dispatches it. */
  effectFailed(): void {
    if (this.isLive()) this.#runtime.reload(this);
  }

  touched(): void {
    this.#runtime.notify(this);
  }

  /** Starts an effect found open in the store (recovery) or planned by a step. */
  dispatchEffect(effect: EffectRecord, recovering: boolean): void {
    this.#openEffects.set(effect.effectId, effect.chainRef);
    this.#runtime.effects.dispatch(this, effect, recovering);
  }

  /** Re-arms a stored timer; a due one fires at once. */
  armTimer(timerId: string, name: string, dueAt: number, chainRef: string | undefined): void {
    this.#timerChains.set(timerId, chainRef);
    this.#armed.get(name)?.cancel();
    const cancel = this.#runtime.clock.setTimer(
      () => {
        this.#armed.delete(name);
        this.#push({ kind: "timer", timerId, name });
      },
      Math.max(0, dueAt - this.#runtime.clock.now()),
    );
    this.#armed.set(name, { timerId, dueAt, cancel });
  }

  #push(item: WorkItem): void {
    if (!this.#live) return;
    this.lastActiveAt = performance.now();
    this.#queue.push(item);
    if (!this.#running) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#queue.length > 0 && this.isLive()) {
        const item = this.#queue.shift()!;
        try {
          await this.#step(item);
        } catch (error) {
          // Nothing of the step left the process: start over from the store (the item is still
          // pending there) rather than let the error escape or strand the actor.
          this.#runtime.logger.error({ err: serializeError(error), actorId: this.identity.actorId }, "step failed: reloading the actor");
          this.#runtime.reload(this);
          return;
        }
      }
    } finally {
      this.#running = false;
      this.lastActiveAt = performance.now();
      this.#runtime.notify(this);
    }
  }

  async #step(item: WorkItem): Promise<void> {
    const event = this.#eventOf(item);
    if (event === undefined) return;
    const runtime = this.#runtime;
    const seq = this.revision + 1;
    const now = runtime.clock.now();
    const span = runtime.tracer.startSpan(`tessera.step ${event.type}`, {
      attributes: {
        "tessera.tenant": this.identity.tenantId,
        "tessera.actor": this.identity.actorId,
        "tessera.seq": seq,
        "tessera.agent.type": this.def.type,
      },
    });
    let plan: StepPlan;
    try {
      plan = planStep({
        def: this.def,
        state: this.state,
        event,
        actor: this.identity,
        seq,
        now,
        limits: runtime.limits,
        latestVersionOf: (t) => runtime.registry.latestVersionOf(t),
      });
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
      throw error;
    }
    const chainRef = this.#taskChainRef(item);
    const chains = runtime.authorizer === undefined ? [] : await this.#attachChains(plan, chainRef);
    const commit = this.#commitOf(item, event, plan, seq, now);
    commit.entry.chainRef = chainRef;
    if (chains.length > 0) commit.chains = chains;
    const outcome = await runtime.committer.submit(commit);
    span.end();
    if (!outcome.ok) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error.message });
      runtime.logger.warn(
        { err: serializeError(outcome.error), actorId: this.identity.actorId, seq },
        "step commit refused: reloading the actor from the store",
      );
      runtime.reload(this);
      return;
    }
    this.#afterCommit(item, plan, commit);
  }

  /** The chain a work item is processed under: its message's, its effect's, its timer's, or the actor's own. */
  #taskChainRef(item: WorkItem): string | undefined {
    switch (item.kind) {
      case "init":
        return this.ownChainRef;
      case "message":
        return item.chainRef;
      case "effect":
        return this.#openEffects.get(item.settled.outcome.effectId);
      case "timer":
        return this.#timerChains.get(item.timerId);
    }
  }

  /**
   * With identity enabled, everything a step starts carries a chain: its effects and timers the
   * task's own; children and other actors a link attenuated from it, signed by this actor's key; the
   * parent, on completion, the chain it spawned this actor under. No actor passes on more than it holds.
   */
  async #attachChains(plan: StepPlan, chainRef: string | undefined): Promise<StoredChain[]> {
    const runtime = this.#runtime;
    const authorizer = runtime.authorizer!;
    const stored: StoredChain[] = [];
    for (const effect of plan.effects) effect.chainRef = chainRef;
    for (const timer of plan.timersSet) timer.chainRef = chainRef;
    const tokens = await this.chainTokens(chainRef);
    const linkTo = async (actorId: string, taskId: string): Promise<string | undefined> => {
      const signer = await this.freshSigner();
      if (tokens === undefined || signer === undefined) return undefined;
      try {
        const chain = await authorizer.delegate(signer, taskId, tokens, Authorizer.principalOf(this.identity.tenantId, actorId));
        const ref = Authorizer.chainRefOf(chain);
        stored.push({ chainRef: ref, tokens: chain });
        return ref;
      } catch (error) {
        runtime.logger.warn(
          { err: serializeError(error), actorId: this.identity.actorId, to: actorId },
          "could not delegate: the recipient gets no chain",
        );
        return undefined;
      }
    };
    for (const child of plan.children) child.chainRef = await linkTo(child.actorId, `spawn.${child.actorId}`);
    for (const message of plan.messages) {
      if (message.messageId.startsWith("m.")) message.chainRef = await linkTo(message.actorId, message.messageId);
      else if (message.messageId.startsWith("f.")) message.chainRef = chainRef;
      else if (message.messageId.startsWith("c.")) message.chainRef = await this.#parentChainRef();
    }
    return stored;
  }

  /** The chain a parent spawned this actor under: this actor's own chain without its last link. */
  async #parentChainRef(): Promise<string | undefined> {
    const own = await this.chainTokens(this.ownChainRef);
    return own === undefined || own.length < 2 ? undefined : Authorizer.chainRefOf(own.slice(0, -1));
  }

  #eventOf(item: WorkItem): StepEvent | undefined {
    switch (item.kind) {
      case "init":
        return { type: "tessera.init", input: this.#input };
      case "message":
        return item.event;
      case "effect":
        return item.settled.event;
      case "timer":
        // A timer cancelled or replaced after it fired in memory is not applied.
        return this.state?.timers[item.name]?.timerId === item.timerId ? { type: `timer.${item.name}`, timerId: item.timerId } : undefined;
    }
  }

  #commitOf(item: WorkItem, event: StepEvent, plan: StepPlan, seq: number, now: number): StepCommit {
    const { limits, nodeId } = this.#runtime;
    const envelope = toEnvelope(this.def, plan.next);
    const stateHash = stateHashOf(envelope);
    const final = plan.status !== "active";
    const snapshotDue = final || this.#forceSnapshot || seq === 1 || seq - this.snapshotSeq >= limits.snapshotIntervalSteps;
    // A large effect result is written once as a blob referenced by the effect row; an event too
    // large for the journal row goes by reference too.
    const blobs: Array<{ blobId: string; data: string }> = [];
    if (item.kind === "effect" && item.settled.blob !== undefined) blobs.push(item.settled.blob);
    let journalEvent: Json = event;
    let eventRef: string | undefined;
    const eventText = JSON.stringify(event);
    if (Buffer.byteLength(eventText) > limits.inlinePayloadBytesMax) {
      eventRef = newId("blob");
      blobs.push({ blobId: eventRef, data: eventText });
      journalEvent = { type: event.type };
    }
    const planned = plan.planned;
    const { tenantId, actorId } = this.identity;
    const body = {
      seq,
      kind: item.kind === "init" ? "init" : "event",
      event: journalEvent,
      eventRef,
      messageId: item.kind === "message" ? item.messageId : undefined,
      planned,
      stateHash,
      epoch: this.epoch,
      nodeId,
      createdAt: now,
    };
    const hash = sha256(this.lastHash + canonicalJson(body));
    const entry: JournalEntry = {
      tenantId,
      actorId,
      seq,
      kind: item.kind === "init" ? "init" : "event",
      event: journalEvent,
      eventRef,
      messageId: body.messageId,
      planned,
      stateValue: (plan.next.machine?.value ?? null) as Json,
      status: plan.status,
      stateHash,
      hash,
      prevHash: this.lastHash,
      epoch: this.epoch,
      nodeId,
      createdAt: now,
    };
    const outcome: EffectOutcome | undefined = item.kind === "effect" ? item.settled.outcome : undefined;
    return {
      tenantId,
      actorId,
      expectedRevision: this.revision,
      epoch: this.epoch,
      entry,
      actor: {
        status: plan.status,
        output: plan.output,
        error: plan.error,
        snapshot: snapshotDue ? (envelope as unknown as Json) : undefined,
        childCount: plan.next.childCount,
        updatedAt: now,
        agentVersion: this.def.version,
      },
      appliedMessageId: item.kind === "message" ? item.messageId : undefined,
      effectOutcome: outcome,
      effects: plan.effects,
      timersSet: plan.timersSet,
      timersCleared: item.kind === "timer" ? [...plan.timersCleared, item.timerId] : plan.timersCleared,
      messages: plan.messages,
      children: plan.children.map((child) => ({ ...child, epoch: 1, ownerNode: nodeId })),
      blobs,
      finalize: final,
    };
  }

  /** Only after the commit does anything leave the process. */
  #afterCommit(item: WorkItem, plan: StepPlan, commit: StepCommit): void {
    assert(commit.entry.seq === this.revision + 1, "journal seq is contiguous");
    this.revision = commit.entry.seq;
    this.lastHash = commit.entry.hash;
    if (commit.actor.snapshot !== undefined) this.snapshotSeq = commit.entry.seq;
    this.#forceSnapshot = false;
    this.state = plan.next;
    this.status = plan.status;
    if (item.kind === "message") {
      this.#queuedMessages.delete(item.messageId);
      this.#appliedRecently.add(item.messageId);
      if (this.#appliedRecently.size > 1024) this.#appliedRecently.delete(this.#appliedRecently.values().next().value!);
    }
    if (item.kind === "effect") this.#openEffects.delete(item.settled.outcome.effectId);
    if (item.kind === "timer") this.#timerChains.delete(item.timerId);
    for (const timerId of plan.timersCleared) this.#timerChains.delete(timerId);
    const runtime = this.#runtime;
    for (const [name, armed] of this.#armed) {
      if (plan.next.timers[name]?.timerId === armed.timerId) continue;
      armed.cancel();
      this.#armed.delete(name);
    }
    if (this.status !== "active") {
      this.evict();
    } else {
      for (const timer of plan.timersSet) this.armTimer(timer.timerId, timer.name, timer.dueAt, timer.chainRef);
      for (const effect of plan.effects) if (effect.state === "planned" || effect.state === "running") this.dispatchEffect(effect, false);
    }
    for (const child of commit.children) runtime.activateNew(child);
    for (const chain of commit.chains ?? []) runtime.rememberChain(this.identity.tenantId, chain);
    for (const message of plan.messages) runtime.deliver(message);
    for (const action of plan.afterCommit) {
      try {
        action();
      } catch (error) {
        runtime.logger.warn({ err: serializeError(error), actorId: this.identity.actorId }, "a non-durable action threw after the commit");
      }
    }
    runtime.notify(this);
  }
}
