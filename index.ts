/**
 * Tessera: durable, identity-aware actors for AI agents. Agents are XState v5 statecharts whose
 * every step is committed to a store before anything of it happens outside.
 */
export { createNode, TesseraNode } from "./actors/node.js";
export type { ActorView, StartRunRequest, SendEventRequest, ReconcileRequest, ClusterStats } from "./actors/node.js";
export type { NodeOptions, ClusterOptions, PassivationOptions } from "./actors/node-options.js";
export type { NodeIdentityOptions } from "./actors/node-identity.js";
export { poolTool, serveToolPool, poolCallTimeoutMsDefault } from "./actors/tool-pool.js";
export type { ToolPoolOptions, ServeToolPoolOptions, ToolPoolWorker } from "./actors/tool-pool.js";
export { defineAgent } from "./actors/define-agent.js";
export type { AgentDefinition } from "./actors/define-agent.js";
export { defineTool } from "./actors/define-tool.js";
export type { ToolDefinition, ToolContext, RetryPolicy } from "./actors/define-tool.js";
export { callTool, callModel, startTimer, cancelTimer, spawnAgent, stopChild, sendToActor, sendToParent } from "./actors/actions.js";
export type { DurableAction, ActionArgs, AgentModelRequest } from "./actors/actions.js";
export { createJsonLogger } from "./actors/logger.js";
export type { Logger } from "./actors/logger.js";
export {
  AgentError,
  ConfigError,
  ValidationError,
  LimitError,
  SnapshotConflictError,
  StoreError,
  TimeoutError,
  OutcomeUnknownError,
  ToolError,
  InvariantError,
  SimulatedClock,
  systemClock,
  defaultLimits,
  idempotencyKeyOf,
} from "./core/index.js";
export type { Clock, Limits, Json, ErrorCode, SerializedError } from "./core/index.js";
export type {
  Store,
  ActorStatus,
  EffectState,
  EffectRecord,
  JournalEntry,
  ActorRecord,
  NodeRecord,
  NodeLease,
  Transport,
  ModelClient,
  ModelRequest,
  ModelResponse,
  ChatMessage,
  ToolCallRequest,
} from "./core/index.js";
