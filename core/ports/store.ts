import type { SerializedError } from "../errors.js";
import type { Json } from "../json.js";

/**
 * The storage port. The runtime (`actors/`) talks to storage only through this interface;
 * `persistence/memory`, `persistence/pglite` and `persistence/pg` implement it and pass one
 * conformance suite (`test/conformance/store.suite.ts`).
 *
 * Every record is keyed by tenant first. Every write that belongs to a step goes through
 * {@link Store.commitSteps}, one transaction guarded by the actor's revision and lease epoch.
 */
export interface Store {
  /** A short name of the adapter, for logs and benchmarks ("memory", "pglite", "pg"). */
  readonly kind: string;
  /** Creates or upgrades the schema. Idempotent; migrations are recorded in a table. */
  migrate(): Promise<void>;
  /** Releases connections. Idempotent. */
  close(): Promise<void>;

  /**
   * Creates an actor row (a run's root actor when `runKey` is given, else a child created outside
   * a step). With a `runKey` that already exists, returns the existing actor with `created: false`,
   * or throws `ERR_IDEMPOTENCY_MISMATCH` when the stored run was started with different input.
   */
  createActor(
    actor: NewActor,
    options?: { runKey?: string; inputHash?: string; chains?: StoredChain[] },
  ): Promise<{ actor: ActorRecord; created: boolean }>;
  /** Reads one actor, or `undefined`. */
  getActor(tenantId: string, actorId: string): Promise<ActorRecord | undefined>;
  /**
   * Reads one actor and the state value of its journal entry at `revision` (`null` before its
   * first step), in one read: what a caller asking "where is this run now?" needs. Optional: a
   * store without it is read with `getActor` and `readJournal`.
   */
  getActorState?(tenantId: string, actorId: string): Promise<{ actor: ActorRecord; stateValue: Json } | undefined>;
  /** Finds the root actor of a run by its idempotency key. */
  findRun(tenantId: string, runKey: string): Promise<ActorRecord | undefined>;
  /** Lists actors of a tenant, optionally only the children of one parent or one status. */
  listActors(tenantId: string, query: ActorQuery): Promise<ActorRecord[]>;

  /**
   * Commits steps of one or more actors in one transaction (group commit). Each commit is guarded
   * independently: one that is refused (`ok: false` with a `SnapshotConflictError`) writes nothing —
   * none of its rows, chains or blobs — while the others commit. `error.details.reason` says why,
   * the first that holds of: `"actor-not-found"`, `"stale-revision"`, `"stale-epoch"` (with
   * `expectedEpoch`, `actualEpoch`), `"message-already-applied"` and `"message-not-found"` (with
   * `messageId`). A store error comes back as a `StoreError` outcome; when the connection broke
   * during COMMIT the commit may have landed, so the caller reloads the actor before going on.
   */
  commitSteps(commits: readonly StepCommit[]): Promise<CommitOutcome[]>;

  /** Reads journal entries of an actor with `seq > afterSeq`, in order, at most `limit`. */
  readJournal(tenantId: string, actorId: string, query: { afterSeq?: number; limit: number }): Promise<JournalEntry[]>;

  /** Lists the effects of an actor in creation order, optionally only those in some states. */
  listEffects(tenantId: string, actorId: string, query?: { states?: readonly EffectState[] }): Promise<EffectRecord[]>;
  /** Reads one effect, or `undefined`. */
  getEffect(tenantId: string, actorId: string, effectId: string): Promise<EffectRecord | undefined>;
  /**
   * Changes an effect outside a step (dispatch bookkeeping: running, attempts, unknown, retry
   * schedule). Applies only when the effect is in one of `fromStates` and, when `epoch` is given,
   * the actor's lease epoch still equals it.
   *
   * @returns whether the effect was changed
   */
  updateEffect(tenantId: string, actorId: string, effectId: string, patch: EffectPatch, guard: EffectGuard): Promise<boolean>;

