import { randomUUID } from "node:crypto";
import type {
  CommitOutcome,
  EffectOutcome,
  EffectRecord,
  JournalEntry,
  NewActor,
  NewMessage,
  StepCommit,
  Store,
  StoredChain,
  TimerRecord,
} from "../../core/ports/store.js";

/** Makes a fresh, migrated store for one test, and removes it afterwards. */
export type MakeStore = () => Promise<{ store: Store; cleanup: () => Promise<void> }>;

/** A short random id with a prefix; lower-case, so it sorts alike in every collation. */
export function id(prefix: string): string {
  return `${prefix}_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/** An actor to create, with every field filled. */
export function newActor(tenantId: string, overrides: Partial<NewActor> = {}): NewActor {
  const actorId = overrides.actorId ?? id("act");
  return {
    tenantId,
    actorId,
    agentType: "support-desk",
    agentVersion: 1,
    parentId: undefined,
    rootId: actorId,
    name: undefined,
    depth: 0,
    input: { orderId: "o-1", tags: ["a", "b"], nested: { deep: [1, 2.5, null, true] } },
    epoch: 1,
    ownerNode: "node-1",
    createdAt: 1_000,
    ...overrides,
  };
}

/** A journal entry of step `seq`. */
export function entry(tenantId: string, actorId: string, seq: number, overrides: Partial<JournalEntry> = {}): JournalEntry {
  return {
    tenantId,
    actorId,
    seq,
    kind: seq === 1 ? "init" : "event",
    event: { type: seq === 1 ? "tessera.init" : "user.message", n: seq },
    eventRef: undefined,
    messageId: undefined,
    planned: { effects: [], timers: [], cancelledTimers: [], messages: [], children: [] },
    stateValue: { step: String(seq) },
    status: "active",
    stateHash: `sh-${seq}`,
    hash: `h-${actorId}-${seq}`,
    prevHash: seq === 1 ? "" : `h-${actorId}-${seq - 1}`,
    epoch: 1,
    nodeId: "node-1",
    createdAt: 1_000 + seq,
    ...overrides,
  };
}

/** An effect planned at step `seq`. */
export function effect(
  tenantId: string,
  actorId: string,
  effectId: string,
  seq: number,
  overrides: Partial<EffectRecord> = {},
): EffectRecord {
  return {
    tenantId,
    actorId,
    effectId,
    kind: "tool",
    name: "lookupOrder",
    args: { orderId: "o-1" },
    idempotencyKey: `key-${effectId}`,
    idempotent: true,
    state: "planned",
    attempts: 0,
    nextAttemptAt: undefined,
    result: undefined,
    resultRef: undefined,
    error: undefined,
    usage: undefined,
    createdSeq: seq,
    completedSeq: undefined,
    createdAt: 2_000,
    updatedAt: 2_000,
    ...overrides,
  };
}

/** A message for an actor's mailbox. */
export function message(tenantId: string, actorId: string, messageId: string, overrides: Partial<NewMessage> = {}): NewMessage {
  return {
    tenantId,
    actorId,
    messageId,
    event: { type: "user.message", text: messageId },
    sender: "external",
    createdAt: 3_000,
    ...overrides,
  };
}

/** An effect outcome that completed with `{ ok: true }` on its first attempt, unless `overrides` say otherwise. */
export function completed(effectId: string, overrides: Partial<EffectOutcome> = {}): EffectOutcome {
  return {
    effectId,
    state: "completed",
    result: { ok: true },
    resultRef: undefined,
    error: undefined,
    usage: undefined,
    attempts: 1,
    ...overrides,
  };
}

/** A timer armed at step `seq`. */
export function timer(
  tenantId: string,
  actorId: string,
  timerId: string,
  seq: number,
  dueAt: number,
  overrides: Partial<TimerRecord> = {},
): TimerRecord {
  return { tenantId, actorId, timerId, name: `t-${timerId}`, dueAt, createdSeq: seq, ...overrides };
}

/** A delegation chain of `links` fake compact JWS links (the store does not verify them). */
export function chain(chainRef: string, links = 2, tag = chainRef): StoredChain {
  return { chainRef, tokens: Array.from({ length: links }, (_, i) => `eyJhbGciOiJFZERTQSJ9.${tag}-${i}.c2ln`) };
}

/** The store's `getChain`, which every adapter must have (it is optional in the port only until all do). */
export function getChainOf(store: Store): (tenantId: string, chainRef: string) => Promise<string[] | undefined> {
  const getChain = store.getChain;
  if (getChain === undefined) throw new Error(`the ${store.kind} store has no getChain`);
  return getChain.bind(store);
}

/** A key of an actor, the cursor of {@link claimPageOf}. */
export interface ActorKey {
  tenantId: string;
  actorId: string;
}

/** `claimActiveActors` with its `afterKey` cursor (every adapter takes it; the port does not declare it yet). */
export type ClaimPage = (nodeId: string, limit: number, options?: { afterKey?: ActorKey }) => Promise<Array<ActorKey & { epoch: number }>>;

/** The store's `claimActiveActors`, typed with its cursor option. */
export function claimPageOf(store: Store): ClaimPage {
  return store.claimActiveActors.bind(store) as ClaimPage;
}

/** The commit of step `expectedRevision + 1` with nothing in it but the journal entry and actor fields. */
export function commit(tenantId: string, actorId: string, expectedRevision: number, overrides: Partial<StepCommit> = {}): StepCommit {
  const seq = expectedRevision + 1;
  return {
    tenantId,
    actorId,
    expectedRevision,
    epoch: 1,
    entry: entry(tenantId, actorId, seq, overrides.appliedMessageId === undefined ? {} : { messageId: overrides.appliedMessageId }),
    actor: { status: "active", output: undefined, error: undefined, snapshot: undefined, childCount: 0, updatedAt: 1_000 + seq },
    appliedMessageId: undefined,
    effectOutcome: undefined,
    effects: [],
    timersSet: [],
    timersCleared: [],
    messages: [],
    children: [],
    blobs: [],
    finalize: false,
    ...overrides,
  };
}

/** Commits one step and fails the test unless it landed. */
export async function commitOk(store: Store, step: StepCommit): Promise<void> {
  const [outcome] = await store.commitSteps([step]);
  if (!outcome?.ok) throw new Error(`commit of ${step.actorId} seq ${step.entry.seq} was refused: ${outcomeError(outcome)?.message}`);
}

/** The error of a refused outcome, or `undefined`. */
export function outcomeError(
  outcome: CommitOutcome | undefined,
): (Error & { code?: string; details?: Record<string, unknown> }) | undefined {
  return outcome !== undefined && !outcome.ok ? outcome.error : undefined;
}

/** Creates an actor and commits its first (init) step with a snapshot. */
export async function createStarted(store: Store, tenantId: string, overrides: Partial<NewActor> = {}): Promise<NewActor> {
  const actor = newActor(tenantId, overrides);
  await store.createActor(actor);
  await commitOk(
    store,
    commit(tenantId, actor.actorId, 0, {
      epoch: actor.epoch,
      actor: { status: "active", output: undefined, error: undefined, snapshot: { v: 1 }, childCount: 0, updatedAt: 1_001 },
    }),
  );
  return actor;
}
