import type { AnyStateMachine } from "xstate";
import { AgentError, ConfigError } from "../core/errors.js";
import type { Json } from "../core/json.js";
import type { ToolDefinition } from "./define-tool.js";

/** An agent: a statechart plus the tools it may call. */
export interface AgentDefinition<TMachine extends AnyStateMachine = AnyStateMachine> {
  /** The agent type, e.g. "support-desk". */
  type: string;
  /** A positive integer; bump it when the statechart changes shape. */
  version: number;
  /** An XState v5 machine made with `setup(...).createMachine(...)`. */
  machine: TMachine;
  tools: readonly ToolDefinition<any, any>[];
  /**
   * Migrates a persisted snapshot of an older version to this one. Without it, snapshots of other
   * versions are refused with `ERR_VERSION_UNSUPPORTED` (never silently reset).
   */
  migrate?: (persisted: Json, fromVersion: number) => Json;
}

const typePattern = /^[a-z][a-z0-9-]{0,63}$/;

/**
 * Declares an agent type. Tools are called, timers set and sub-agents spawned through the
 * runtime's durable actions (`callTool`, `startTimer`, `spawnAgent`, …), never through XState
 * promise actors or `after` delays, which XState does not persist: those are refused here.
 *
 * @param definition - type, version, machine, tools and an optional migration
 * @returns the checked definition
 * @throws ConfigError `ERR_CONFIG` for a bad type, version or duplicate tool
 * @throws AgentError `ERR_UNSUPPORTED_MACHINE` when the machine uses `invoke` or `after`
 * @example
 * ```ts
 * const desk = defineAgent({ type: "support-desk", version: 1, machine, tools: [lookupOrder, refund] });
 * ```
 */
export function defineAgent<TMachine extends AnyStateMachine>(definition: AgentDefinition<TMachine>): AgentDefinition<TMachine> {
  if (!typePattern.test(definition.type)) {
    throw new ConfigError(`agent type "${definition.type}" must match ${typePattern}`, { details: { agentType: definition.type } });
  }
  if (!Number.isInteger(definition.version) || definition.version < 1) {
    throw new ConfigError(`agent ${definition.type}: version must be a positive integer`, { details: { agentType: definition.type } });
  }
  const names = new Set<string>();
  for (const tool of definition.tools) {
    if (names.has(tool.name)) throw new ConfigError(`agent ${definition.type}: tool ${tool.name} declared twice`);
    names.add(tool.name);
  }
  refuseUndurableFeatures(definition);
  return definition;
}

function refuseUndurableFeatures(definition: AgentDefinition): void {
  const pending = [definition.machine.root];
  while (pending.length > 0) {
    const node = pending.pop()!;
    if (node.after.length > 0) {
      throw new AgentError(
        "ERR_UNSUPPORTED_MACHINE",
        `agent ${definition.type}: state "${node.id}" uses an \`after\` delay, which XState does not persist; use startTimer("name", ms) and handle "timer.name"`,
        { details: { agentType: definition.type, stateId: node.id } },
      );
    }
    if (node.invoke.length > 0) {
      throw new AgentError(
        "ERR_UNSUPPORTED_MACHINE",
        `agent ${definition.type}: state "${node.id}" invokes an actor; a restored promise actor runs again from the start. Use callTool, callModel or spawnAgent`,
        { details: { agentType: definition.type, stateId: node.id } },
      );
    }
    pending.push(...Object.values(node.states));
  }
}