  /**
   * Puts a message into an actor's durable mailbox. A message id seen before is not added again
   * (`created: false`), whether or not it was applied.
   *
   * @throws AgentError `ERR_ACTOR_NOT_FOUND`, `ERR_ACTOR_NOT_ACTIVE`, or `ERR_MAILBOX_FULL` when the
   *   actor already holds `mailboxDepthMax` pending messages
   */
  enqueueMessage(message: NewMessage, options: { mailboxDepthMax: number; chains?: StoredChain[] }): Promise<{ created: boolean }>;
  /** Pending (not yet applied) messages of an actor, oldest first, at most `limit`. */
  pendingMessages(tenantId: string, actorId: string, limit: number): Promise<MessageRecord[]>;
  /** Reads one mailbox message, or `undefined`. */
  getMessage(tenantId: string, actorId: string, messageId: string): Promise<MessageRecord | undefined>;

  /** The timers an actor has armed. */
  listTimers(tenantId: string, actorId: string): Promise<TimerRecord[]>;

  /**
   * Takes over active actors for `nodeId`, at most `limit` in key order after `afterKey`: increments
   * each one's lease epoch (every claim does, so a node restarted under the same id never shares an
   * epoch with its previous life) and sets the owner. One bounded transaction per call; page with
   * the last key returned until a page comes back shorter than `limit`.
   *
   * @returns the claimed actors with their new epochs, in key order
   */
  claimActiveActors(
    nodeId: string,
    limit: number,
    options?: { afterKey?: { tenantId: string; actorId: string }; only?: ClaimScope },
  ): Promise<Array<{ tenantId: string; actorId: string; epoch: number }>>;

  /**
   * Whether other processes may use this store at the same time (PostgreSQL, CockroachDB). An
   * embedded store (memory, PGlite) is used by one process: a node starting on it may take over
   * every active actor at once, without waiting for the previous node's lease to expire.
   */
  readonly shared: boolean;

  /**
   * Registers a node (or a new life of a node id) with a lease of `leaseTtlMs` from the
   * database's clock. A registration replaces an earlier row of the same id.
   */
  registerNode(registration: { nodeId: string; leaseTtlMs: number; info: Json }): Promise<NodeLease>;
  /**
   * Renews a live node's lease: one statement. Returns `undefined` when the node is no longer live
   * (its lease expired before this renewal, or it was stopped): then other nodes may have taken its
   * actors, and it must drop them and register again. Also returns the ids of the live nodes. With
   * `life`, only the registration whose `info.life` equals it renews: a process restarted under the
   * same node id registered a new life, and the previous process's renewals fail from then on.
   */
  renewNode(nodeId: string, leaseTtlMs: number, life?: string): Promise<NodeLease | undefined>;
  /** Marks a node `draining` (still live, hands its actors off) or `stopped` (its actors are orphans at once). */
  setNodeState(nodeId: string, state: "draining" | "stopped"): Promise<void>;
  /** Every registered node with its lease, liveness by the database clock, and how many active actors it owns. */
  listNodes(): Promise<NodeRecord[]>;
  /**
   * Moves up to `limit` active actors owned by `fromNodeId` to the nodes `assign` picks (a drain's
   * hand-off), each by compare-and-set on its owner with epoch + 1.
   *
   * @returns the moved actors with their new owners and epochs
   */
  handOffActors(
    fromNodeId: string,
    assign: (tenantId: string, actorId: string) => string,
    limit: number,
  ): Promise<Array<{ tenantId: string; actorId: string; epoch: number; ownerNode: string }>>;
  /**
   * Active actors owned by `nodeId` that have work in the store: no step yet (revision 0), a
   * pending mailbox message, a timer due at or before `dueBefore` (ms), or a planned or running
   * effect. The sweeper reactivates them (what NATS or a passivation lost is re-derived from here).
   * In key order after `afterKey`: a sweeper pages through them across sweeps.
   */
  findPendingWork(
    nodeId: string,
    dueBefore: number,
    limit: number,
    afterKey?: { tenantId: string; actorId: string },
  ): Promise<PendingWork[]>;

