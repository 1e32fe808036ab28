import { createActor, type AnyMachineSnapshot } from "xstate";
import { z } from "zod";
import { AgentError } from "../../core/errors.js";
import { canonicalJson } from "../../core/json.js";
import { sha256 } from "../../core/ids.js";
import type { AgentDefinition } from "../define-agent.js";

/** @internal Everything the runtime keeps about one actor between steps. Pure data. */
export interface ActorState {
  agentVersion: number;
  machine: AnyMachineSnapshot;
  /** Children by the name they were spawned under. */
  children: Record<string, string>;
  /** Armed timers by name. */
  timers: Record<string, { timerId: string; dueAt: number }>;
  childCount: number;
}

/** @internal The versioned envelope a snapshot is stored in. */
export interface SnapshotEnvelope {
  v: 1;
  agentType: string;
  agentVersion: number;
  /**
   * The persisted XState snapshot as JSON text. Kept as text so that key order survives any store
   * (PostgreSQL's jsonb and CockroachDB reorder object keys): a restored actor must see exactly the
   * objects the live one had, or a statechart that serializes its context would diverge on replay.
   */
  machine: string | null;
  children: Record<string, string>;
  timers: Record<string, { timerId: string; dueAt: number }>;
  childCount: number;
}

/** @internal Serializes an actor's state into its envelope. */
export function toEnvelope(def: AgentDefinition, state: ActorState): SnapshotEnvelope {
  return {
    v: 1,
    agentType: def.type,
    agentVersion: state.agentVersion,
    // An actor whose first step failed has no machine state; its envelope says so with null.
    machine: state.machine === undefined ? null : JSON.stringify(def.machine.getPersistedSnapshot(state.machine)),
    children: state.children,
    timers: state.timers,
    childCount: state.childCount,
  };
}

/** @internal Hash of an actor's state, recorded with every step so replay can detect divergence. */
export function stateHashOf(envelope: SnapshotEnvelope): string {
  // The machine is already exact text; the small rest is canonicalized, since a store may reorder it.
  const { machine, ...rest } = envelope;
  return sha256(`${canonicalJson(rest)}\u0000${machine ?? ""}`);
}

const envelopeSchema = z.object({
  v: z.literal(1),
  agentType: z.string(),
  agentVersion: z.number().int().positive(),
  machine: z.string().nullable(),
  children: z.record(z.string(), z.string()),
  timers: z.record(z.string(), z.object({ timerId: z.string(), dueAt: z.number() })),
  childCount: z.number().int().nonnegative(),
});

/** @internal Checks a stored envelope with zod (the pair of {@link toEnvelope}). */
export function parseEnvelope(raw: unknown, agentType: string): SnapshotEnvelope {
  const parsed = envelopeSchema.safeParse(raw);
  if (!parsed.success || parsed.data.agentType !== agentType) {
    throw new AgentError("ERR_SNAPSHOT_INVALID", `stored snapshot of a ${agentType} actor is not a valid v1 envelope`, {
      details: { agentType, issues: parsed.success ? [] : parsed.error.issues.map((i) => ({ path: i.path.join("."), code: i.code })) },
    });
  }
  return parsed.data as SnapshotEnvelope;
}

/** @internal Restores the live state from an envelope with the definition of the envelope's version. */
export function fromEnvelope(def: AgentDefinition, envelope: SnapshotEnvelope): ActorState {
  const machine =
    envelope.machine === null
      ? (undefined as unknown as AnyMachineSnapshot)
      : (createActor(def.machine, { snapshot: JSON.parse(envelope.machine) as never }).getSnapshot() as AnyMachineSnapshot);
  return {
    agentVersion: envelope.agentVersion,
    machine,
    children: { ...envelope.children },
    timers: { ...envelope.timers },
    childCount: envelope.childCount,
  };
}
