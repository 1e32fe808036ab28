import { trace, type Tracer } from "@opentelemetry/api";
import { systemClock, type Clock } from "../core/clock.js";
import { AgentError, serializeError, TimeoutError, ValidationError, type SerializedError } from "../core/errors.js";
import { newId, sha256 } from "../core/ids.js";
import { canonicalJson, encodeBounded, type Json } from "../core/json.js";
import type { Limits } from "../core/limits.js";
import type {
  ActorRecord,
  ActorStatus,
  EffectRecord,
  JournalEntry,
  MessageRecord,
  NewActor,
  NewMessage,
  Store,
  StoredChain,
  TimerRecord,
} from "../core/ports/store.js";
import type { AgentDefinition } from "./define-agent.js";
import { ActorCell } from "./internal/actor-cell.js";
import { AgentRegistry } from "./internal/agent-registry.js";
import { EffectRunner } from "./internal/effect-runner.js";
import { GroupCommitter } from "./internal/group-committer.js";
import { reservedEventPrefixes } from "./internal/plan-step.js";
import { foldJournal, loadActor, type LoadedActor } from "./internal/rehydrate.js";
import type { RuntimeContext } from "./internal/runtime-context.js";
import { createJsonLogger, type Logger } from "./logger.js";
import { resolveNodeOptions, type NodeOptions, type ResolvedNodeOptions } from "./node-options.js";
import { toEnvelope } from "./internal/actor-state.js";
import { Authorizer } from "./internal/authorizer.js";
import type { RevocationTarget } from "../identity/index.js";
import { ClusterLink, type ControlNotice, type WakeNotice } from "./internal/cluster-link.js";
import { Membership, rendezvous } from "./internal/membership.js";
import { Passivator } from "./internal/passivator.js";
import { Sweeper } from "./internal/sweeper.js";
import type { KillSwitch, NodeRecord } from "../core/ports/store.js";

/** What a caller reads about an actor. */
export interface ActorView {
  tenantId: string;
  actorId: string;
  agentType: string;
  agentVersion: number;
  parentId: string | undefined;
  rootId: string;
  name: string | undefined;
  depth: number;
  status: ActorStatus;
  /** The statechart's current state value. */
  stateValue: Json;
  /** Seq of the last committed step. */
  revision: number;
  output: Json | undefined;
  error: SerializedError | undefined;
  /** The node that holds the actor's lease, and the lease epoch. */
  ownerNode: string | undefined;
  epoch: number;
  createdAt: number;
  updatedAt: number;
}

/** Counters and state of a node's cluster machinery ({@link TesseraNode.clusterStats}). */
export interface ClusterStats {
  /** Sweeps run, actors claimed as orphans, non-resident actors activated for work found in the store. */
  sweeps: number;
  claimed: number;
  reactivated: number;
  /** Mailboxes of idle resident actors re-read because messages were pending (a lost wake-up). */
  refreshed: number;
  passivated: number;
  wakesSent: number;
  wakesReceived: number;
  /** Publishes the transport refused (counted, never silent). */
  publishFailures: number;
  holdsLease: boolean;
  /** Another process registered this node id: this one no longer acts. */
  superseded: boolean;
  liveNodes: readonly string[];
  /** Activations put off at the resident cap. */
  deferredActivations: number;
}

/** Arguments of {@link TesseraNode.startRun}. */
export interface StartRunRequest {
  tenantId: string;
  agentType: string;
  input: Json;
  /** A second start with the same key returns the same run. */
  idempotencyKey: string;
  /** The run's actor id; required with identity, since the chain's leaf must be delegated to it. @defaultValue a random id */
  runId?: string;
  /** The delegation chain (compact JWS links, root first) the run acts under; required with identity. */
  chain?: readonly string[];
}

/** Arguments of {@link TesseraNode.sendEvent}. */
export interface SendEventRequest {
  tenantId: string;
  actorId: string;
  event: { type: string } & Record<string, Json>;
  /** The event is applied once per message id, however often it is sent. */
  messageId: string;
  /** The delegation chain the actor acts under while processing this event; required with identity. */
  chain?: readonly string[];
}

/** Arguments of {@link TesseraNode.reconcileEffect}: what really happened to an `unknown` effect. */
export interface ReconcileRequest {
  tenantId: string;
  actorId: string;
  effectId: string;
  outcome: { state: "completed"; result: Json } | { state: "failed"; error: SerializedError };
}

/** Most actors remembered as waiting for room at the resident cap; beyond it the sweeper finds their work. */
const deferredKeysMax = 100_000;
/**
 * `waitForStatus` re-reads an actor resident on this node this many times less often, but at least
 * every {@link residentPollMsMax} (unless `statusPollMs` is longer): its own commits wake the
 * waiter, and so does the actor leaving memory (a lost lease fences the node and evicts every
 * actor). The poll only guards against a change this node did not make and has not noticed yet,
 * such as a takeover while it was paused past its lease.
 */
const residentPollFactor = 10;
const residentPollMsMax = 5000;
/** A delay `setTimeout` takes as given (above 2^31 − 1 ms it fires after 1 ms). */
const timerMs = (ms: number): number => Math.min(Math.max(0, ms), 2 ** 31 - 1);
const finalStatuses: readonly ActorStatus[] = ["completed", "failed", "stopped", "halted"];
const idPattern = /^[A-Za-z0-9_.:@-]+$/;
/** Tenant ids are principal segments (IDENTITY.md §2), so they are as strict as principals want. */
const tenantPattern = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/**
 * A Tessera node: hosts actors, runs their steps one at a time each, commits every step before
 * acting on it, and recovers everything unfinished when it starts.
 */
export class TesseraNode {
  /** This node's id (owner of the leases it holds). */
  readonly nodeId: string;
  readonly #options: ResolvedNodeOptions;
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #limits: Limits;
  readonly #logger: Logger;
  readonly #tracer: Tracer;
  readonly #registry: AgentRegistry;
  readonly #committer: GroupCommitter;
  readonly #effects: EffectRunner;
  readonly #cells = new Map<string, ActorCell>();
  readonly #activating = new Map<string, Promise<ActorCell | undefined>>();
  readonly #waiters = new Map<string, Set<(status?: ActorStatus) => void>>();
  readonly #runtime: RuntimeContext;
  readonly #authorizer: Authorizer | undefined;
  /** Chains this node saw recently, by tenant and reference (bounded); the store has them all. */
  readonly #chains = new Map<string, string[]>();
  #state: "new" | "started" | "closing" | "closed" = "new";
  #closedPromise: Promise<void> | undefined;
  readonly #membership: Membership;
  readonly #sweeper: Sweeper;
  readonly #passivator: Passivator;
  readonly #link: ClusterLink | undefined;
  /** Wake-ups of passivated actors' timers, by actor key. */
  readonly #dormant = new Map<string, () => void>();
  #draining = false;
  /** How many times the node fenced itself: an activation begun before a fence is dropped. */
  #fences = 0;
  /** Activations put off because the node was at its resident cap. */
  #deferred = 0;
  #capSweepFutileAt = -Infinity;
  /** Engaged kill switches, by tenant and agent type (the store has them; refreshed every sweep and on broadcast). */
  readonly #killSwitches = new Map<string, KillSwitch>();
  /** Actors whose activation was put off at the cap, oldest first. */
  readonly #waitingRoom = new Map<string, { tenantId: string; actorId: string }>();
  #admitting = false;
  #capSweptAt = 0;
  /** The last enqueue of each actor under way on this node (see #serialized). */
  readonly #lanes = new Map<string, Promise<void>>();

