import type { Json } from "../json.js";

/** One message of a chat conversation (OpenAI chat-completions shape, camelCase). */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string | null;
  /** Tool calls the assistant asked for. */
  toolCalls?: ToolCallRequest[];
  /** For `role: "tool"`: the call this message answers. */
  toolCallId?: string;
}

/** A tool call a model asks for; `arguments` is parsed JSON. */
export interface ToolCallRequest {
  id: string;
  name: string;
  arguments: Json;
}

/** A tool as a model sees it. `parameters` is JSON Schema (from zod's `z.toJSONSchema`). */
export interface ModelToolSpec {
  name: string;
  description: string;
  parameters: Json;
}

/** One model call. */
export interface ModelRequest {
  model?: string;
  messages: ChatMessage[];
  tools?: ModelToolSpec[];
  temperature?: number;
  maxTokens?: number;
}

/** Token counts of one call. */
export interface ModelUsage {
  inputTokens: number;
  outputTokens: number;
}

/** What a model answered. */
export interface ModelResponse {
  message: ChatMessage;
  toolCalls: ToolCallRequest[];
  finishReason: string;
  usage: ModelUsage;
  model: string;
}

/** Per-call context: cancellation and the effect's idempotency key. */
export interface ModelCallContext {
  signal: AbortSignal;
  idempotencyKey: string;
}

/**
 * The model port. `actors/models` has an OpenAI-compatible client and a scripted model for tests.
 */
export interface ModelClient {
  /**
   * Calls the model once.
   *
   * @throws AgentError `ERR_MODEL` (retryable for 429 and 5xx) or `ERR_ABORTED`
   */
  complete(request: ModelRequest, context: ModelCallContext): Promise<ModelResponse>;
}
