import { createActor, type AnyMachineSnapshot } from "xstate";
import { AgentError } from "../../core/errors.js";
import { canonicalJson, type Json } from "../../core/json.js";
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
  machine: Json;
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
    machine: state.machine === undefined ? null : (def.machine.getPersistedSnapshot(state.machine) as unknown as Json),
    children: state.children,
    timers: state.timers,
    childCount: state.childCount,
  };
}

/** @internal Hash of an actor's state, recorded with every step so replay can detect divergence. */
export function stateHashOf(envelope: SnapshotEnvelope): string {
  return sha256(canonicalJson(envelope));
}

/** @internal Checks the shape of a stored envelope (a pair assertion with {@link toEnvelope}). */
export function parseEnvelope(raw: unknown, agentType: string): SnapshotEnvelope {
  const env = raw as Partial<SnapshotEnvelope> | null;
  const valid =
    env !== null &&
    typeof env === "object" &&
    env.v === 1 &&
    env.agentType === agentType &&
    Number.isInteger(env.agentVersion) &&
    typeof env.machine === "object" &&
    typeof env.children === "object" &&
    typeof env.timers === "object" &&
    Number.isInteger(env.childCount);
  if (!valid) {
    throw new AgentError("ERR_SNAPSHOT_INVALID", `stored snapshot of a ${agentType} actor is not a valid v1 envelope`, {
      details: { agentType },
    });
  }
  return env as SnapshotEnvelope;
}

/** @internal Restores the live state from an envelope with the definition of the envelope's version. */
export function fromEnvelope(def: AgentDefinition, envelope: SnapshotEnvelope): ActorState {
  const machine =
    envelope.machine === null
      ? (undefined as unknown as AnyMachineSnapshot)
      : (createActor(def.machine, { snapshot: structuredClone(envelope.machine) as never }).getSnapshot() as AnyMachineSnapshot);
  return {
    agentVersion: envelope.agentVersion,
    machine,
    children: { ...envelope.children },
    timers: { ...envelope.timers },
    childCount: envelope.childCount,
  };
}