  /** @internal Use {@link createNode}. */
  constructor(options: NodeOptions) {
    this.#options = resolveNodeOptions(options);
    const o = this.#options;
    this.nodeId = o.nodeId;
    this.#store = o.store;
    this.#clock = o.clock ?? systemClock;
    this.#limits = o.limits;
    this.#logger = o.logger ?? createJsonLogger("warn");
    this.#tracer = (o.tracerProvider ?? trace.getTracerProvider()).getTracer("tessera");
    this.#registry = new AgentRegistry(o.agents);
    this.#committer = new GroupCommitter(this.#store, this.#limits.groupCommitStepsMax, this.#limits.groupCommitLingerMs);
    this.#authorizer = o.identity === undefined ? undefined : new Authorizer(o.identity, this.#clock, this.#store, this.#logger);
    this.#effects = new EffectRunner({
      store: this.#store,
      clock: this.#clock,
      limits: this.#limits,
      tracer: this.#tracer,
      logger: this.#logger,
      model: o.model,
      retry: o.retry,
      authorizer: this.#authorizer,
      leaseValid: () => this.#state !== "started" || this.#membership.holdsLease,
      killed: (tenantId, agentType) => this.#killSwitches.has(`${tenantId}\u0000${agentType}`),
    });
    this.#membership = new Membership({
      store: this.#store,
      nodeId: this.nodeId,
      leaseTtlMs: o.cluster.leaseTtlMs,
      renewIntervalMs: o.cluster.renewIntervalMs,
      info: o.info,
      logger: this.#logger,
      onLost: () => this.#fence(),
      onRegained: () => void this.#reclaim(),
    });
    this.#sweeper = new Sweeper({
      store: this.#store,
      nodeId: this.nodeId,
      intervalMs: o.cluster.sweepIntervalMs,
      pageSize: o.cluster.sweepPageSize,
      logger: this.#logger,
      now: () => this.#clock.now(),
      canClaim: () => this.#state === "started" && !this.#draining && this.#membership.holdsLease,
      liveNodeCount: () => this.#membership.liveNodes.length,
      activateAll: (actors) => this.#activateAll(actors),
      // Resident, or on its way: an activation under way reads what the store holds.
      isResident: (tenantId, actorId) =>
        this.#cells.has(`${tenantId}\u0000${actorId}`) || this.#activating.has(`${tenantId}\u0000${actorId}`),
      refreshMailbox: (tenantId, actorId) => this.#refreshMailbox(tenantId, actorId),
      beforeSweep: () => this.#refreshKillSwitches(),
    });
    this.#passivator = new Passivator({
      idleMs: o.passivation.idleMs,
      residentActorsMax: o.passivation.residentActorsMax,
      cells: this.#cells,
      passivate: (cell) => this.#passivate(cell),
    });
    this.#link = o.transport === undefined ? undefined : new ClusterLink(o.transport, this.#logger);
    this.#runtime = {
      nodeId: this.nodeId,
      clock: this.#clock,
      limits: this.#limits,
      tracer: this.#tracer,
      logger: this.#logger,
      registry: this.#registry,
      committer: this.#committer,
      effects: this.#effects,
      reload: (cell) => this.#reload(cell),
      activateNew: (child) => this.#activateCreated(recordOfNew(child)),
      deliver: (message) => this.#deliver(message),
      notify: (cell) => {
        // A finished actor leaves memory; reads of it go to the store.
        if (cell.status !== "active" && this.#cells.get(cell.key) === cell) this.#cells.delete(cell.key);
        this.#notify(cell.key, cell.status);
        // Past the resident cap, idle actors leave as soon as there are some (at most every 20 ms);
        // actors put off at the cap come in as room appears.
        if (this.#passivator.overCap && cell.idle && performance.now() - this.#capSweptAt > 20) {
          this.#capSweptAt = performance.now();
          this.#passivator.sweep();
        }
        if (cell.idle && this.#waitingRoom.size > 0) this.#admitDeferred();
      },
      authorizer: this.#authorizer,
      loadChain: (tenantId, chainRef) => this.#loadChain(tenantId, chainRef),
      rememberChain: (tenantId, chain) => this.#rememberChain(tenantId, chain),
    };
  }

  /** Group-commit statistics: batches, commits, the largest batch, and the batches that lingered for more commits. */
  get commitStats(): { batches: number; commits: number; largestBatch: number; lingered: number } {
    return { ...this.#committer.stats };
  }

  /** Actors resident in memory on this node. */
  get residentActors(): number {
    return this.#cells.size;
  }

  /**
   * Takes over every unfinished actor in the store and carries it on: planned effects are
   * dispatched, running idempotent ones retried with the same key, running non-idempotent ones
   * marked `unknown`, due timers fired and pending mailbox messages applied.
   *
   * @returns the number of actors recovered
   */
  async start(): Promise<{ recovered: number }> {
    if (this.#state !== "new") throw new AgentError("ERR_NODE_STATE", `node ${this.nodeId} cannot start: it is ${this.#state}`);
    this.#state = "started";
    this.#link?.listen(this.nodeId, { wake: (notice) => this.#onWake(notice), control: (notice) => this.#onControl(notice) });
    await this.#membership.start();
    await this.#refreshKillSwitches();
    // A shared store: this id's previous life first (a restart under the same id), then whatever
    // nodes whose lease expired left behind. An embedded store has one process: take everything.
    let recovered: number;
    if (this.#store.shared) recovered = (await this.#sweeper.claim("own")) + (await this.#sweeper.claim("orphaned"));
    else recovered = await this.#sweeper.claim("any");
    this.#sweeper.start();
    this.#passivator.start();
    this.#link?.broadcast({ kind: "node-joined", nodeId: this.nodeId });
    return { recovered };
  }

  /**
   * Every node in the registry: its state, whether its lease is live by the database clock, and
   * how many active actors it owns.
   */
  async listNodes(): Promise<NodeRecord[]> {
    return this.#store.listNodes();
  }

  /** Counters of the cluster machinery (sweeps, claims, wake-ups, passivations), for tests and metrics. */
  get clusterStats(): ClusterStats {
    return {
      ...this.#sweeper.stats,
      passivated: this.#passivator.passivated,
      wakesSent: this.#link?.stats.wakesSent ?? 0,
      wakesReceived: this.#link?.stats.wakesReceived ?? 0,
      publishFailures: this.#link?.stats.publishFailures ?? 0,
      holdsLease: this.#membership.holdsLease,
      superseded: this.#membership.superseded,
      liveNodes: this.#membership.liveNodes,
      deferredActivations: this.#deferred,
    };
  }

  /**
   * Starts a run: creates its root actor durably, then runs it. The returned promise resolves once
   * the run is recorded in the store. A second start with the same idempotency key returns the
   * same run (`created: false`); with different input it throws `ERR_IDEMPOTENCY_MISMATCH`.
   *
   * @throws AgentError `ERR_UNKNOWN_AGENT_TYPE`, `ERR_PAYLOAD_TOO_LARGE`, `ERR_PAYLOAD_TOO_DEEP`, `ERR_VALIDATION`
   */
  async startRun(request: StartRunRequest): Promise<{ runId: string; created: boolean }> {
    this.#assertOpen();
    this.#checkId("tenantId", request.tenantId);
    this.#checkId("idempotencyKey", request.idempotencyKey);
    const def = this.#registry.latest(request.agentType);
    const killed = this.#killSwitches.get(`${request.tenantId}\u0000${def.type}`);
    if (killed !== undefined)
      throw new AgentError("ERR_KILL_SWITCH", `agent type ${def.type} is stopped by a kill switch: ${killed.reason}`, {
        details: { agentType: def.type, reason: killed.reason },
      });
    encodeBounded(request.input, { bytesMax: this.#limits.eventBytesMax, depthMax: this.#limits.jsonDepthMax, what: "run input" });
    if (request.runId !== undefined) this.#checkId("runId", request.runId);
    const actorId = request.runId ?? newId("run");
    const chain = await this.#intakeChain(request.tenantId, actorId, request.chain, request.runId !== undefined);
    const ownerNode = this.#placeNew(request.tenantId, actorId);
    const { actor, created } = await this.#store.createActor(
      {
        tenantId: request.tenantId,
        actorId,
        agentType: def.type,
        agentVersion: def.version,
        parentId: undefined,
        rootId: actorId,
        name: undefined,
        depth: 0,
        input: request.input,
        epoch: 1,
        ownerNode,
        createdAt: this.#clock.now(),
        chainRef: chain?.chainRef,
      },
      {
        runKey: request.idempotencyKey,
        inputHash: sha256(canonicalJson({ agentType: request.agentType, input: request.input })),
        chains: chain === undefined ? undefined : [chain],
      },
    );
    if (created && actor.ownerNode === this.nodeId) this.#activateCreated(actor);
    else if (created && actor.ownerNode !== undefined)
      this.#link?.wake(actor.ownerNode, { tenantId: actor.tenantId, actorId: actor.actorId });
    else if (actor.ownerNode === this.nodeId) void this.#activate(actor.tenantId, actor.actorId);
    return { runId: actor.actorId, created };
  }

  /**
   * Puts an event into an actor's durable mailbox; it is applied exactly once per message id. The
   * promise resolves once the message is durable.
   *
   * @returns `accepted: false` when this message id was seen before
   * @throws AgentError `ERR_UNKNOWN_EVENT_TYPE`, `ERR_ACTOR_NOT_FOUND`, `ERR_ACTOR_NOT_ACTIVE`,
   *   `ERR_MAILBOX_FULL`, `ERR_PAYLOAD_TOO_LARGE`, `ERR_PAYLOAD_TOO_DEEP`, `ERR_VALIDATION`
   */
  async sendEvent(request: SendEventRequest): Promise<{ accepted: boolean }> {
    this.#assertOpen();
    this.#checkId("tenantId", request.tenantId);
    this.#checkId("actorId", request.actorId);
    this.#checkId("messageId", request.messageId);
    const event = request.event as unknown;
    if (typeof event !== "object" || event === null || Array.isArray(event) || typeof (event as { type?: unknown }).type !== "string") {
      throw new ValidationError("ERR_VALIDATION", "an event must be a JSON object with a string `type`");
    }
    const type = request.event.type;
    if (reservedEventPrefixes.some((prefix) => type.startsWith(prefix))) {
      throw new ValidationError("ERR_UNKNOWN_EVENT_TYPE", `event type "${type}" is reserved for the runtime`, { details: { type } });
    }
    encodeBounded(request.event, { bytesMax: this.#limits.eventBytesMax, depthMax: this.#limits.jsonDepthMax, what: `event ${type}` });
    const def = await this.#definitionOf(request.tenantId, request.actorId);
    const accepts = (def.machine.events as readonly string[]).some(
      (e) => e === type || e === "*" || (e.endsWith(".*") && type.startsWith(e.slice(0, -1))),
    );
    if (!accepts) {
      throw new ValidationError("ERR_UNKNOWN_EVENT_TYPE", `agent ${def.type} v${def.version} handles no event "${type}"`, {
        details: { type, agentType: def.type },
      });
    }
    const message: NewMessage = {
      tenantId: request.tenantId,
      actorId: request.actorId,
      messageId: request.messageId,
      event: request.event,
      sender: "external",
      createdAt: this.#clock.now(),
    };
    const chain = await this.#intakeChain(request.tenantId, request.actorId, request.chain, true);
    message.chainRef = chain?.chainRef;
    const chains = chain === undefined ? undefined : [chain];
    const { created } = await this.#serialized(`${request.tenantId}\u0000${request.actorId}`, () =>
      this.#store.enqueueMessage(message, { mailboxDepthMax: this.#limits.mailboxDepthMax, chains }),
    );
    if (created) this.#deliver(message);
    else await this.#redeliver(request.tenantId, request.actorId, request.messageId);
    return { accepted: created };
  }

  /**
   * The definition an actor runs: the resident cell's (no read), else the one its stored row names.
   *
   * @throws AgentError `ERR_ACTOR_NOT_FOUND`
   */
  async #definitionOf(tenantId: string, actorId: string): Promise<AgentDefinition> {
    const cell = this.#cells.get(`${tenantId}\u0000${actorId}`);
    if (cell?.status === "active") return cell.def;
    const record = await this.#store.getActor(tenantId, actorId);
    if (record === undefined)
      throw new AgentError("ERR_ACTOR_NOT_FOUND", `no actor ${actorId} in tenant ${tenantId}`, { details: { actorId } });
    const stored = this.#registry.get(record.agentType, record.agentVersion);
    if (stored === undefined) return this.#registry.latest(record.agentType);
    // Activation migrates an actor that has state (rehydrate.ts, the same registry rule): the event
    // is checked against the definition that will apply it.
    return (record.revision > 0 ? this.#registry.migrationTarget(record.agentType, stored.version) : undefined) ?? stored;
  }

  /**
   * Stops an actor and its whole subtree, durably, through its mailbox.
   *
   * @throws AgentError `ERR_ACTOR_NOT_FOUND`, `ERR_ACTOR_NOT_ACTIVE`
   */
  async stopActor(tenantId: string, actorId: string): Promise<void> {
    this.#assertOpen();
    const message: NewMessage = {
      tenantId,
      actorId,
      messageId: `stop.${actorId}`,
      event: { type: "tessera.stop" },
      sender: "external",
      createdAt: this.#clock.now(),
    };
    const { created } = await this.#store.enqueueMessage(message, { mailboxDepthMax: this.#limits.mailboxDepthMax + 1 });
    if (created) this.#deliver(message);
  }

  /**
   * Settles an effect left `unknown` (a non-idempotent call interrupted by a crash or timeout) with
   * what really happened; the actor then receives the matching `.done` or `.failed` event.
   *
   * @throws AgentError `ERR_EFFECT_NOT_FOUND`, `ERR_EFFECT_NOT_UNKNOWN`
   */
  async reconcileEffect(request: ReconcileRequest): Promise<void> {
    this.#assertOpen();
    const effect = await this.#store.getEffect(request.tenantId, request.actorId, request.effectId);
    if (effect === undefined)
      throw new AgentError("ERR_EFFECT_NOT_FOUND", `no effect ${request.effectId} on ${request.actorId}`, {
        details: { ...request, outcome: undefined },
      });
    if (effect.state !== "unknown")
      throw new AgentError("ERR_EFFECT_NOT_UNKNOWN", `effect ${request.effectId} is ${effect.state}, not unknown`, {
        details: { state: effect.state },
      });
    const cell = (await this.#activate(request.tenantId, request.actorId, false, true)) ?? undefined;
    if (cell === undefined) {
      const record = await this.#store.getActor(request.tenantId, request.actorId);
      if (record?.status === "active" && record.ownerNode !== this.nodeId)
        throw new AgentError(
          "ERR_ACTOR_NOT_LOCAL",
          `actor ${request.actorId} is owned by node ${record.ownerNode ?? "(none)"}: reconcile there`,
          {
            details: { actorId: request.actorId, ownerNode: record.ownerNode ?? null },
          },
        );
      throw new AgentError("ERR_ACTOR_NOT_ACTIVE", `actor ${request.actorId} is not active`);
    }
    // Claim the effect (unknown → running, under this node's epoch) so that a repeated or concurrent
    // reconcile cannot apply a second outcome. A crash before the outcome commits leaves a running
    // non-idempotent effect, which recovery turns back into unknown: never a blind retry.
    const claimed = await this.#store.updateEffect(
      request.tenantId,
      request.actorId,
      effect.effectId,
      { state: "running", updatedAt: this.#clock.now() },
      { fromStates: ["unknown"], epoch: cell.epoch },
    );
    if (!claimed)
      throw new AgentError("ERR_EFFECT_NOT_UNKNOWN", `effect ${request.effectId} is being reconciled or was settled`, {
        details: { effectId: request.effectId },
      });
    const o = request.outcome;
    const done = o.state === "completed";
    cell.reconcile(
      {
        outcome: {
          effectId: effect.effectId,
          state: o.state,
          result: done ? o.result : undefined,
          resultRef: undefined,
          error: done ? undefined : o.error,
          usage: undefined,
          attempts: effect.attempts,
        },
        event: done
          ? { type: `${effect.kind}.${effect.name}.done`, effectId: effect.effectId, output: o.result, reconciled: true }
          : {
              type: `${effect.kind}.${effect.name}.failed`,
              effectId: effect.effectId,
              error: o.error as unknown as Json,
              reconciled: true,
            },
        blob: undefined,
      },
      effect.chainRef,
    );
  }

  /** Reads what a caller may know about an actor. @throws AgentError `ERR_ACTOR_NOT_FOUND` */
  async getActor(tenantId: string, actorId: string): Promise<ActorView> {
    const read = await this.#readActorState(tenantId, actorId);
    if (read === undefined)
      throw new AgentError("ERR_ACTOR_NOT_FOUND", `no actor ${actorId} in tenant ${tenantId}`, { details: { actorId } });
    return viewOf(read.actor, read.stateValue);
  }

  /** The actor and its current state value: one read where the store offers it, else two. */
  async #readActorState(tenantId: string, actorId: string): Promise<{ actor: ActorRecord; stateValue: Json } | undefined> {
    if (this.#store.getActorState !== undefined) return this.#store.getActorState(tenantId, actorId);
    const actor = await this.#store.getActor(tenantId, actorId);
    if (actor === undefined) return undefined;
    const entry =
      actor.revision > 0 ? (await this.#store.readJournal(tenantId, actorId, { afterSeq: actor.revision - 1, limit: 1 }))[0] : undefined;
    return { actor, stateValue: entry?.stateValue ?? null };
  }

  /**
   * Reads the statechart context of an actor, rebuilt from the store if it is not resident.
   *
   * @returns the context of the actor's current state
   */
  async getContext(tenantId: string, actorId: string): Promise<Json> {
    const cell = this.#cells.get(`${tenantId}\u0000${actorId}`);
    if (cell?.state?.machine !== undefined) return structuredClone(cell.state.machine.context) as Json;
    const replayed = await this.replay(tenantId, actorId);
    return replayed.context;
  }

  /**
   * Waits until an actor reaches one of `statuses` (by default any final status).
   *
   * @throws TimeoutError `ERR_TIMEOUT` after `timeoutMs`; the abort reason when `signal` aborts
   */
  async waitForStatus(
    tenantId: string,
    actorId: string,
    options: { statuses?: readonly ActorStatus[]; timeoutMs: number; signal?: AbortSignal },
  ): Promise<ActorView> {
    const wanted = options.statuses ?? finalStatuses;
    options.signal?.throwIfAborted();
    const key = `${tenantId}\u0000${actorId}`;
    const deadline = Date.now() + options.timeoutMs;
    // An actor this node is loading (a run it just started) is resident once loaded: wait for that
    // (within the caller's time) rather than read the store now and poll it after.
    const activating = this.#activating.get(key);
    if (activating !== undefined && !wanted.includes("active")) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      let onAbort: (() => void) | undefined;
      try {
        await Promise.race([
          activating.catch(() => undefined),
          new Promise((resolve) => (timer = setTimeout(resolve, timerMs(deadline - Date.now())))),
          new Promise((_, reject) => {
            onAbort = () => reject(options.signal?.reason);
            options.signal?.addEventListener("abort", onAbort, { once: true });
          }),
        ]);
      } finally {
        clearTimeout(timer);
        if (onAbort !== undefined) options.signal?.removeEventListener("abort", onAbort);
      }
    }
    // An actor active here, when "active" is not what the caller waits for, needs no first read:
    // the commit that changes its status wakes the waiter, which reads then.
    let read = wanted.includes("active") || this.#cells.get(key)?.status !== "active";
    for (;;) {
      options.signal?.throwIfAborted();
      let status: ActorStatus = "active";
      if (read) {
        const view = await this.getActor(tenantId, actorId);
        if (wanted.includes(view.status)) return view;
        status = view.status;
      }
      const remaining = deadline - Date.now();
      // Never time out on what memory says: read the store once first.
      if (remaining <= 0 && !read) {
        read = true;
        continue;
      }
      read = true;
      if (remaining <= 0)
        throw new TimeoutError(`actor ${actorId} did not reach ${wanted.join("|")} within ${options.timeoutMs} ms (it is ${status})`, {
          details: { actorId, status },
        });
      // Woken by this node's commits of the actor (only when they reach a wanted status, so a busy
      // actor costs its waiters no reads), and by a poll for commits made by other processes.
      await new Promise<void>((resolve, reject) => {
        const waiters = this.#waiters.get(key) ?? new Set();
        this.#waiters.set(key, waiters);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(wake);
          if (waiters.size === 0) this.#waiters.delete(key);
          options.signal?.removeEventListener("abort", onAbort);
        };
        const wake = (status?: ActorStatus): void => {
          if (status !== undefined && !wanted.includes(status)) return;
          done();
          resolve();
        };
        const onAbort = (): void => {
          done();
          reject(options.signal?.reason);
        };
        // An actor resident here is stepped by this node, whose commits wake the waiter: the poll
        // is only a safety net then. Leaving memory (passivation, fence, hand-off, reload) wakes
        // the waiter, which polls at the normal pace from then on.
        const resident = this.#cells.get(key)?.status === "active";
        const pollMs = resident
          ? Math.max(this.#options.statusPollMs, Math.min(this.#options.statusPollMs * residentPollFactor, residentPollMsMax))
          : this.#options.statusPollMs;
        const timer = setTimeout(() => wake(), timerMs(Math.min(remaining, pollMs)));
        waiters.add(wake);
        // An abort during the read before this wait has fired already: the listener would not hear it.
        if (options.signal?.aborted === true) return onAbort();
        options.signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
  }

  /** Reads an actor's journal, in seq order. */
  async readJournal(tenantId: string, actorId: string, query: { afterSeq?: number; limit?: number } = {}): Promise<JournalEntry[]> {
    return this.#store.readJournal(tenantId, actorId, { afterSeq: query.afterSeq ?? 0, limit: Math.min(query.limit ?? 1000, 10_000) });
  }

  /** Lists an actor's effects with their states. */
  async listEffects(tenantId: string, actorId: string): Promise<EffectRecord[]> {
    return this.#store.listEffects(tenantId, actorId);
  }

  /** Lists the children an actor spawned. */
  async listChildren(tenantId: string, actorId: string): Promise<ActorView[]> {
    const records = await this.#store.listActors(tenantId, { parentId: actorId, limit: this.#limits.childrenPerActorMax });
    return Promise.all(records.map((r) => this.getActor(r.tenantId, r.actorId)));
  }

  /**
   * Replays an actor from its first step through its journal with the pure step function,
   * checking every recorded state hash; no tool or model is called.
   *
   * @returns the replayed state value and context, and the number of steps folded
   * @throws AgentError `ERR_REPLAY_DIVERGED` when the statechart no longer reproduces its record
   */
  async replay(
    tenantId: string,
    actorId: string,
    options: { toSeq?: number } = {},
  ): Promise<{ stateValue: Json; context: Json; steps: number; stateHash: string | undefined }> {
    const record = await this.#store.getActor(tenantId, actorId);
    if (record === undefined) throw new AgentError("ERR_ACTOR_NOT_FOUND", `no actor ${actorId} in tenant ${tenantId}`);
    const def = this.#registry.get(record.agentType, record.agentVersion) ?? this.#registry.latest(record.agentType);
    const toSeq = Math.min(options.toSeq ?? record.revision, record.revision);
    const entries: JournalEntry[] = [];
    while (entries.length < toSeq) {
      const page = await this.#store.readJournal(tenantId, actorId, {
        afterSeq: entries.length,
        limit: Math.min(1000, toSeq - entries.length),
      });
      if (page.length === 0) break;
      entries.push(...page);
    }
    const state = await foldJournal(this.#store, def, record, undefined, entries, this.#limits, (t) => this.#registry.latestVersionOf(t));
    const machine = state?.machine;
    return {
      stateValue: (machine?.value ?? null) as Json,
      context: (machine?.context ?? null) as Json,
      steps: entries.length,
      stateHash: entries.at(-1)?.stateHash,
    };
  }

  /** @internal The stored envelope of an actor's state after replay, for tests of snapshot equality. */
  async replayEnvelope(tenantId: string, actorId: string, toSeq: number): Promise<Json> {
    const record = await this.#store.getActor(tenantId, actorId);
    if (record === undefined) throw new AgentError("ERR_ACTOR_NOT_FOUND", `no actor ${actorId}`);
    const def = this.#registry.get(record.agentType, record.agentVersion) ?? this.#registry.latest(record.agentType);
    const entries = await this.#store.readJournal(tenantId, actorId, { afterSeq: 0, limit: toSeq });
    const state = await foldJournal(this.#store, def, record, undefined, entries, this.#limits, (t) => this.#registry.latestVersionOf(t));
    return (state === undefined ? null : toEnvelope(def, state)) as unknown as Json;
  }

  /**
   * Stops taking new work and waits, at most `graceMs`, for resident actors to become idle and
   * running effects to finish; then closes.
   */
  async drain(options: { graceMs: number }): Promise<void> {
    if (this.#state === "closed" || this.#state === "closing") return this.close();
    if (this.#state === "started" && this.#store.shared) {
      // Draining stays live: new runs go elsewhere while the actors here finish their steps.
      this.#draining = true;
      await this.#store.setNodeState(this.nodeId, "draining").catch((error: unknown) => {
        this.#logger.warn({ err: serializeError(error) }, "could not mark the node draining");
      });
    }
    const deadline = Date.now() + options.graceMs;
    while (Date.now() < deadline) {
      const busy = [...this.#cells.values()].some((cell) => !cell.idle) || this.#effects.inflightCount > 0;
      if (!busy) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    if (this.#draining) await this.#handOff();
    return this.close();
  }

  /**
   * Moves this node's actors to the other live nodes (rendezvous hashing), each by compare-and-set
   * with epoch + 1, and wakes their new owners: no one waits for this node's lease to expire.
   */
  async #handOff(): Promise<void> {
    await this.#membership.refresh().catch(() => undefined);
    const targets = this.#membership.placementNodes.filter((n) => n !== this.nodeId);
    // Nothing steps here any more: a commit still under way is refused by the epoch the hand-off bumps.
    this.#evictAll();
    if (targets.length === 0) return;
    try {
      for (;;) {
        const moved = await this.#store.handOffActors(
          this.nodeId,
          (tenantId, actorId) => rendezvous(`${tenantId}\u0000${actorId}`, targets)!,
          this.#options.cluster.sweepPageSize,
        );
        for (const actor of moved) this.#link?.wake(actor.ownerNode, { tenantId: actor.tenantId, actorId: actor.actorId });
        if (moved.length < this.#options.cluster.sweepPageSize) break;
      }
    } catch (error) {
      this.#logger.warn({ err: serializeError(error) }, "hand-off stopped early; the rest become orphans when this node stops");
    }
  }

  /**
   * Closes the node: aborts running effects (recovery redoes them), disarms timers and drops
   * resident actors. Idempotent. The store is not closed: whoever opened it closes it.
   */
  close(): Promise<void> {
    this.#closedPromise ??= (async () => {
      const wasStarted = this.#state === "started";
      this.#state = "closing";
      this.#committer.flushNow();
      this.#effects.close();
      this.#sweeper.stop();
      this.#passivator.stop();
      this.#membership.stop();
      for (const cell of this.#cells.values()) cell.evict();
      this.#cells.clear();
      for (const cancel of this.#dormant.values()) cancel();
      this.#dormant.clear();
      await Promise.allSettled([...this.#activating.values(), this.#sweeper.settled(), this.#membership.settled()]);
      if (wasStarted) {
        // Leaving: whatever this node still owns is an orphan at once, for any live node to claim.
        await this.#store.setNodeState(this.nodeId, "stopped").catch((error: unknown) => {
          this.#logger.warn({ err: serializeError(error) }, "could not mark the node stopped; its lease expires on its own");
        });
        this.#link?.broadcast({ kind: "node-left", nodeId: this.nodeId });
        await this.#link?.flush();
      }
      this.#link?.close();
      this.#state = "closed";
      for (const waiters of this.#waiters.values()) for (const wake of [...waiters]) wake();
    })();
    return this.#closedPromise;
  }

  /** Same as {@link TesseraNode.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * With identity enabled, a run or an event must carry a chain held by its actor; it is verified at
   * intake (so a bad one is refused at once, with a typed error) and stored with what it came with.
   */
  async #intakeChain(tenantId: string, actorId: string, chain: readonly string[] | undefined, actorIdKnown: boolean) {
    if (this.#authorizer === undefined) {
      if (chain !== undefined)
        throw new ValidationError("ERR_VALIDATION", "this node has no identity option: it cannot check a chain", { details: { tenantId } });
      return undefined;
    }
    if (!actorIdKnown)
      throw new ValidationError("ERR_VALIDATION", "with identity enabled a run needs a runId, the actor its chain's leaf is delegated to", {
        details: { tenantId },
      });
    const tokens = await this.#authorizer.checkIntake(tenantId, actorId, chain);
    const stored = { chainRef: Authorizer.chainRefOf(tokens), tokens: [...tokens] };
    this.#rememberChain(tenantId, stored);
    return stored;
  }

  /**
   * A message id sent again: the first send may have stored it without its caller (or this node)
   * hearing so (a COMMIT whose answer was lost), and then nobody delivered it. If it is still
   * pending, deliver the stored message now rather than leave it to the sweeper, so that it is not
   * overtaken by messages sent after it.
   */
  async #redeliver(tenantId: string, actorId: string, messageId: string): Promise<void> {
    const stored = await this.#store.getMessage(tenantId, actorId, messageId);
    if (stored !== undefined && stored.appliedSeq === undefined) this.#deliver(stored);
  }

  /**
   * Runs `work` after every earlier work of the same key on this node. Enqueues to one actor queue
   * on its mailbox head row in the store anyway; lining them up here first keeps a burst to one
   * actor from holding every pooled connection while they wait for that lock.
   */
  #serialized<T>(key: string, work: () => Promise<T>): Promise<T> {
    const before = this.#lanes.get(key) ?? Promise.resolve();
    const result = before.then(work, work);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#lanes.set(key, tail);
    void tail.then(() => {
      if (this.#lanes.get(key) === tail) this.#lanes.delete(key);
    });
    return result;
  }

  #rememberChain(tenantId: string, chain: StoredChain): void {
    const key = `${tenantId}\u0000${chain.chainRef}`;
    if (this.#chains.size >= 10_000) this.#chains.delete(this.#chains.keys().next().value!);
    this.#chains.set(key, chain.tokens);
  }

  async #loadChain(tenantId: string, chainRef: string): Promise<string[] | undefined> {
    const known = this.#chains.get(`${tenantId}\u0000${chainRef}`);
    if (known !== undefined) return known;
    return this.#store.getChain(tenantId, chainRef);
  }

  /**
   * Engages a kill switch for an agent type of a tenant, across the cluster and durably: new runs of
   * the type are refused (`ERR_KILL_SWITCH`) on every node, and every active actor of the type is
   * halted by a step of its own (status `halted`, error `ERR_KILL_SWITCH`) before it starts another
   * effect. Effects already executing finish; their results are not applied.
   *
   * @returns whether this call engaged it, and how many active actors were sent the halt
   * @throws AgentError `ERR_VALIDATION` for a bad tenant id, `ERR_UNKNOWN_AGENT_TYPE`
   */
  async engageKillSwitch(request: { tenantId: string; agentType: string; reason: string }): Promise<{ engaged: boolean; halting: number }> {
    this.#assertOpen();
    this.#checkId("tenantId", request.tenantId);
    const def = this.#registry.latest(request.agentType);
    const reason = String(request.reason).slice(0, 512);
    const entry = { tenantId: request.tenantId, agentType: def.type, reason, engagedAt: this.#clock.now() };
    const { created } = await this.#store.engageKillSwitch(entry);
    this.#killSwitches.set(`${entry.tenantId}\u0000${entry.agentType}`, entry);
    this.#link?.broadcast({ kind: "kill", tenantId: entry.tenantId, agentType: entry.agentType });
    let halting = 0;
    let after: { createdAt: number; actorId: string } | undefined;
    for (;;) {
      const page = await this.#store.listActors(entry.tenantId, {
        agentType: entry.agentType,
        status: "active",
        limit: 500,
        ...(after === undefined ? {} : { after }),
      });
      for (const actor of page) if (await this.#halt(actor.tenantId, actor.actorId, reason)) halting++;
      if (page.length < 500) break;
      const last = page.at(-1)!;
      after = { createdAt: last.createdAt, actorId: last.actorId };
    }
    return { engaged: created, halting };
  }

  /** Re-reads the kill switches; resident actors of a newly killed type get their halt. */
  async #refreshKillSwitches(): Promise<void> {
    const switches = await this.#store.listKillSwitches();
    for (const entry of switches) {
      const key = `${entry.tenantId}\u0000${entry.agentType}`;
      if (this.#killSwitches.has(key)) continue;
      this.#killSwitches.set(key, entry);
      for (const cell of [...this.#cells.values()]) {
        if (cell.identity.tenantId === entry.tenantId && cell.def.type === entry.agentType)
          await this.#halt(entry.tenantId, cell.identity.actorId, entry.reason);
      }
    }
  }

  /** Puts a halt into an actor's mailbox (once: the message id is fixed) and delivers it. */
  async #halt(tenantId: string, actorId: string, reason: string): Promise<boolean> {
    const message: NewMessage = {
      tenantId,
      actorId,
      messageId: `halt.${actorId}`,
      event: { type: "tessera.halt", reason },
      sender: "system",
      createdAt: this.#clock.now(),
    };
    try {
      // One over the mailbox limit, like a stop: a full mailbox does not keep an actor from halting.
      const { created } = await this.#store.enqueueMessage(message, { mailboxDepthMax: this.#limits.mailboxDepthMax + 1 });
      if (created) this.#deliver(message);
      return created;
    } catch (error) {
      if (error instanceof AgentError && (error.code === "ERR_ACTOR_NOT_ACTIVE" || error.code === "ERR_ACTOR_NOT_FOUND")) return false;
      throw error;
    }
  }

  /**
   * Revokes a link, a key or a principal (an actor and, through its chains, its whole subtree). It
   * takes effect on this node at once: every verification, cached ones included, checks it.
   *
   * @param expiresAtSeconds - when the entry may be dropped (the target's expiry), in Unix seconds
   * @throws AgentError `ERR_CONFIG` when the node has no identity option
   */
  async revoke(tenantId: string, target: RevocationTarget, expiresAtSeconds: number): Promise<void> {
    if (this.#authorizer === undefined) throw new AgentError("ERR_CONFIG", "this node has no identity option");
    await this.#authorizer.revoke({ tenant: tenantId, target, expiresAt: expiresAtSeconds });
    this.#link?.broadcast({ kind: "revoke", tenantId, target: target as unknown as Json, expiresAt: expiresAtSeconds });
  }

  /**
   * The principal of an actor, `tsr:<tenant>:agent:<actorId>`: the audience a chain for it names.
   *
   * @returns the principal id
   */
  static principalOf(tenantId: string, actorId: string): string {
    return Authorizer.principalOf(tenantId, actorId);
  }

  #isClosing(): boolean {
    return this.#state === "closing" || this.#state === "closed";
  }

  #assertOpen(): void {
    if (this.#state === "closing" || this.#state === "closed") throw new AgentError("ERR_NODE_CLOSED", `node ${this.nodeId} is closed`);
  }

  #checkId(field: string, value: unknown): void {
    if (field === "tenantId") {
      if (typeof value === "string" && tenantPattern.test(value)) return;
      throw new ValidationError("ERR_VALIDATION", "tenantId must be 1..64 characters of [a-z0-9_-], starting with a letter or digit", {
        details: { field },
      });
    }
    if (typeof value !== "string" || value.length === 0 || value.length > this.#limits.idLengthMax || !idPattern.test(value)) {
      throw new ValidationError("ERR_VALIDATION", `${field} must be 1..${this.#limits.idLengthMax} characters of [A-Za-z0-9_.:@-]`, {
        details: { field },
      });
    }
  }

  #notify(key: string, status: ActorStatus | undefined): void {
    const waiters = this.#waiters.get(key);
    if (waiters === undefined) return;
    for (const wake of [...waiters]) wake(status);
  }

  /**
   * Hands a durable message to its recipient: to the resident cell, to an activation here when
   * this node owns the actor, or as a wake-up to the owning node. Whatever is lost on the way is
   * still pending in the store, where the owner's sweeper finds it.
   */
  #deliver(message: NewMessage): void {
    const key = `${message.tenantId}\u0000${message.actorId}`;
    const cell = this.#cells.get(key);
    if (cell !== undefined)
      return cell.enqueueMessage(message.messageId, message.event as { type: string } & Record<string, Json>, message.chainRef);
    if (this.#state !== "started" && this.#state !== "new") return;
    void this.#route(message).catch((error: unknown) =>
      this.#logger.warn({ err: serializeError(error), actorId: message.actorId }, "delivery failed; the sweeper will find the message"),
    );
  }

  async #route(message: NewMessage): Promise<void> {
    // An embedded store has one node: every actor is this node's.
    if (!this.#store.shared) return this.#deliverHere(message);
    const record = await this.#store.getActor(message.tenantId, message.actorId);
    if (record === undefined || record.status !== "active") return;
    if (record.ownerNode === this.nodeId) return this.#deliverHere(message);
    if (record.ownerNode === undefined || !this.#membership.liveNodes.includes(record.ownerNode)) return;
    this.#link?.wake(record.ownerNode, {
      tenantId: message.tenantId,
      actorId: message.actorId,
      message: { messageId: message.messageId },
    });
  }

  /** An activation under way may have read the mailbox before this message landed, so it is handed to the cell once it exists (the cell drops one it already has). */
  #deliverHere(message: { tenantId: string; actorId: string; messageId: string; event: Json; chainRef?: string | undefined }): void {
    void this.#activate(message.tenantId, message.actorId).then((activated) =>
      activated?.enqueueMessage(message.messageId, message.event as { type: string } & Record<string, Json>, message.chainRef),
    );
  }

  /** Another node says an actor this node owns has work. */
  #onWake(notice: WakeNotice): void {
    if (this.#state !== "started") return;
    const m = notice.message;
    if (m === undefined) {
      void this.#activate(notice.tenantId, notice.actorId);
      return;
    }
    // The store is the record: the message applied is the stored one, never what came over the wire.
    void this.#redeliver(notice.tenantId, notice.actorId, m.messageId).catch((error: unknown) =>
      this.#logger.warn({ err: serializeError(error), actorId: notice.actorId }, "a wake-up's message could not be read; the sweeper will"),
    );
  }

  #onControl(notice: ControlNotice): void {
    switch (notice.kind) {
      case "node-joined":
        if (notice.nodeId !== this.nodeId) this.#membership.noteJoined(notice.nodeId);
        return;
      case "kill":
        void this.#refreshKillSwitches().catch((error: unknown) =>
          this.#logger.warn({ err: serializeError(error) }, "reading kill switches failed; the next sweep retries"),
        );
        return;
      case "node-left":
        if (notice.nodeId !== this.nodeId) this.#sweeper.poke();
        return;
      case "revoke":
        void this.#authorizer?.revocations
          .revoke({ tenant: notice.tenantId, target: notice.target as unknown as RevocationTarget, expiresAt: notice.expiresAt })
          .catch((error: unknown) => this.#logger.warn({ err: serializeError(error) }, "a broadcast revocation was refused"));
        return;
    }
  }

  /** Where a new run lives: the live node that rendezvous hashing picks (this one without a transport to reach others). */
  #placeNew(tenantId: string, actorId: string): string {
    if (this.#link === undefined || !this.#store.shared) return this.nodeId;
    const candidates = this.#draining ? this.#membership.placementNodes.filter((n) => n !== this.nodeId) : this.#membership.placementNodes;
    return rendezvous(`${tenantId}\u0000${actorId}`, candidates) ?? this.nodeId;
  }

  async #activateAll(actors: ReadonlyArray<{ tenantId: string; actorId: string }>): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < actors.length) {
        const actor = actors[next++]!;
        await this.#activate(actor.tenantId, actor.actorId, true);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#options.recoveryConcurrency, actors.length) }, worker));
  }

  async #refreshMailbox(tenantId: string, actorId: string): Promise<boolean> {
    const cell = this.#cells.get(`${tenantId}\u0000${actorId}`);
    // A busy actor reads nothing now: it is applying messages, and a later sweep finds it idle if a
    // wake-up for it was lost. An idle one with pending messages is exactly that case.
    if (cell === undefined || !cell.idle) return false;
    const messages = await this.#store.pendingMessages(tenantId, actorId, this.#limits.mailboxDepthMax + 1);
    for (const message of messages)
      cell.enqueueMessage(message.messageId, message.event as { type: string } & Record<string, Json>, message.chainRef);
    return true;
  }

  /** Drops an idle actor from memory; a timer it has armed wakes it again. */
  #passivate(cell: ActorCell): void {
    if (this.#cells.get(cell.key) !== cell) return;
    const dueAt = cell.earliestTimerDueAt();
    cell.evict();
    this.#cells.delete(cell.key);
    this.#notify(cell.key, undefined);
    if (dueAt === undefined) return;
    // The wake-up holds the ids only, not the cell: a passivated actor's state must be freed.
    const { tenantId, actorId } = cell.identity;
    const key = cell.key;
    const cancel = this.#clock.setTimer(
      () => {
        this.#dormant.delete(key);
        void this.#activate(tenantId, actorId);
      },
      Math.max(0, dueAt - this.#clock.now()),
    );
    this.#dormant.set(key, cancel);
  }

  /** Drops every resident actor from memory; their waiters go back to polling the store. */
  #evictAll(): void {
    const keys = [...this.#cells.keys()];
    for (const cell of this.#cells.values()) cell.evict();
    this.#cells.clear();
    for (const key of keys) this.#notify(key, undefined);
  }

  /** The lease is lost: nothing this node does for its actors may count any more. */
  #fence(): void {
    this.#fences++;
    this.#evictAll();
    for (const cancel of this.#dormant.values()) cancel();
    this.#dormant.clear();
    this.#effects.abortAll(new AgentError("ERR_LEASE_LOST", `node ${this.nodeId} lost its lease`));
  }

  /** Registered again after a loss: take back what nobody took, then sweep for orphans. */
  async #reclaim(): Promise<void> {
    try {
      await this.#sweeper.claim("own");
    } catch (error) {
      this.#logger.warn({ err: serializeError(error) }, "reclaiming own actors failed; the sweeper retries");
    }
    this.#sweeper.poke();
  }

  #reload(cell: ActorCell): void {
    // A refused commit may mean the lease is gone (or another process took this node id): ask now.
    if (this.#state === "started") this.#membership.refreshSoon();
    cell.evict();
    if (this.#cells.get(cell.key) === cell) this.#cells.delete(cell.key);
    this.#notify(cell.key, undefined);
    if (this.#state === "closing" || this.#state === "closed") return;
    const delayMs = 50 + Math.floor(Math.random() * 200);
    this.#clock.setTimer(() => void this.#activate(cell.identity.tenantId, cell.identity.actorId), delayMs);
  }

  /** Loads an actor into memory (once) and resumes whatever it has pending in the store. */
  #activate(tenantId: string, actorId: string, recovering = false, overCapOk = false): Promise<ActorCell | undefined> {
    const key = `${tenantId}\u0000${actorId}`;
    const resident = this.#cells.get(key);
    if (resident !== undefined) return Promise.resolve(resident);
    const pending = this.#activating.get(key);
    if (pending !== undefined) return pending;
    if (!overCapOk && !this.#hasRoom()) {
      this.#defer(key, { tenantId, actorId });
      return Promise.resolve(undefined);
    }
    const activation = this.#load(tenantId, actorId, recovering)
      .catch((error: unknown) => {
        this.#logger.error({ err: serializeError(error), tenantId, actorId }, "actor activation failed");
        this.#rememberActivationError(key, error);
        return undefined;
      })
      .finally(() => this.#activating.delete(key));
    this.#activating.set(key, activation);
    return activation;
  }

  readonly #activationErrors = new Map<string, unknown>();

  /**
   * Whether one more actor may become resident: under `residentActorsMax`, after passivating idle
   * actors if need be. When not, the actor's work waits in the store (durable: an unstarted actor,
   * a pending message, a due timer) and the sweeper activates it once there is room.
   */
  #hasRoom(): boolean {
    const cap = this.#options.passivation.residentActorsMax;
    if (this.#cells.size + this.#activating.size < cap) return true;
    // Make room for a tenth of the cap at once, so the scan is paid once per many activations;
    // after a scan that freed nothing (every resident busy), wait 20 ms before scanning again.
    if (performance.now() - this.#capSweepFutileAt > 20) {
      const before = this.#cells.size;
      this.#passivator.sweep(Math.max(0, cap - Math.max(1, Math.floor(cap / 10)) - this.#activating.size));
      if (this.#cells.size === before) this.#capSweepFutileAt = performance.now();
    }
    return this.#cells.size + this.#activating.size < cap;
  }

  /** Remembers an activation put off at the cap (bounded; past that the sweeper finds the work in the store). */
  #defer(key: string, actor: { tenantId: string; actorId: string }): void {
    this.#deferred++;
    if (this.#waitingRoom.size < deferredKeysMax) this.#waitingRoom.set(key, actor);
  }

  /** Activates put-off actors while there is room (a cell went idle, finished or left memory). */
  #admitDeferred(): void {
    if (this.#admitting || this.#waitingRoom.size === 0 || this.#state !== "started") return;
    this.#admitting = true;
    try {
      for (const [key, actor] of this.#waitingRoom) {
        if (!this.#hasRoom()) break;
        this.#waitingRoom.delete(key);
        void this.#activate(actor.tenantId, actor.actorId, true);
      }
    } finally {
      this.#admitting = false;
    }
  }

  /** The error that kept an actor from activating on this node (e.g. `ERR_VERSION_UNSUPPORTED`), if any. */
  activationError(tenantId: string, actorId: string): AgentError | undefined {
    const error = this.#activationErrors.get(`${tenantId}\u0000${actorId}`);
    return error instanceof AgentError
      ? error
      : error === undefined
        ? undefined
        : new AgentError("ERR_ACTIVATION", String(error), { cause: error });
  }

  async #load(tenantId: string, actorId: string, recovering: boolean): Promise<ActorCell | undefined> {
    // A node that lost its lease activates nothing until it holds one again.
    if (this.#state === "started" && !this.#membership.holdsLease) return undefined;
    const generation = this.#fences;
    const record = await this.#store.getActor(tenantId, actorId);
    if (record === undefined || record.status !== "active" || this.#isClosing()) return undefined;
    if (record.ownerNode !== this.nodeId) return undefined;
    const loaded = await loadActor(this.#store, this.#registry, record, this.#limits);
    const [effects, timers, messages] = await Promise.all([
      this.#store.listEffects(tenantId, actorId, { states: ["planned", "running"] }),
      this.#store.listTimers(tenantId, actorId),
      this.#store.pendingMessages(tenantId, actorId, this.#limits.mailboxDepthMax + 1),
    ]);
    // Fenced while loading: what was read belongs to a lease this node no longer holds.
    if (generation !== this.#fences) return undefined;
    return this.#install(loaded, { effects, timers, messages, recovering });
  }

  /**
   * Activates an actor this node has just created (a run it started, a child its step spawned):
   * its whole state is known, so nothing is read back from the store. Messages that reach it
   * meanwhile are handed over by `#deliver`.
   */
  #activateCreated(record: ActorRecord): void {
    const key = `${record.tenantId}\u0000${record.actorId}`;
    if (this.#cells.has(key) || this.#activating.has(key) || this.#isClosing()) return;
    if (!this.#hasRoom()) return this.#defer(key, { tenantId: record.tenantId, actorId: record.actorId });
    const def = this.#registry.get(record.agentType, record.agentVersion) ?? this.#registry.latest(record.agentType);
    const activation = this.#install(
      { record, def, state: undefined, migrated: false, rowsRead: 0 },
      { effects: [], timers: [], messages: [], recovering: false },
    )
      .catch((error: unknown) => {
        this.#logger.error({ err: serializeError(error), tenantId: record.tenantId, actorId: record.actorId }, "actor activation failed");
        this.#rememberActivationError(key, error);
        return undefined;
      })
      .finally(() => this.#activating.delete(key));
    this.#activating.set(key, activation);
  }

  /** Keeps the last activation errors (bounded: oldest dropped first). */
  #rememberActivationError(key: string, error: unknown): void {
    this.#activationErrors.delete(key);
    if (this.#activationErrors.size >= 10_000) this.#activationErrors.delete(this.#activationErrors.keys().next().value!);
    this.#activationErrors.set(key, error);
  }

  /** Makes a loaded actor resident and resumes what it has pending. */
  async #install(
    loaded: LoadedActor,
    pending: { effects: EffectRecord[]; timers: TimerRecord[]; messages: MessageRecord[]; recovering: boolean },
  ): Promise<ActorCell | undefined> {
    const { record } = loaded;
    if (this.#isClosing()) return undefined;
    const cell = new ActorCell(this.#runtime, loaded);
    if (this.#authorizer !== undefined) {
      // A new key on every activation: a key of a previous owner (or life) no longer signs for it.
      cell.signer = await this.#authorizer.signerFor({
        tenantId: record.tenantId,
        actorId: record.actorId,
        agentType: loaded.def.type,
        agentVersion: loaded.def.version,
        parentId: record.parentId,
        nodeId: this.nodeId,
        epoch: record.epoch,
      });
      if (this.#isClosing() || this.#cells.has(cell.key)) return this.#cells.get(cell.key);
      if (this.#state === "started" && !this.#membership.holdsLease) return undefined;
    }
    // Past the cap, the least recently active idle actors leave now (before this one joins them, so
    // the sweep cannot take the cell being installed, whose work is not queued yet).
    if (this.#cells.size + 1 > this.#options.passivation.residentActorsMax)
      this.#passivator.sweep(this.#options.passivation.residentActorsMax - 1);
    this.#cells.set(cell.key, cell);
    this.#activationErrors.delete(cell.key);
    const dormant = this.#dormant.get(cell.key);
    if (dormant !== undefined) {
      dormant();
      this.#dormant.delete(cell.key);
    }
    if (record.revision === 0) cell.enqueueInit();
    const killed = this.#killSwitches.get(`${record.tenantId}\u0000${loaded.def.type}`);
    if (killed !== undefined) void this.#halt(record.tenantId, record.actorId, killed.reason).catch(() => undefined);
    for (const effect of pending.effects) cell.dispatchEffect(effect, pending.recovering || effect.state === "running");
    for (const timer of pending.timers) cell.armTimer(timer.timerId, timer.name, timer.dueAt, timer.chainRef);
    for (const message of pending.messages)
      cell.enqueueMessage(message.messageId, message.event as { type: string } & Record<string, Json>, message.chainRef);
    return cell;
  }
}

/** The stored form of an actor this node just created. */
function recordOfNew(actor: NewActor): ActorRecord {
  return {
    ...actor,
    status: "active",
    revision: 0,
    snapshot: undefined,
    snapshotSeq: 0,
    lastHash: "",
    output: undefined,
    error: undefined,
    childCount: 0,
    updatedAt: actor.createdAt,
  };
}

function viewOf(record: ActorRecord, stateValue: Json): ActorView {
  return {
    tenantId: record.tenantId,
    actorId: record.actorId,
    agentType: record.agentType,
    agentVersion: record.agentVersion,
    parentId: record.parentId,
    rootId: record.rootId,
    name: record.name,
    depth: record.depth,
    status: record.status,
    stateValue,
    revision: record.revision,
    output: record.output,
    error: record.error,
    ownerNode: record.ownerNode,
    epoch: record.epoch,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
  };
}

/**
 * Creates a node. Call `start()` to recover unfinished actors and begin work.
 *
 * @param options - store, agents and optional model, clock, tracer provider, logger and limits
 * @returns the node
 * @throws ConfigError `ERR_CONFIG` when an option is invalid
 * @example
 * ```ts
 * const node = createNode({ store: await createPgliteStore({ dataDir: ".data" }), agents: [desk] });
 * await node.start();
 * const { runId } = await node.startRun({ tenantId: "acme", agentType: "support-desk", input: { orderId: "o-1" }, idempotencyKey: "ticket-42" });
 * const view = await node.waitForStatus("acme", runId, { timeoutMs: 30_000 });
 * ```
 */
export function createNode(options: NodeOptions): TesseraNode {
  return new TesseraNode(options);
}