  /**
   * Engages a kill switch: the agent type may no longer run in the tenant. Engaging it again keeps
   * the first reason and time.
   *
   * @returns whether this call engaged it
   */
  engageKillSwitch(entry: KillSwitch): Promise<{ created: boolean }>;
  /** Every engaged kill switch, of every tenant (a small table: nodes cache it). */
  listKillSwitches(): Promise<KillSwitch[]>;

  /** Reads a payload stored by reference. */
  getBlob(tenantId: string, blobId: string): Promise<string | undefined>;

  /**
   * Reads a delegation chain stored by reference (its compact JWS links, root first). Chains are
   * written with the actor, message or step that first carried them (only when that write happens),
   * keyed by tenant and their leaf's hash.
   */
  getChain(tenantId: string, chainRef: string): Promise<string[] | undefined>;

  /**
   * Appends a change to a tenant's key directory (IDENTITY.md §2) and returns its position, which
   * is the tenant's directory epoch after it. Positions are gap-free: concurrent appends serialize.
   */
  appendDirectory(entry: NewDirectoryEntry): Promise<number>;
  /** Reads a tenant's directory changes after `afterPosition`, in order, at most `limit`. */
  readDirectory(tenantId: string, afterPosition: number, limit: number): Promise<DirectoryEntry[]>;
}

/**
 * Which active actors {@link Store.claimActiveActors} takes: `any` (an embedded store's only
 * node), `own` (those the node id already owns: a restarted node's previous life), or `orphaned`
 * (no owner, or an owner that is not live: lease expired, stopped, or never registered).
 */
export type ClaimScope = "any" | "own" | "orphaned";

/** An engaged kill switch. */
export interface KillSwitch {
  tenantId: string;
  agentType: string;
  reason: string;
  engagedAt: number;
}

/** A node's lease as the database saw it. Times are ms since the epoch, by the database clock. */
export interface NodeLease {
  nodeId: string;
  /** The database's clock when the statement ran. */
  dbNow: number;
  expiresAt: number;
  /** Ids of the live nodes (this one included), sorted. */
  liveNodes: string[];
  /** The live nodes other than this one that are draining (they take no new actors), sorted. */
  drainingNodes: string[];
}

/** A registered node. */
export interface NodeRecord {
  nodeId: string;
  state: "active" | "draining" | "stopped";
  /** Whether its lease has not expired (by the database clock) and it is not stopped. */
  live: boolean;
  registeredAt: number;
  heartbeatAt: number;
  leaseExpiresAt: number;
  /** What the node said about itself when it registered (address, version, pid). */
  info: Json;
  /** Active actors whose lease names it. */
  ownedActors: number;
}

/** An actor with work waiting in the store (see {@link Store.findPendingWork}). */
export interface PendingWork {
  tenantId: string;
  actorId: string;
  /** Whether it has a mailbox message not yet applied. */
  pendingMessages: boolean;
}

/** A change to a tenant's key directory, as the identity layer records it. */
export interface NewDirectoryEntry {
  tenantId: string;
  /**
   * `anchor`: a tenant authority key; `identity`: an identity token certifying a key; `retire`,
   * `compromise`: a key's end; `revoke`: a revocation (IDENTITY.md §9), which every node applies.
   */
  kind: "anchor" | "identity" | "retire" | "compromise" | "revoke";
  /** The key concerned (its RFC 7638 thumbprint). */
  kid: string;
  /** anchor: the authority anchor; identity: `{ token, publicJwk }`; retire: `{ atSeconds }`; compromise: `{}`; revoke: `{ target, expiresAt }`. */
  body: Json;
  createdAt: number;
}

