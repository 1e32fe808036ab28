/**
 * Every error Tessera throws on purpose extends {@link AgentError}: a stable string `code` to
 * switch on, `retryable`, context fields in `details`, and the original error as `cause`.
 */

/** Stable error codes. Switch on these, never on message text. */
export type ErrorCode =
  | "ERR_INVARIANT"
  | "ERR_CONFIG"
  | "ERR_VALIDATION"
  | "ERR_UNKNOWN_AGENT_TYPE"
  | "ERR_UNKNOWN_EVENT_TYPE"
  | "ERR_UNKNOWN_TOOL"
  | "ERR_UNSUPPORTED_MACHINE"
  | "ERR_PAYLOAD_TOO_LARGE"
  | "ERR_PAYLOAD_TOO_DEEP"
  | "ERR_TOOL_INPUT_INVALID"
  | "ERR_TOOL_OUTPUT_INVALID"
  | "ERR_TOOL_FAILED"
  | "ERR_TOOL_TIMEOUT"
  | "ERR_MAILBOX_FULL"
  | "ERR_TOO_MANY_CHILDREN"
  | "ERR_HIERARCHY_TOO_DEEP"
  | "ERR_ACTOR_NOT_FOUND"
  | "ERR_ACTOR_NOT_ACTIVE"
  | "ERR_SNAPSHOT_CONFLICT"
  | "ERR_LEASE_LOST"
  | "ERR_VERSION_UNSUPPORTED"
  | "ERR_MIGRATION_FAILED"
  | "ERR_REPLAY_DIVERGED"
  | "ERR_EFFECT_NOT_FOUND"
  | "ERR_EFFECT_NOT_UNKNOWN"
  | "ERR_STORE_RETRYABLE"
  | "ERR_STORE"
  | "ERR_STORE_UNAVAILABLE"
  | "ERR_TIMEOUT"
  | "ERR_OUTCOME_UNKNOWN"
  | "ERR_ABORTED"
  | "ERR_NODE_CLOSED"
  | "ERR_MODEL"
  | "ERR_LIMIT_EXCEEDED"
  | "ERR_IDEMPOTENCY_MISMATCH"
  | (string & {});

/** Options accepted by every {@link AgentError} constructor. */
export interface AgentErrorOptions {
  /** The underlying error, kept for diagnosis. */
  cause?: unknown;
  /** Context fields (ids, revision, limit names). Must be JSON-serialisable. */
  details?: Record<string, unknown>;
  /** Whether the same operation may succeed if tried again. @defaultValue false */
  retryable?: boolean;
}

/**
 * Base class of every Tessera error.
 *
 * @example
 * ```ts
 * try { await node.sendEvent(...) } catch (e) { if (e instanceof AgentError && e.code === "ERR_MAILBOX_FULL") retryLater() }
 * ```
 */
export class AgentError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode;
  /** Whether a retry of the same operation may succeed. */
  readonly retryable: boolean;
  /** Context fields. */
  readonly details: Record<string, unknown>;

  /**
   * @param code - stable error code
   * @param message - human-readable explanation naming the offending input or limit
   * @param options - cause, details and retryable flag
   */
  constructor(code: ErrorCode, message: string, options: AgentErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details ?? {};
  }

  /** The error as plain JSON, the form in which it is journaled and crosses process boundaries. */
  toJSON(): SerializedError {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** An error as stored in the journal or sent between processes. */
export interface SerializedError {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** Options were invalid; `details.issues` holds the zod issues with their paths. */
export class ConfigError extends AgentError {
  constructor(message: string, options: AgentErrorOptions = {}) {
    super("ERR_CONFIG", message, options);
  }
}

/** Input (an event, tool arguments, a payload) was rejected. */
export class ValidationError extends AgentError {}

/** A named limit was crossed. `details.limit` names it, `details.max` and `details.actual` give the numbers. */
export class LimitError extends AgentError {}

/** The store refused a write because the expected revision or lease epoch was stale. */
export class SnapshotConflictError extends AgentError {
  readonly agentId: string;
  readonly expectedRevision: number;
  readonly actualRevision: number | undefined;

  constructor(agentId: string, expectedRevision: number, actualRevision: number | undefined, options: AgentErrorOptions = {}) {
    super("ERR_SNAPSHOT_CONFLICT", `actor ${agentId}: expected revision ${expectedRevision}, store has ${actualRevision ?? "none"}`, {
      ...options,
      details: { agentId, expectedRevision, actualRevision, ...options.details },
    });
    this.agentId = agentId;
    this.expectedRevision = expectedRevision;
    this.actualRevision = actualRevision;
  }
}

/** A store operation failed. `retryable` is true for serialization failures and lost connections. */
export class StoreError extends AgentError {}

/** A wait or operation timed out; the work it waited for was cancelled. */
export class TimeoutError extends AgentError {
  constructor(message: string, options: AgentErrorOptions = {}) {
    super("ERR_TIMEOUT", message, { retryable: true, ...options });
  }
}

/**
 * A call whose outcome cannot be known: the request may have reached the service and acted, and no
 * answer came back (a connection closed after sending, an unreadable reply). For a non-idempotent
 * tool the runtime records the effect `unknown` (reconciliation), never `failed`; throw it from a
 * tool in the same situation.
 */
export class OutcomeUnknownError extends AgentError {
  constructor(message: string, options: AgentErrorOptions = {}) {
    super("ERR_OUTCOME_UNKNOWN", message, { retryable: true, ...options });
  }
}

/** A tool call failed; `details.tool` names the tool. */
export class ToolError extends AgentError {}

/** Turns anything thrown into a {@link SerializedError} without losing the code of an {@link AgentError}. */
export function serializeError(error: unknown): SerializedError {
  if (error instanceof AgentError) return error.toJSON();
  if (error instanceof Error) return { code: "ERR_UNCAUGHT", message: error.message };
  return { code: "ERR_UNCAUGHT", message: String(error) };
}
