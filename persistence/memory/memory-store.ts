import { AgentError, LimitError, SnapshotConflictError, StoreError } from "../../core/errors.js";
import { assert, InvariantError } from "../../core/assert.js";
import type { Json } from "../../core/json.js";
import type {
  KillSwitch,
  ActorQuery,
  ActorRecord,
  ClaimScope,
  CommitOutcome,
  DirectoryEntry,
  EffectGuard,
  EffectPatch,
  EffectRecord,
  EffectState,
  JournalEntry,
  MessageRecord,
  NewActor,
  NewDirectoryEntry,
  NewMessage,
  NodeLease,
  NodeRecord,
  PendingWork,
  StepCommit,
  Store,
  StoredChain,
  TimerRecord,
} from "../../core/ports/store.js";
import { validateChains, validateCommit } from "../internal/validate-commit.js";

/** The states that finalize cancels. */
const openEffectStates: ReadonlySet<EffectState> = new Set(["planned", "running", "awaiting-approval"]);

/** Everything one tenant owns. Maps keep insertion order, which gives creation and FIFO order. */
interface TenantData {
  actors: Map<string, ActorRecord>;
  runs: Map<string, { actorId: string; inputHash: string | undefined }>;
  journal: Map<string, JournalEntry[]>;
  effects: Map<string, Map<string, EffectRecord>>;
  mailbox: Map<string, Map<string, MessageRecord>>;
  pending: Map<string, number>;
  timers: Map<string, Map<string, TimerRecord>>;
  blobs: Map<string, string>;
  chains: Map<string, string[]>;
  directory: DirectoryEntry[];
}

/** A registered node, as the `nodes` table of the SQL stores holds it. */
interface NodeRow {
  nodeId: string;
  state: NodeRecord["state"];
  registeredAt: number;
  heartbeatAt: number;
  leaseExpiresAt: number;
  info: Json;
}

/** The longest node id accepted: the ceiling `idLengthMax` may be raised to. */
const nodeIdLengthMax = 1024;
/** The longest lease: a day, in milliseconds. */
const leaseTtlMsMax = 24 * 3600 * 1000;

const clone: <T>(value: T) => T = structuredClone;

/**
 * A deep copy without the optional fields (`chainRef`, `audit`) that hold `undefined`, so that a
 * record reads back as the SQL stores return it: an absent field, never one set to `undefined`.
 */
function stored<T extends { chainRef?: string; audit?: unknown }>(value: T): T {
  const copy = clone(value);
  if (copy.chainRef === undefined) delete copy.chainRef;
  if (copy.audit === undefined) delete copy.audit;
  return copy;
}

function inner<V>(map: Map<string, Map<string, V>>, key: string): Map<string, V> {
  let found = map.get(key);
  if (found === undefined) {
    found = new Map();
    map.set(key, found);
  }
  return found;
}

