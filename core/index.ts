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
  serializeError,
} from "./errors.js";
export type { ErrorCode, AgentErrorOptions, SerializedError } from "./errors.js";
export { assert, InvariantError } from "./assert.js";
export { defaultLimits, limitsSchema, resolveLimits } from "./limits.js";
export type { Limits } from "./limits.js";
export { systemClock, SimulatedClock } from "./clock.js";
export type { Clock } from "./clock.js";
export { newId, sha256, idempotencyKeyOf } from "./ids.js";
export { encodeBounded, canonicalJson, sortKeys } from "./json.js";
export type { Json, JsonBounds } from "./json.js";
export type {
  Store,
  ActorStatus,
  EffectState,
  NewActor,
  ActorRecord,
  NodeRecord,
  NodeLease,
  ActorQuery,
  JournalKind,
  PlannedItems,
  JournalEntry,
  EffectRecord,
  EffectPatch,
  EffectGuard,
  EffectOutcome,
  NewMessage,
  MessageRecord,
  TimerRecord,
  StepCommit,
  CommitOutcome,
  StoredChain,
  NewDirectoryEntry,
  DirectoryEntry,
  ModelClient,
  ModelRequest,
  ModelResponse,
  ModelUsage,
  ModelToolSpec,
  ModelCallContext,
  ChatMessage,
  ToolCallRequest,
  Transport,
  TransportMessage,
  MessageHandler,
  PublishOptions,
  SubscribeOptions,
  RequestOptions,
  Subscription,
} from "./ports/index.js";
