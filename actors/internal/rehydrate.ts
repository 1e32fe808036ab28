import { AgentError } from "../../core/errors.js";
import type { Json } from "../../core/json.js";
import type { Limits } from "../../core/limits.js";
import type { ActorRecord, JournalEntry, Store } from "../../core/ports/store.js";
import type { AgentDefinition } from "../define-agent.js";
import { fromEnvelope, parseEnvelope, stateHashOf, toEnvelope, type ActorState } from "./actor-state.js";
import type { AgentRegistry } from "./agent-registry.js";
import { planStep, type ActorIdentity } from "./plan-step.js";

/** @internal An actor loaded from the store, ready to take its next step. */
export interface LoadedActor {
  record: ActorRecord;
  def: AgentDefinition;
  /** Undefined before its first step. */
  state: ActorState | undefined;
  /** Set when the state was migrated from an older version: the next step must write a full snapshot. */
  migrated: boolean;
  /** Journal rows read to rebuild the state. */
  rowsRead: number;
}

/** @internal The identity of an actor as steps need it. */
export function identityOf(record: ActorRecord): ActorIdentity {
  return {
    tenantId: record.tenantId,
    actorId: record.actorId,
    parentId: record.parentId,
    rootId: record.rootId,
    name: record.name,
    depth: record.depth,
  };
}

/** @internal Reads the event a journal entry applied, following a blob reference. */
export async function eventOf(store: Store, entry: JournalEntry): Promise<{ type: string } & Record<string, Json>> {
  if (entry.eventRef === undefined) return entry.event as { type: string } & Record<string, Json>;
  const text = await store.getBlob(entry.tenantId, entry.eventRef);
  if (text === undefined) throw new AgentError("ERR_BLOB_MISSING", `blob ${entry.eventRef} of ${entry.actorId}#${entry.seq} is missing`);
  return JSON.parse(text) as { type: string } & Record<string, Json>;
}

/**
 * @internal Folds journal entries onto a state with the pure step function, checking the recorded
 * state hash at every step. A mismatch is a reported error, never silently accepted.
 */
export async function foldJournal(
  store: Store,
  def: AgentDefinition,
  record: ActorRecord,
  start: ActorState | undefined,
  entries: readonly JournalEntry[],
  limits: Limits,
  latestVersionOf: (agentType: string) => number | undefined,
): Promise<ActorState | undefined> {
  let state = start;
  for (const entry of entries) {
    const event = await eventOf(store, entry);
    const plan = planStep({ def, state, event, actor: identityOf(record), seq: entry.seq, now: entry.createdAt, limits, latestVersionOf });
    const hash = stateHashOf(toEnvelope(def, plan.next));
    if (hash !== entry.stateHash) {
      throw new AgentError(
        "ERR_REPLAY_DIVERGED",
        `replay of ${record.actorId} diverged at seq ${entry.seq}: the statechart is not deterministic or its definition changed`,
        {
          details: { tenantId: record.tenantId, actorId: record.actorId, seq: entry.seq, expected: entry.stateHash, actual: hash },
        },
      );
    }
    state = plan.next;
  }
  return state;
}

/**
 * @internal Loads an active actor: its last full snapshot plus the journal after it (at most the
 * snapshot interval of rows), migrating from an older agent version when the definition allows.
 */
export async function loadActor(store: Store, registry: AgentRegistry, record: ActorRecord, limits: Limits): Promise<LoadedActor> {
  const envelope = record.snapshot === undefined ? undefined : parseEnvelope(record.snapshot, record.agentType);
  const version = envelope?.agentVersion ?? record.agentVersion;
  const latest = registry.latest(record.agentType);
  const stored = registry.get(record.agentType, version);
  const tailLength = record.revision - record.snapshotSeq;
  if (stored === undefined && (tailLength > 0 || envelope === undefined || latest.migrate === undefined)) {
    throw new AgentError(
      "ERR_VERSION_UNSUPPORTED",
      `actor ${record.actorId} is at ${record.agentType} version ${version}, which this node does not run, and version ${latest.version} ${latest.migrate ? "cannot migrate it with journal entries after its snapshot" : "declares no migrate function"}`,
      {
        details: {
          tenantId: record.tenantId,
          actorId: record.actorId,
          agentType: record.agentType,
          storedVersion: version,
          latestVersion: latest.version,
        },
      },
    );
  }
  if (stored === undefined) {
    // Checked above: a snapshot with no journal after it, and a newer version that can migrate it.
    const machine = migrateMachine(latest, envelope!.machine, version, record);
    const state = fromEnvelope(latest, { ...envelope!, agentVersion: latest.version, machine });
    return { record, def: latest, state, migrated: true, rowsRead: 0 };
  }
  let state = envelope === undefined ? undefined : fromEnvelope(stored, envelope);
  const entries =
    tailLength > 0 ? await store.readJournal(record.tenantId, record.actorId, { afterSeq: record.snapshotSeq, limit: tailLength }) : [];
  if (entries.length !== tailLength) {
    throw new AgentError(
      "ERR_JOURNAL_GAP",
      `actor ${record.actorId}: expected ${tailLength} journal entries after seq ${record.snapshotSeq}, found ${entries.length}`,
    );
  }
  state = await foldJournal(store, stored, record, state, entries, limits, (t) => registry.latestVersionOf(t));
  const target = registry.migrationTarget(record.agentType, stored.version);
  if (state === undefined || target === undefined) {
    return { record, def: stored, state, migrated: false, rowsRead: entries.length };
  }
  const current = toEnvelope(stored, state);
  const machine = migrateMachine(target, current.machine, stored.version, record);
  state = fromEnvelope(target, { ...current, agentVersion: target.version, machine });
  return { record, def: target, state, migrated: true, rowsRead: entries.length };
}

function migrateMachine(latest: AgentDefinition, machine: string | null, fromVersion: number, record: ActorRecord): string | null {
  if (machine === null) return null;
  try {
    return JSON.stringify(latest.migrate!(JSON.parse(machine) as Json, fromVersion));
  } catch (cause) {
    throw new AgentError(
      "ERR_MIGRATION_FAILED",
      `migrating ${record.actorId} from ${record.agentType} v${fromVersion} to v${latest.version} threw`,
      {
        cause,
        details: { tenantId: record.tenantId, actorId: record.actorId, fromVersion, toVersion: latest.version },
      },
    );
  }
}