/** A stored directory change with its position (1, 2, 3, … per tenant). */
export interface DirectoryEntry extends NewDirectoryEntry {
  position: number;
}

/** A delegation chain to store (once per tenant and leaf hash). */
export interface StoredChain {
  /** base64url SHA-256 of the leaf link. */
  chainRef: string;
  /** The compact JWS links, root first. */
  tokens: string[];
}

/** Life of an actor. Every status but `active` is final. */
export type ActorStatus = "active" | "completed" | "failed" | "stopped" | "halted";

/** The states of an effect (DESIGN.md §4). `awaiting-approval` is reserved for governance. */
export type EffectState = "planned" | "running" | "completed" | "failed" | "unknown" | "awaiting-approval" | "cancelled";

/** An actor to create. */
export interface NewActor {
  tenantId: string;
  actorId: string;
  agentType: string;
  agentVersion: number;
  parentId: string | undefined;
  rootId: string;
  /** The name under which the parent spawned it. */
  name: string | undefined;
  depth: number;
  input: Json;
  epoch: number;
  ownerNode: string | undefined;
  createdAt: number;
  /** The delegation chain the actor was started or spawned under (identity enabled). */
  chainRef?: string;
}

/** An actor as stored. Revision equals the seq of its last journal entry (0 before its first step). */
export interface ActorRecord extends NewActor {
  status: ActorStatus;
  revision: number;
  /** The last full snapshot (a versioned envelope), if any step has run. */
  snapshot: Json | undefined;
  /** The seq at which `snapshot` was taken (0 when none). */
  snapshotSeq: number;
  /** Hash of the last journal entry ("" before the first). */
  lastHash: string;
  output: Json | undefined;
  error: SerializedError | undefined;
  /** Children spawned over its life. */
  childCount: number;
  updatedAt: number;
}

/** Which actors {@link Store.listActors} returns, in creation order (then actor id). */
export interface ActorQuery {
  parentId?: string;
  status?: ActorStatus;
  agentType?: string;
  /** Only actors after this one in the order: a cursor for paging. */
  after?: { createdAt: number; actorId: string };
  limit: number;
}

/** Kinds of journal entries. `init` is an actor's first step. */
export type JournalKind = "init" | "event";

/** Everything a step planned, recorded with it so that replay and audit see it. */
export interface PlannedItems {
  effects: Array<{ effectId: string; kind: "tool" | "model"; name: string }>;
  timers: Array<{ timerId: string; name: string; dueAt: number }>;
  cancelledTimers: string[];
  messages: Array<{ messageId: string; toActorId: string; type: string }>;
  children: Array<{ actorId: string; name: string; agentType: string }>;
}

/** One committed step. */
export interface JournalEntry {
  tenantId: string;
  actorId: string;
  seq: number;
  kind: JournalKind;
  /** The event applied (for `init`, `{ type: "tessera.init", input }`); large ones by reference. */
  event: Json;
  /** Blob id when the event was stored by reference (then `event` holds only its type). */
  eventRef: string | undefined;
  /** The mailbox message this step applied, if it came through the mailbox. */
  messageId: string | undefined;
  planned: PlannedItems;
  /** The statechart's state value after the step. */
  stateValue: Json;
  status: ActorStatus;
  /** SHA-256 (base64url) of the persisted state after the step. */
  stateHash: string;
  /** Hash of this entry, chained over `prevHash`. */
  hash: string;
  prevHash: string;
  epoch: number;
  nodeId: string;
  createdAt: number;
  /** The delegation chain the step was processed under (identity enabled). */
  chainRef?: string;
}