function newActorRecord(actor: NewActor): ActorRecord {
  return {
    ...stored(actor),
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

/**
 * The in-memory {@link Store}: the same semantics as the SQL store, for unit tests. Every value is
 * deep-copied on the way in and out, so callers can never change stored state by mutating it.
 *
 * @internal Create it with `createMemoryStore()`.
 */
export class MemoryStore implements Store {
  readonly kind = "memory";
  readonly shared: boolean;
  readonly #killSwitches = new Map<string, KillSwitch>();
  readonly #tenants = new Map<string, TenantData>();
  readonly #nodes = new Map<string, NodeRow>();
  #closed = false;

  /** @param options - `shared`: whether to report the store as used by several processes (tests of cluster code) */
  constructor(options: { shared?: boolean } = {}) {
    this.shared = options.shared ?? false;
  }

  async migrate(): Promise<void> {
    this.#open();
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async createActor(
    actor: NewActor,
    options: { runKey?: string; inputHash?: string; chains?: StoredChain[] } = {},
  ): Promise<{ actor: ActorRecord; created: boolean }> {
    this.#open();
    assertChains(options.chains);
    const tenant = this.#tenant(actor.tenantId);
    const { runKey, inputHash } = options;
    if (runKey !== undefined) {
      const run = tenant.runs.get(runKey);
      if (run !== undefined) {
        if (run.inputHash !== inputHash) {
          throw new AgentError("ERR_IDEMPOTENCY_MISMATCH", `run ${runKey} was started with different input`, {
            details: { tenantId: actor.tenantId, runKey, actorId: run.actorId },
          });
        }
        const existing = tenant.actors.get(run.actorId);
        assert(existing !== undefined, "a run points at an existing actor");
        return { actor: clone(existing), created: false };
      }
    }
    if (tenant.actors.has(actor.actorId)) throw actorExists(actor.tenantId, actor.actorId);
    const record = newActorRecord(actor);
    tenant.actors.set(actor.actorId, record);
    if (runKey !== undefined) tenant.runs.set(runKey, { actorId: actor.actorId, inputHash });
    storeChains(tenant, options.chains);
    return { actor: clone(record), created: true };
  }

  async getActor(tenantId: string, actorId: string): Promise<ActorRecord | undefined> {
    this.#open();
    const actor = this.#tenants.get(tenantId)?.actors.get(actorId);
    return actor === undefined ? undefined : clone(actor);
  }

  async getActorState(tenantId: string, actorId: string): Promise<{ actor: ActorRecord; stateValue: Json } | undefined> {
    this.#open();
    const tenant = this.#tenants.get(tenantId);
    const actor = tenant?.actors.get(actorId);
    if (actor === undefined) return undefined;
    const entries = tenant?.journal.get(actorId) ?? [];
    const guess = entries[actor.revision - 1];
    const entry = guess?.seq === actor.revision ? guess : entries.find((e) => e.seq === actor.revision);
    return { actor: clone(actor), stateValue: entry === undefined ? null : (clone(entry.stateValue) ?? null) };
  }

  async findRun(tenantId: string, runKey: string): Promise<ActorRecord | undefined> {
    this.#open();
    const tenant = this.#tenants.get(tenantId);
    const run = tenant?.runs.get(runKey);
    if (tenant === undefined || run === undefined) return undefined;
    const actor = tenant.actors.get(run.actorId);
    return actor === undefined ? undefined : clone(actor);
  }

  async listActors(tenantId: string, query: ActorQuery): Promise<ActorRecord[]> {
    this.#open();
    assert(Number.isSafeInteger(query.limit) && query.limit >= 0, "listActors limit is an integer >= 0");
    const actors = [...(this.#tenants.get(tenantId)?.actors.values() ?? [])].filter(
      (actor) =>
        (query.parentId === undefined || actor.parentId === query.parentId) &&
        (query.status === undefined || actor.status === query.status) &&
        (query.agentType === undefined || actor.agentType === query.agentType) &&
        (query.after === undefined ||
          actor.createdAt > query.after.createdAt ||
          (actor.createdAt === query.after.createdAt && compareText(actor.actorId, query.after.actorId) > 0)),
    );
    actors.sort((a, b) => a.createdAt - b.createdAt || compareText(a.actorId, b.actorId));
    return actors.slice(0, query.limit).map((record) => clone(record));
  }

  async commitSteps(commits: readonly StepCommit[]): Promise<CommitOutcome[]> {
    this.#open();
    // JavaScript runs this loop without interruption, so each commit is atomic and they apply in order.
    return commits.map((commit) => this.#commitOne(commit));
  }

  async readJournal(tenantId: string, actorId: string, query: { afterSeq?: number; limit: number }): Promise<JournalEntry[]> {
    this.#open();
    assert(Number.isSafeInteger(query.limit) && query.limit >= 0, "readJournal limit is an integer >= 0");
    const afterSeq = query.afterSeq ?? 0;
    const entries = this.#tenants.get(tenantId)?.journal.get(actorId) ?? [];
    return entries
      .filter((entry) => entry.seq > afterSeq)
      .slice(0, query.limit)
      .map((record) => clone(record));
  }

  async listEffects(tenantId: string, actorId: string, query: { states?: readonly EffectState[] } = {}): Promise<EffectRecord[]> {
    this.#open();
    const effects = [...(this.#tenants.get(tenantId)?.effects.get(actorId)?.values() ?? [])];
    const states = query.states;
    return effects.filter((effect) => states === undefined || states.includes(effect.state)).map((record) => clone(record));
  }

  async getEffect(tenantId: string, actorId: string, effectId: string): Promise<EffectRecord | undefined> {
    this.#open();
    const effect = this.#tenants.get(tenantId)?.effects.get(actorId)?.get(effectId);
    return effect === undefined ? undefined : clone(effect);
  }

  async updateEffect(tenantId: string, actorId: string, effectId: string, patch: EffectPatch, guard: EffectGuard): Promise<boolean> {
    this.#open();
    const tenant = this.#tenants.get(tenantId);
    const effect = tenant?.effects.get(actorId)?.get(effectId);
    if (tenant === undefined || effect === undefined || !guard.fromStates.includes(effect.state)) return false;
    if (guard.epoch !== undefined && tenant.actors.get(actorId)?.epoch !== guard.epoch) return false;
    if (patch.state !== undefined) effect.state = patch.state;
    if (patch.attempts !== undefined) effect.attempts = patch.attempts;
    if ("nextAttemptAt" in patch) effect.nextAttemptAt = patch.nextAttemptAt;
    if ("error" in patch) effect.error = clone(patch.error);
    effect.updatedAt = patch.updatedAt;
    return true;
  }

  async enqueueMessage(message: NewMessage, options: { mailboxDepthMax: number; chains?: StoredChain[] }): Promise<{ created: boolean }> {
    this.#open();
    assert(Number.isSafeInteger(options.mailboxDepthMax) && options.mailboxDepthMax > 0, "mailboxDepthMax is a positive integer");
    assertChains(options.chains);
    const { tenantId, actorId, messageId } = message;
    const tenant = this.#tenants.get(tenantId);
    const actor = tenant?.actors.get(actorId);
    if (tenant === undefined || actor === undefined) {
      throw new AgentError("ERR_ACTOR_NOT_FOUND", `actor ${actorId} does not exist`, { details: { tenantId, actorId } });
    }
    if (tenant.mailbox.get(actorId)?.has(messageId)) return { created: false };
    if (actor.status !== "active") {
      throw new AgentError("ERR_ACTOR_NOT_ACTIVE", `actor ${actorId} is ${actor.status}`, {
        details: { tenantId, actorId, status: actor.status },
      });
    }
    const pending = tenant.pending.get(actorId) ?? 0;
    if (pending >= options.mailboxDepthMax) throw mailboxFull(tenantId, actorId, options.mailboxDepthMax, pending);
    this.#insertMessage(tenant, message);
    storeChains(tenant, options.chains);
    return { created: true };
  }

  async pendingMessages(tenantId: string, actorId: string, limit: number): Promise<MessageRecord[]> {
    this.#open();
    assert(Number.isSafeInteger(limit) && limit >= 0, "pendingMessages limit is an integer >= 0");
    const pending: MessageRecord[] = [];
    for (const message of this.#tenants.get(tenantId)?.mailbox.get(actorId)?.values() ?? []) {
      if (pending.length >= limit) break;
      if (message.appliedSeq === undefined) pending.push(clone(message));
    }
    return pending;
  }

  async getMessage(tenantId: string, actorId: string, messageId: string): Promise<MessageRecord | undefined> {
    this.#open();
    const message = this.#tenants.get(tenantId)?.mailbox.get(actorId)?.get(messageId);
    return message === undefined ? undefined : clone(message);
  }

  async listTimers(tenantId: string, actorId: string): Promise<TimerRecord[]> {
    this.#open();
    const timers = [...(this.#tenants.get(tenantId)?.timers.get(actorId)?.values() ?? [])];
    timers.sort((a, b) => a.dueAt - b.dueAt || compareText(a.timerId, b.timerId));
    return timers.map((record) => clone(record));
  }

  async claimActiveActors(
    nodeId: string,
    limit: number,
    options: { afterKey?: { tenantId: string; actorId: string }; only?: ClaimScope } = {},
  ): Promise<Array<{ tenantId: string; actorId: string; epoch: number }>> {
    this.#open();
    const only = options.only ?? "any";
    assertNodeId(nodeId, "claimActiveActors");
    assert(Number.isSafeInteger(limit) && limit >= 0, "claimActiveActors limit is an integer >= 0");
    assert(only === "any" || only === "own" || only === "orphaned", "claimActiveActors: only is any, own or orphaned");
    const after = options.afterKey;
    const now = Date.now();
    const active: ActorRecord[] = [];
    for (const tenant of this.#tenants.values()) {
      for (const actor of tenant.actors.values()) {
        if (actor.status !== "active") continue;
        if (after !== undefined && (compareText(actor.tenantId, after.tenantId) || compareText(actor.actorId, after.actorId)) <= 0)
          continue;
        if (only === "own" && actor.ownerNode !== nodeId) continue;
        if (only === "orphaned" && !this.#orphaned(actor, nodeId, now)) continue;
        active.push(actor);
      }
    }
    active.sort((a, b) => compareText(a.tenantId, b.tenantId) || compareText(a.actorId, b.actorId));
    return active.slice(0, limit).map((actor) => {
      actor.epoch += 1;
      actor.ownerNode = nodeId;
      return { tenantId: actor.tenantId, actorId: actor.actorId, epoch: actor.epoch };
    });
  }

  async registerNode(registration: { nodeId: string; leaseTtlMs: number; info: Json }): Promise<NodeLease> {
    this.#open();
    const { nodeId, leaseTtlMs } = registration;
    assertNodeId(nodeId, "registerNode");
    assertLeaseTtl(leaseTtlMs, "registerNode");
    assert(typeof JSON.stringify(registration.info) === "string", "registerNode: info is JSON");
    const now = Date.now();
    const info = clone(registration.info);
    this.#nodes.set(nodeId, { nodeId, state: "active", registeredAt: now, heartbeatAt: now, leaseExpiresAt: now + leaseTtlMs, info });
    return this.#lease(nodeId, now);
  }

  async renewNode(nodeId: string, leaseTtlMs: number, life?: string): Promise<NodeLease | undefined> {
    this.#open();
    assertNodeId(nodeId, "renewNode");
    assertLeaseTtl(leaseTtlMs, "renewNode");
    const now = Date.now();
    const node = this.#nodes.get(nodeId);
    // A lease that ran out is never extended: the node's actors may already be someone else's.
    if (node === undefined || !isLive(node, now)) return undefined;
    // Another life of this id registered since: this caller is its previous process.
    if (life !== undefined && (node.info as { life?: unknown } | null)?.life !== life) return undefined;
    node.heartbeatAt = now;
    node.leaseExpiresAt = now + leaseTtlMs;
    return this.#lease(nodeId, now);
  }

  async setNodeState(nodeId: string, state: "draining" | "stopped"): Promise<void> {
    this.#open();
    assertNodeId(nodeId, "setNodeState");
    assert(state === "draining" || state === "stopped", "setNodeState: state is draining or stopped");
    const node = this.#nodes.get(nodeId);
    // Stopped is final for a node's life: only a new registration revives the id.
    if (node === undefined || node.state === "stopped") return;
    if (state === "stopped" || node.state === "active") node.state = state;
  }

  async listNodes(): Promise<NodeRecord[]> {
    this.#open();
    const now = Date.now();
    const owned = new Map<string, number>();
    for (const tenant of this.#tenants.values()) {
      for (const actor of tenant.actors.values()) {
        if (actor.status === "active" && actor.ownerNode !== undefined) owned.set(actor.ownerNode, (owned.get(actor.ownerNode) ?? 0) + 1);
      }
    }
    const nodes = [...this.#nodes.values()].sort((a, b) => compareText(a.nodeId, b.nodeId));
    return nodes.map((node) => ({ ...clone(node), live: isLive(node, now), ownedActors: owned.get(node.nodeId) ?? 0 }));
  }

  async handOffActors(
    fromNodeId: string,
    assign: (tenantId: string, actorId: string) => string,
    limit: number,
  ): Promise<Array<{ tenantId: string; actorId: string; epoch: number; ownerNode: string }>> {
    this.#open();
    assertNodeId(fromNodeId, "handOffActors");
    assert(Number.isSafeInteger(limit) && limit >= 0, "handOffActors limit is an integer >= 0");
    const owned = this.#activeInKeyOrder((actor) => actor.ownerNode === fromNodeId).slice(0, limit);
    const targets = owned.map((actor) => {
      const target = assign(actor.tenantId, actor.actorId);
      assertNodeId(target, "handOffActors assign");
      return target;
    });
    const moved: Array<{ tenantId: string; actorId: string; epoch: number; ownerNode: string }> = [];
    owned.forEach((actor, i) => {
      const target = targets[i]!;
      // Compare-and-set: `assign` may have run code that claimed the actor meanwhile.
      if (target === fromNodeId || actor.status !== "active" || actor.ownerNode !== fromNodeId) return;
      actor.epoch += 1;
      actor.ownerNode = target;
      moved.push({ tenantId: actor.tenantId, actorId: actor.actorId, epoch: actor.epoch, ownerNode: target });
    });
    return moved;
  }

  async findPendingWork(
    nodeId: string,
    dueBefore: number,
    limit: number,
    afterKey?: { tenantId: string; actorId: string },
  ): Promise<PendingWork[]> {
    this.#open();
    assertNodeId(nodeId, "findPendingWork");
    assert(Number.isSafeInteger(dueBefore), "findPendingWork: dueBefore is an integer (ms)");
    assert(Number.isSafeInteger(limit) && limit >= 0, "findPendingWork limit is an integer >= 0");
    const found: PendingWork[] = [];
    const after = (actor: ActorRecord): boolean =>
      afterKey === undefined ||
      compareText(actor.tenantId, afterKey.tenantId) > 0 ||
      (actor.tenantId === afterKey.tenantId && compareText(actor.actorId, afterKey.actorId) > 0);
    for (const actor of this.#activeInKeyOrder((candidate) => candidate.ownerNode === nodeId && after(candidate))) {
      if (found.length >= limit) break;
      const tenant = this.#tenants.get(actor.tenantId);
      assert(tenant !== undefined, "an actor's tenant exists");
      const pendingMessages = (tenant.pending.get(actor.actorId) ?? 0) > 0;
      const dueTimer = [...(tenant.timers.get(actor.actorId)?.values() ?? [])].some((timer) => timer.dueAt <= dueBefore);
      const openEffect = [...(tenant.effects.get(actor.actorId)?.values() ?? [])].some(
        (effect) => effect.state === "planned" || effect.state === "running",
      );
      if (actor.revision === 0 || pendingMessages || dueTimer || openEffect) {
        found.push({ tenantId: actor.tenantId, actorId: actor.actorId, pendingMessages });
      }
    }
    return found;
  }

  /** Active actors that pass `filter`, in key order. */
  #activeInKeyOrder(filter: (actor: ActorRecord) => boolean): ActorRecord[] {
    const active: ActorRecord[] = [];
    for (const tenant of this.#tenants.values()) {
      for (const actor of tenant.actors.values()) if (actor.status === "active" && filter(actor)) active.push(actor);
    }
    return active.sort((a, b) => compareText(a.tenantId, b.tenantId) || compareText(a.actorId, b.actorId));
  }

  /** Whether an actor has no live owner other than `nodeId`: none, or one stopped, expired or never registered. */
  #orphaned(actor: ActorRecord, nodeId: string, now: number): boolean {
    if (actor.ownerNode === undefined) return true;
    if (actor.ownerNode === nodeId) return false;
    const owner = this.#nodes.get(actor.ownerNode);
    return owner === undefined || !isLive(owner, now);
  }

  /** The lease of a node just registered or renewed at `now`, with the live nodes, sorted. */
  #lease(nodeId: string, now: number): NodeLease {
    const node = this.#nodes.get(nodeId);
    assert(node !== undefined && isLive(node, now), "a node just registered or renewed is live");
    const live = [...this.#nodes.values()].filter((other) => isLive(other, now));
    const liveNodes = live.map((other) => other.nodeId).sort(compareText);
    const drainingNodes = live
      .filter((other) => other.nodeId !== nodeId && other.state === "draining")
      .map((other) => other.nodeId)
      .sort(compareText);
    return { nodeId, dbNow: now, expiresAt: node.leaseExpiresAt, liveNodes, drainingNodes };
  }

  async engageKillSwitch(entry: KillSwitch): Promise<{ created: boolean }> {
    this.#open();
    const key = `${entry.tenantId}\u0000${entry.agentType}`;
    if (this.#killSwitches.has(key)) return { created: false };
    this.#killSwitches.set(key, clone(entry));
    return { created: true };
  }

  async listKillSwitches(): Promise<KillSwitch[]> {
    this.#open();
    return [...this.#killSwitches.values()]
      .sort((a, b) => compareText(a.tenantId, b.tenantId) || compareText(a.agentType, b.agentType))
      .map((entry) => clone(entry));
  }

  async getBlob(tenantId: string, blobId: string): Promise<string | undefined> {
    this.#open();
    return this.#tenants.get(tenantId)?.blobs.get(blobId);
  }

  async appendDirectory(entry: NewDirectoryEntry): Promise<number> {
    this.#open();
    const log = this.#tenant(entry.tenantId).directory;
    const position = log.length + 1;
    log.push({ ...clone(entry), position });
    return position;
  }

  async readDirectory(tenantId: string, afterPosition: number, limit: number): Promise<DirectoryEntry[]> {
    this.#open();
    assert(Number.isSafeInteger(limit) && limit >= 0, "readDirectory limit is an integer >= 0");
    const log = this.#tenants.get(tenantId)?.directory ?? [];
    return log.slice(Math.max(0, afterPosition), Math.max(0, afterPosition) + limit).map((e) => clone(e));
  }

  async getChain(tenantId: string, chainRef: string): Promise<string[] | undefined> {
    this.#open();
    const tokens = this.#tenants.get(tenantId)?.chains.get(chainRef);
    return tokens === undefined ? undefined : clone(tokens);
  }

  #commitOne(commit: StepCommit): CommitOutcome {
    const invalid = validateCommit(commit);
    if (invalid !== undefined) return { ok: false, error: invalid };
    const tenant = this.#tenant(commit.tenantId);
    const refused = this.#guard(tenant, commit) ?? this.#duplicateKey(tenant, commit);
    if (refused !== undefined) return { ok: false, error: refused };
    const { actorId, entry } = commit;
    const actor = tenant.actors.get(actorId);
    assert(actor !== undefined, "the guard found the actor");
    const { snapshot, agentVersion, ...fields } = commit.actor;
    Object.assign(actor, clone(fields), { revision: entry.seq, lastHash: entry.hash });
    if (agentVersion !== undefined) actor.agentVersion = agentVersion;
    if (snapshot !== undefined) {
      actor.snapshot = clone(snapshot);
      actor.snapshotSeq = entry.seq;
    }
    if (commit.appliedMessageId !== undefined) {
      const message = tenant.mailbox.get(actorId)?.get(commit.appliedMessageId);
      assert(message !== undefined && message.appliedSeq === undefined, "the guard found the message pending");
      message.appliedSeq = entry.seq;
      tenant.pending.set(actorId, (tenant.pending.get(actorId) ?? 1) - 1);
    }
    let journal = tenant.journal.get(actorId);
    if (journal === undefined) tenant.journal.set(actorId, (journal = []));
    journal.push(stored(entry));
    const effects = inner(tenant.effects, actorId);
    for (const effect of commit.effects) effects.set(effect.effectId, stored(effect));
    for (const child of commit.children) tenant.actors.set(child.actorId, newActorRecord(child));
    for (const blob of commit.blobs) if (!tenant.blobs.has(blob.blobId)) tenant.blobs.set(blob.blobId, blob.data);
    for (const message of commit.messages) {
      if (!tenant.mailbox.get(message.actorId)?.has(message.messageId)) this.#insertMessage(tenant, message);
    }
    this.#applyOutcome(effects, commit);
    const timers = inner(tenant.timers, actorId);
    for (const timerId of commit.timersCleared) timers.delete(timerId);
    for (const timer of commit.timersSet) timers.set(timer.timerId, stored(timer));
    if (commit.finalize) {
      timers.clear();
      for (const effect of effects.values()) {
        if (!openEffectStates.has(effect.state)) continue;
        effect.state = "cancelled";
        effect.updatedAt = commit.actor.updatedAt;
      }
    }
    storeChains(tenant, commit.chains);
    return { ok: true };
  }

  #guard(tenant: TenantData, commit: StepCommit): SnapshotConflictError | undefined {
    const { actorId, expectedRevision } = commit;
    const actor = tenant.actors.get(actorId);
    if (actor === undefined)
      return new SnapshotConflictError(actorId, expectedRevision, undefined, { details: { reason: "actor-not-found" } });
    if (actor.revision !== expectedRevision) {
      return new SnapshotConflictError(actorId, expectedRevision, actor.revision, { details: { reason: "stale-revision" } });
    }
    if (actor.epoch !== commit.epoch) {
      return new SnapshotConflictError(actorId, expectedRevision, actor.revision, {
        details: { reason: "stale-epoch", expectedEpoch: commit.epoch, actualEpoch: actor.epoch },
      });
    }
    const messageId = commit.appliedMessageId;
    if (messageId !== undefined) {
      const message = tenant.mailbox.get(actorId)?.get(messageId);
      if (message === undefined || message.appliedSeq !== undefined) {
        return new SnapshotConflictError(actorId, expectedRevision, actor.revision, {
          details: { reason: message === undefined ? "message-not-found" : "message-already-applied", messageId },
        });
      }
    }
    return undefined;
  }

  /** What a unique key would refuse in SQL: a new effect or child whose id is taken. */
  #duplicateKey(tenant: TenantData, commit: StepCommit): StoreError | undefined {
    const effects = tenant.effects.get(commit.actorId);
    const effectIds = new Set<string>();
    for (const { effectId } of commit.effects) {
      if (effectIds.has(effectId) || effects?.has(effectId)) return duplicateKey("effects", effectId);
      effectIds.add(effectId);
    }
    const childIds = new Set<string>();
    for (const { actorId } of commit.children) {
      if (childIds.has(actorId) || tenant.actors.has(actorId)) return duplicateKey("actors", actorId);
      childIds.add(actorId);
    }
    return undefined;
  }

  #applyOutcome(effects: Map<string, EffectRecord>, commit: StepCommit): void {
    const outcome = commit.effectOutcome;
    const effect = outcome === undefined ? undefined : effects.get(outcome.effectId);
    if (outcome === undefined || effect === undefined) return;
    effect.state = outcome.state;
    effect.result = clone(outcome.result);
    effect.resultRef = outcome.resultRef;
    effect.error = clone(outcome.error);
    effect.usage = clone(outcome.usage);
    effect.attempts = outcome.attempts;
    effect.completedSeq = commit.entry.seq;
    effect.updatedAt = commit.actor.updatedAt;
    // The outcome's audit record replaces the one planned with the effect; without one, that stays.
    if (outcome.audit !== undefined) effect.audit = clone(outcome.audit);
  }

  #insertMessage(tenant: TenantData, message: NewMessage): void {
    inner(tenant.mailbox, message.actorId).set(message.messageId, { ...stored(message), appliedSeq: undefined });
    tenant.pending.set(message.actorId, (tenant.pending.get(message.actorId) ?? 0) + 1);
  }

  #tenant(tenantId: string): TenantData {
    let tenant = this.#tenants.get(tenantId);
    if (tenant === undefined) {
      tenant = {
        actors: new Map(),
        runs: new Map(),
        journal: new Map(),
        effects: new Map(),
        mailbox: new Map(),
        pending: new Map(),
        timers: new Map(),
        blobs: new Map(),
        chains: new Map(),
        directory: [],
      };
      this.#tenants.set(tenantId, tenant);
    }
    return tenant;
  }

  #open(): void {
    if (this.#closed) throw new StoreError("ERR_STORE_UNAVAILABLE", "the memory store is closed");
  }
}

/** Stores chains not stored yet; the first one under a ref wins. */
function storeChains(tenant: TenantData, chains: readonly StoredChain[] | undefined): void {
  for (const chain of chains ?? []) if (!tenant.chains.has(chain.chainRef)) tenant.chains.set(chain.chainRef, [...chain.tokens]);
}

/** Refuses malformed chains (a programmer bug) before anything is written. */
function assertChains(chains: readonly StoredChain[] | undefined): void {
  const problem = validateChains(chains);
  if (problem !== undefined) throw new InvariantError(problem);
}

/** A node is live while it is not stopped and its lease has not expired. */
function isLive(node: NodeRow, now: number): boolean {
  return node.state !== "stopped" && node.leaseExpiresAt > now;
}

function assertNodeId(nodeId: string, operation: string): void {
  assert(typeof nodeId === "string" && nodeId.length > 0, `${operation}: nodeId is a non-empty string`);
  assert(nodeId.length <= nodeIdLengthMax, `${operation}: nodeId has at most ${nodeIdLengthMax} characters`);
}

function assertLeaseTtl(leaseTtlMs: number, operation: string): void {
  assert(Number.isSafeInteger(leaseTtlMs) && leaseTtlMs > 0, `${operation}: leaseTtlMs is a positive integer`);
  assert(leaseTtlMs <= leaseTtlMsMax, `${operation}: leaseTtlMs is at most ${leaseTtlMsMax}`);
}

/** Code-point order, the order of PostgreSQL's "C" collation, so that adapters sort alike. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function actorExists(tenantId: string, actorId: string): AgentError {
  return new AgentError("ERR_ACTOR_EXISTS", `actor ${actorId} already exists`, { details: { tenantId, actorId } });
}

function duplicateKey(table: string, key: string): StoreError {
  return new StoreError("ERR_STORE", `${table} already holds a row with id ${key}`, { details: { reason: "duplicate-key", table, key } });
}

function mailboxFull(tenantId: string, actorId: string, max: number, actual: number): LimitError {
  return new LimitError("ERR_MAILBOX_FULL", `the mailbox of actor ${actorId} holds ${actual} pending messages, the limit is ${max}`, {
    retryable: true,
    details: { limit: "mailboxDepthMax", max, actual, tenantId, actorId },
  });
}
