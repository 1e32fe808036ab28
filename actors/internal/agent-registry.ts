import { AgentError, ConfigError } from "../../core/errors.js";
import type { AgentDefinition } from "../define-agent.js";

/** @internal Agent definitions by type and version. */
export class AgentRegistry {
  readonly #byType = new Map<string, Map<number, AgentDefinition>>();

  constructor(agents: readonly AgentDefinition[]) {
    for (const agent of agents) {
      const versions = this.#byType.get(agent.type) ?? new Map<number, AgentDefinition>();
      if (versions.has(agent.version)) throw new ConfigError(`agent ${agent.type} version ${agent.version} registered twice`);
      versions.set(agent.version, agent);
      this.#byType.set(agent.type, versions);
    }
  }

  /** The newest version of a type, or undefined. */
  latestVersionOf(agentType: string): number | undefined {
    const versions = this.#byType.get(agentType);
    return versions === undefined ? undefined : Math.max(...versions.keys());
  }

  /** The newest definition of a type. @throws AgentError `ERR_UNKNOWN_AGENT_TYPE` */
  latest(agentType: string): AgentDefinition {
    const version = this.latestVersionOf(agentType);
    const def = version === undefined ? undefined : this.#byType.get(agentType)?.get(version);
    if (def === undefined)
      throw new AgentError("ERR_UNKNOWN_AGENT_TYPE", `no agent type "${agentType}" is registered on this node`, { details: { agentType } });
    return def;
  }

  /**
   * The definition an actor of `agentType` at `version` is migrated to when it is activated with
   * state: the latest version, when that is another one and declares `migrate`; else undefined.
   */
  migrationTarget(agentType: string, version: number): AgentDefinition | undefined {
    const latest = this.latest(agentType);
    return latest.version !== version && latest.migrate !== undefined ? latest : undefined;
  }

  /** One version of a type, if registered. */
  get(agentType: string, version: number): AgentDefinition | undefined {
    return this.#byType.get(agentType)?.get(version);
  }
}