/** An effect: a tool or model call planned by a step. */
export interface EffectRecord {
  tenantId: string;
  actorId: string;
  effectId: string;
  kind: "tool" | "model";
  name: string;
  args: Json;
  idempotencyKey: string;
  idempotent: boolean;
  state: EffectState;
  /** Attempts started, counted in the store. */
  attempts: number;
  /** Earliest time of the next attempt (ms since epoch), for retries. */
  nextAttemptAt: number | undefined;
  result: Json | undefined;
  /** Blob id when the result was stored by reference. */
  resultRef: string | undefined;
  error: SerializedError | undefined;
  /** Token counts of a model call. */
  usage: { inputTokens: number; outputTokens: number } | undefined;
  createdSeq: number;
  completedSeq: number | undefined;
  createdAt: number;
  updatedAt: number;
  /** The delegation chain the effect runs under (identity enabled). */
  chainRef?: string;
  /** Who authorised it, under what, when: the verified invocation's audit record (IDENTITY.md §12). */
  audit?: Json;
}

/** Fields of an effect that {@link Store.updateEffect} may change. */
export interface EffectPatch {
  state?: EffectState;
  attempts?: number;
  nextAttemptAt?: number | undefined;
  error?: SerializedError | undefined;
  updatedAt: number;
}

/** When {@link Store.updateEffect} applies. */
export interface EffectGuard {
  fromStates: readonly EffectState[];
  epoch?: number;
}

/** The outcome of an effect, committed in the step that applies it. */
export interface EffectOutcome {
  effectId: string;
  state: "completed" | "failed";
  result: Json | undefined;
  resultRef: string | undefined;
  error: SerializedError | undefined;
  usage: { inputTokens: number; outputTokens: number } | undefined;
  attempts: number;
  /** The audit record of the invocation that produced it, or of its denial; undefined keeps the effect's audit. */
  audit?: Json;
}

/** A message for an actor's durable mailbox. */
export interface NewMessage {
  tenantId: string;
  actorId: string;
  messageId: string;
  event: Json;
  /** Who sent it: `external`, an actor id, or `system`. */
  sender: string;
  createdAt: number;
  /** The delegation chain the message carries (identity enabled). */
  chainRef?: string;
}

/** A mailbox message as stored. */
export interface MessageRecord extends NewMessage {
  /** The seq of the step that applied it, once applied. */
  appliedSeq: number | undefined;
}

/** A durable timer: an absolute deadline. */
export interface TimerRecord {
  tenantId: string;
  actorId: string;
  timerId: string;
  name: string;
  dueAt: number;
  createdSeq: number;
  /** The chain of the step that armed it; its firing is processed under it. */
  chainRef?: string;
}

/** Everything one step writes, in one transaction with its guard. */
export interface StepCommit {
  tenantId: string;
  actorId: string;
  /** The actor's revision before this step; the commit sets it to `entry.seq`. */
  expectedRevision: number;
  /** The lease epoch the committing node holds. */
  epoch: number;
  entry: JournalEntry;
  actor: {
    status: ActorStatus;
    output: Json | undefined;
    error: SerializedError | undefined;
    /** A full snapshot, when this step is due one. */
    snapshot: Json | undefined;
    childCount: number;
    updatedAt: number;
    /** The agent version the actor now runs (changes when a step migrated it); undefined keeps it. */
    agentVersion?: number;
  };
  /** The mailbox message this step applied, marked applied in the same transaction. */
  appliedMessageId: string | undefined;
  /** The effect whose outcome this step applied. */
  effectOutcome: EffectOutcome | undefined;
  effects: EffectRecord[];
  timersSet: TimerRecord[];
  /** Timer ids removed: cancelled by the step, or the timer whose firing it applied. */
  timersCleared: string[];
  /** Messages for other actors' mailboxes (the outbox is the recipient's mailbox). */
  messages: NewMessage[];
  children: NewActor[];
  blobs: Array<{ blobId: string; data: string }>;
  /** When the actor reaches a final status, its open effects are cancelled and its timers cleared. */
  finalize: boolean;
  /** Delegation chains referenced by this commit's rows, stored if absent. */
  chains?: StoredChain[];
}

/** The result of one {@link StepCommit}. */
export type CommitOutcome = { ok: true } | { ok: false; error: Error };
