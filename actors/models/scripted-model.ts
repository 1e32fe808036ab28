import { z } from "zod";
import { assert } from "../../core/assert.js";
import { AgentError, ConfigError } from "../../core/errors.js";
import type { Json } from "../../core/json.js";
import type {
  ChatMessage,
  ModelCallContext,
  ModelClient,
  ModelRequest,
  ModelResponse,
  ModelUsage,
  ToolCallRequest,
} from "../../core/ports/model-client.js";

/**
 * What a scripted model answers: text, tool calls, or both. Ids, usage and the finish reason are
 * filled in when missing.
 *
 * @experimental
 */
export interface ScriptedReply {
  /** The assistant's text. @defaultValue null */
  content?: string | null;
  /** Tool calls to ask for; ids are generated as `call_<n>`. */
  toolCalls?: Array<{ name: string; arguments?: Json }>;
  /** Token counts. @defaultValue about one token per four characters of prompt and reply */
  usage?: ModelUsage;
  /** @defaultValue `"tool_calls"` when there are tool calls, `"stop"` otherwise */
  finishReason?: string;
}

/**
 * One step of a script: a fixed reply, or a function of the request that returns one. A function may
 * throw an {@link AgentError} (for example a retryable `ERR_MODEL`) to simulate a failing provider.
 *
 * @experimental
 */
export type ScriptStep = ScriptedReply | ((request: ModelRequest) => ScriptedReply | Promise<ScriptedReply>);

/**
 * Chooses a reply from the request alone. `turn` is the number of assistant messages already in
 * the request, so the first call of a conversation is turn 0. Return `undefined` when the script has
 * no answer for this turn.
 *
 * @experimental
 */
export type TurnScript = (request: ModelRequest, turn: number) => ScriptedReply | undefined | Promise<ScriptedReply | undefined>;

/**
 * A model client that answers from a script, without any network, and records every request.
 *
 * @experimental
 */
export interface ScriptedModel extends ModelClient {
  /** Every request received, in order, copied at the time of the call. */
  readonly calls: ModelRequest[];
}

/**
 * Options of {@link createScriptedModel} and `createScriptedModel.byTurn`.
 *
 * @experimental
 */
export interface ScriptedModelOptions {
  /** Model name reported when the request names none. @defaultValue "scripted" */
  model?: string;
}

const optionsSchema = z.strictObject({ model: z.string().min(1).max(256).default("scripted") });

const replySchema = z.strictObject({
  content: z.string().nullable().optional(),
  toolCalls: z
    .array(z.strictObject({ name: z.string().min(1), arguments: z.json().optional() }))
    .max(64)
    .optional(),
  usage: z.strictObject({ inputTokens: z.number().int().nonnegative(), outputTokens: z.number().int().nonnegative() }).optional(),
  finishReason: z.string().min(1).optional(),
});

/**
 * Creates a model that plays a script, for tests and examples: each call consumes the next step.
 *
 * Tool call ids are `call_<n>`, where `n` counts the tool calls already in the request's history
 * plus one. They are unique within a conversation, as a real model's are, and the same whenever the
 * same request is made. A script array is consumed by call count, so a call retried after a
 * crash in a new process starts the script again; use `createScriptedModel.byTurn` when the answer
 * must depend only on the request.
 *
 * @param script - the steps, in order
 * @param options - the model name to report
 * @returns a model client with `calls`, the requests it received
 * @throws ConfigError `ERR_CONFIG` when the options are invalid
 * @example
 * ```ts
 * const model = createScriptedModel([
 *   { toolCalls: [{ name: "lookupOrder", arguments: { orderId: "o-1" } }] },
 *   (request) => ({ content: `Done after ${request.messages.length} messages` }),
 * ]);
 * const first = await model.complete({ messages: [{ role: "user", content: "Where is o-1?" }] }, context);
 * first.toolCalls[0]?.id; // "call_1"
 * // A third call throws AgentError ERR_MODEL "script exhausted".
 * ```
 */
export function createScriptedModel(script: readonly ScriptStep[], options: ScriptedModelOptions = {}): ScriptedModel {
  const resolved = resolveOptions(options);
  const steps = [...script];
  let next = 0;
  const calls: ModelRequest[] = [];
  return {
    calls,
    async complete(request: ModelRequest, context: ModelCallContext): Promise<ModelResponse> {
      if (context.signal.aborted) throw abortedError(context.signal.reason);
      calls.push(structuredClone(request));
      // Take the step before any await, so that concurrent calls get distinct steps.
      const index = next;
      const step = steps[index];
      if (step === undefined) {
        throw new AgentError("ERR_MODEL", "script exhausted", { details: { steps: steps.length, call: index + 1 } });
      }
      next += 1;
      const reply = await runStep(() => (typeof step === "function" ? step(request) : step), `script step ${index + 1}`);
      return toResponse(reply, request, resolved.model, `script step ${index + 1}`);
    },
  };
}

