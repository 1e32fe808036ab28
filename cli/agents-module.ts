import { stat } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import type { AgentDefinition } from "../actors/define-agent.js";
import type { NodeIdentityOptions } from "../actors/node-identity.js";
import { AgentError, type AgentErrorOptions } from "../core/errors.js";
import type { ModelClient } from "../core/ports/model-client.js";

/** Why an agents module could not be used. */
export type AgentsModuleErrorCode = "ERR_AGENTS_MODULE_NOT_FOUND" | "ERR_AGENTS_MODULE_FAILED" | "ERR_AGENTS_MODULE_INVALID";

/**
 * The module given to `tessera node --agents` is missing (`ERR_AGENTS_MODULE_NOT_FOUND`), threw
 * while loading (`ERR_AGENTS_MODULE_FAILED`, the error as `cause`), or does not export what a node
 * needs (`ERR_AGENTS_MODULE_INVALID`). `details.path` names the module.
 */
export class AgentsModuleError extends AgentError {
  constructor(code: AgentsModuleErrorCode, message: string, options: AgentErrorOptions = {}) {
    super(code, message, options);
  }
}

/** What an agents module exports. */
export interface AgentsModule {
  /** Every agent type (and version) the node hosts: `defineAgent` results. */
  agents: readonly AgentDefinition[];
  /** The model behind `callModel`, when an agent calls one. */
  model: ModelClient | undefined;
  /** Identity and delegation options, when the node checks chains. */
  identity: NodeIdentityOptions | undefined;
}

function isAgent(value: unknown): value is AgentDefinition {
  return typeof value === "object" && value !== null && "machine" in value && typeof (value as { type?: unknown }).type === "string";
}

/**
 * Imports the user's agents module: `export const agents = [defineAgent(…)]`, and optionally
 * `export const model` (a `ModelClient`) and `export const identity` (`NodeIdentityOptions`).
 *
 * @param modulePath - an absolute path
 * @returns the agents, model and identity it exports
 * @throws AgentsModuleError `ERR_AGENTS_MODULE_NOT_FOUND`, `ERR_AGENTS_MODULE_FAILED` or `ERR_AGENTS_MODULE_INVALID`
 * @example
 * ```ts
 * const { agents, model } = await loadAgentsModule(path.resolve("agents.ts"));
 * ```
 */
export async function loadAgentsModule(modulePath: string): Promise<AgentsModule> {
  const details = { path: modulePath };
  const file = await stat(modulePath).catch(() => undefined);
  if (file === undefined || !file.isFile())
    throw new AgentsModuleError("ERR_AGENTS_MODULE_NOT_FOUND", `agents module ${modulePath} does not exist`, { details });
  let exported: Record<string, unknown>;
  try {
    exported = (await import(pathToFileURL(modulePath).href)) as Record<string, unknown>;
  } catch (cause) {
    const message = cause instanceof Error ? cause.message : String(cause);
    throw new AgentsModuleError("ERR_AGENTS_MODULE_FAILED", `agents module ${modulePath} failed to load: ${message}`, { cause, details });
  }
  const { agents, model, identity } = exported;
  if (!Array.isArray(agents) || agents.length === 0 || !agents.every(isAgent))
    throw new AgentsModuleError(
      "ERR_AGENTS_MODULE_INVALID",
      `agents module ${modulePath} must export \`agents\`: a non-empty array of defineAgent() results`,
      { details },
    );
  if (model !== undefined && typeof (model as ModelClient | null)?.complete !== "function")
    throw new AgentsModuleError("ERR_AGENTS_MODULE_INVALID", `agents module ${modulePath}: \`model\` must be a ModelClient`, { details });
  if (identity !== undefined && !((identity as NodeIdentityOptions | null)?.authorities instanceof Map))
    throw new AgentsModuleError(
      "ERR_AGENTS_MODULE_INVALID",
      `agents module ${modulePath}: \`identity\` must be NodeIdentityOptions with an \`authorities\` map`,
      { details },
    );
  return { agents, model: model as ModelClient | undefined, identity: identity as NodeIdentityOptions | undefined };
}