/**
 * Creates a scripted model whose answer depends only on the request, so a call replayed or retried
 * after a crash, in another process, gets the same answer as the first time.
 *
 * @param script - chooses the reply from the request and the number of assistant messages in it
 * @param options - the model name to report
 * @returns a model client with `calls`, the requests this instance received
 * @throws ConfigError `ERR_CONFIG` when the options are invalid
 * @example
 * ```ts
 * const replies: ScriptedReply[] = [
 *   { toolCalls: [{ name: "refund", arguments: { orderId: "o-1", amount: 20 } }] },
 *   { content: "Refunded." },
 * ];
 * const model = createScriptedModel.byTurn((_request, turn) => replies[turn]);
 * ```
 */
function byTurn(script: TurnScript, options: ScriptedModelOptions = {}): ScriptedModel {
  const resolved = resolveOptions(options);
  const calls: ModelRequest[] = [];
  return {
    calls,
    async complete(request: ModelRequest, context: ModelCallContext): Promise<ModelResponse> {
      if (context.signal.aborted) throw abortedError(context.signal.reason);
      calls.push(structuredClone(request));
      const turn = request.messages.filter((message) => message.role === "assistant").length;
      const what = `turn ${turn}`;
      const reply = await runStep(() => script(request, turn), what);
      if (reply === undefined) throw new AgentError("ERR_MODEL", "script exhausted", { details: { turn } });
      return toResponse(reply, request, resolved.model, what);
    },
  };
}

createScriptedModel.byTurn = byTurn;

function resolveOptions(options: ScriptedModelOptions): z.output<typeof optionsSchema> {
  const parsed = optionsSchema.safeParse(options);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => ({
    path: issue.path.map(String).join("."),
    code: issue.code,
    message: issue.message,
  }));
  throw new ConfigError(`createScriptedModel: invalid options: ${issues[0]?.message ?? "invalid value"}`, {
    details: { issues },
  });
}

async function runStep<T>(run: () => T | Promise<T>, what: string): Promise<T> {
  try {
    return await run();
  } catch (error) {
    // A script may throw AgentErrors on purpose (a simulated 429); anything else is a broken script.
    if (error instanceof AgentError) throw error;
    throw new AgentError("ERR_MODEL", `${what} threw: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
  }
}

function toResponse(reply: ScriptedReply, request: ModelRequest, model: string, what: string): ModelResponse {
  const parsed = replySchema.safeParse(reply);
  if (!parsed.success) {
    throw new AgentError("ERR_MODEL", `${what} returned an invalid reply`, {
      cause: parsed.error,
      details: {
        issues: parsed.error.issues.map((issue) => ({ path: issue.path.map(String).join("."), code: issue.code })),
      },
    });
  }
  const firstId = toolCallsIn(request.messages) + 1;
  const toolCalls: ToolCallRequest[] = (parsed.data.toolCalls ?? []).map((call, index) => ({
    id: `call_${firstId + index}`,
    name: call.name,
    arguments: structuredClone(call.arguments ?? {}) as Json,
  }));
  const content = parsed.data.content ?? null;
  const message: ChatMessage = { role: "assistant", content };
  if (toolCalls.length > 0) message.toolCalls = toolCalls;
  const usage = parsed.data.usage ?? {
    inputTokens: approximateTokens(promptText(request)),
    outputTokens: approximateTokens((content ?? "") + (toolCalls.length > 0 ? JSON.stringify(toolCalls) : "")),
  };
  assert(
    toolCalls.every((call) => call.id.startsWith("call_")),
    "scripted tool call ids are call_<n>",
  );
  return {
    message,
    toolCalls,
    finishReason: parsed.data.finishReason ?? (toolCalls.length > 0 ? "tool_calls" : "stop"),
    usage: { ...usage },
    model: request.model ?? model,
  };
}

function toolCallsIn(messages: readonly ChatMessage[]): number {
  let count = 0;
  for (const message of messages) count += message.toolCalls?.length ?? 0;
  return count;
}

function promptText(request: ModelRequest): string {
  let text = "";
  for (const message of request.messages) {
    text += message.content ?? "";
    if (message.toolCalls !== undefined && message.toolCalls.length > 0) text += JSON.stringify(message.toolCalls);
  }
  if (request.tools !== undefined && request.tools.length > 0) text += JSON.stringify(request.tools);
  return text;
}

/** About one token per four characters, which is what English text averages with OpenAI tokenizers. */
function approximateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

function abortedError(reason: unknown): AgentError {
  return new AgentError("ERR_ABORTED", "model call aborted by the caller", { cause: reason });
}
