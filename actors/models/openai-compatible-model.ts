import { z } from "zod";
import { assert } from "../../core/assert.js";
import { AgentError, ConfigError, TimeoutError } from "../../core/errors.js";
import type { Json } from "../../core/json.js";
import { defaultLimits } from "../../core/limits.js";
import type {
  ChatMessage,
  ModelCallContext,
  ModelClient,
  ModelRequest,
  ModelResponse,
  ToolCallRequest,
} from "../../core/ports/model-client.js";

/** Longest request timeout accepted, in milliseconds (30 minutes: slow reasoning models, never unbounded). */
const requestTimeoutMsMax = 30 * 60 * 1000;
/** Largest response body accepted when configured explicitly, in bytes. */
const responseBytesMaxMax = 64 * 1024 * 1024;
/** How much of an error response body is read for the error message, in bytes. */
const errorBodyBytesMax = 8 * 1024;
/** How much of a provider's error text or of bad tool arguments goes into `details`, in characters. */
const detailTextLengthMax = 512;
/** How many zod issues go into `details.issues`. */
const issuesMax = 10;

/**
 * Options of {@link createOpenAiCompatibleModel}.
 *
 * @experimental
 */
export interface OpenAiCompatibleModelOptions {
  /** Base URL of the API, up to and including the version segment, e.g. `https://api.openai.com/v1`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>` when given. Local servers (vLLM, Ollama) often need none. */
  apiKey?: string;
  /** Model used when a request names none. */
  model: string;
  /** How long one call may take, body included, before it is cancelled, in milliseconds. @defaultValue 60000 (60 s) */
  requestTimeoutMs?: number;
  /** Largest response body accepted, in bytes. @defaultValue 4194304 (4 MiB, `defaultLimits.payloadBytesMax`) */
  responseBytesMax?: number;
  /** Extra headers sent with every call (for gateways). `Content-Type`, `Accept` and `Idempotency-Key` are always ours. */
  headers?: Record<string, string>;
}

const headerNamePattern = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const optionsSchema = z.strictObject({
  baseUrl: z.url({ protocol: /^https?$/, error: "must be an http or https URL" }),
  apiKey: z.string().min(1).optional(),
  model: z.string().min(1).max(256),
  requestTimeoutMs: z.number().int().positive().max(requestTimeoutMsMax).default(60_000),
  responseBytesMax: z.number().int().positive().max(responseBytesMaxMax).default(defaultLimits.payloadBytesMax),
  headers: z.record(z.string().regex(headerNamePattern, "not a valid HTTP header name"), z.string()).default({}),
});

type ResolvedOptions = z.output<typeof optionsSchema>;

/**
 * Creates a {@link ModelClient} for any server that speaks OpenAI chat completions (OpenAI, Azure
 * OpenAI behind a gateway, vLLM, Ollama, LiteLLM, OpenRouter).
 *
 * Each call POSTs `${baseUrl}/chat/completions` once, with the effect's idempotency key as the
 * `Idempotency-Key` header. It does not retry: retries belong to the effect runtime, which counts
 * attempts in the store. The timeout cancels the HTTP request, not just the wait for it.
 *
 * @param options - endpoint, credentials, default model and limits; parsed once, here
 * @returns a model client
 * @throws ConfigError `ERR_CONFIG` when an option is invalid; `details.issues` holds the zod issues
 * @example
 * ```ts
 * const model = createOpenAiCompatibleModel({
 *   baseUrl: "https://api.openai.com/v1",
 *   apiKey: process.env.OPENAI_API_KEY,
 *   model: "gpt-4o-mini",
 *   requestTimeoutMs: 30_000,
 * });
 * const reply = await model.complete(
 *   { messages: [{ role: "user", content: "Hello" }] },
 *   { signal: AbortSignal.timeout(60_000), idempotencyKey: "tsr-example" },
 * );
 * ```
 */
export function createOpenAiCompatibleModel(options: OpenAiCompatibleModelOptions): ModelClient {
  const resolved = resolveOptions(options);
  const url = `${resolved.baseUrl.replace(/\/+$/, "")}/chat/completions`;
  return {
    complete: (request, context) => complete(resolved, url, request, context),
  };
}

function resolveOptions(options: OpenAiCompatibleModelOptions): ResolvedOptions {
  const parsed = optionsSchema.safeParse(options);
  if (parsed.success) return parsed.data;
  const issues = summarizeIssues(parsed.error.issues);
  const first = issues[0];
  const where = first === undefined || first.path === "" ? "options" : `option ${first.path}`;
  throw new ConfigError(`createOpenAiCompatibleModel: invalid ${where}: ${first?.message ?? "invalid value"}`, {
    details: { issues },
  });
}

async function complete(options: ResolvedOptions, url: string, request: ModelRequest, context: ModelCallContext): Promise<ModelResponse> {
  assert(request.messages.length > 0, "a model request has at least one message");
  assert(context.idempotencyKey.length > 0, "a model call carries the effect's idempotency key");
  if (context.signal.aborted) throw abortedError(context.signal.reason);

  const model = request.model ?? options.model;
  const body = JSON.stringify(toWireRequest(request, model));
  // One controller per call, fed by the caller's signal and our timer; both are released in `finally`
  // so that a long-lived caller signal does not accumulate listeners.
  const controller = new AbortController();
  const onCallerAbort = (): void => controller.abort(context.signal.reason);
  context.signal.addEventListener("abort", onCallerAbort, { once: true });
  const timer = setTimeout(() => {
    controller.abort(new TimeoutError(`model call timed out after ${options.requestTimeoutMs} ms`));
  }, options.requestTimeoutMs);
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: requestHeaders(options, context.idempotencyKey),
      body,
      redirect: "manual",
      signal: controller.signal,
    });
    if (!response.ok) {
      const text = await readBody(response, errorBodyBytesMax, "truncate");
      throw httpError(response.status, text, response.headers);
    }
    const text = await readBody(response, options.responseBytesMax, "throw");
    return parseResponse(text, model);
  } catch (error) {
    throw translateError(error, controller.signal, context.signal, options, url);
  } finally {
    clearTimeout(timer);
    context.signal.removeEventListener("abort", onCallerAbort);
  }
}

function requestHeaders(options: ResolvedOptions, idempotencyKey: string): Headers {
  const headers = new Headers(options.headers);
  headers.set("Content-Type", "application/json");
  headers.set("Accept", "application/json");
  headers.set("Idempotency-Key", idempotencyKey);
  if (options.apiKey !== undefined) headers.set("Authorization", `Bearer ${options.apiKey}`);
  return headers;
}

function translateError(error: unknown, own: AbortSignal, caller: AbortSignal, options: ResolvedOptions, url: string): AgentError {
  if (own.aborted) {
    // The first abort wins: the caller's reason or our TimeoutError, whichever came first.
    if (caller.aborted && own.reason === caller.reason) return abortedError(caller.reason);
    return new AgentError("ERR_MODEL", `model call timed out after ${options.requestTimeoutMs} ms and was cancelled`, {
      cause: own.reason,
      retryable: true,
      details: { reason: "timeout", timeoutMs: options.requestTimeoutMs },
    });
  }
  if (error instanceof AgentError) return error;
  const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
  const causeCode = typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : undefined;
  const causeMessage = cause instanceof Error ? cause.message : String(cause);
  return new AgentError("ERR_MODEL", `model endpoint ${url} could not be reached: ${causeMessage}`, {
    cause: error,
    retryable: true,
    details: { reason: "network", ...(causeCode === undefined ? {} : { causeCode }) },
  });
}

function abortedError(reason: unknown): AgentError {
  return new AgentError("ERR_ABORTED", "model call aborted by the caller", { cause: reason });
}

// --- Wire format (OpenAI chat completions) ---------------------------------------------------

interface WireToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

type WireMessage =
  | { role: "system" | "user"; content: string }
  | { role: "assistant"; content: string | null; tool_calls?: WireToolCall[] }
  | { role: "tool"; content: string; tool_call_id: string };

interface WireRequest {
  model: string;
  messages: WireMessage[];
  stream: false;
  tools?: Array<{ type: "function"; function: { name: string; description: string; parameters: Json } }>;
  temperature?: number;
  max_tokens?: number;
}

function toWireRequest(request: ModelRequest, model: string): WireRequest {
  const wire: WireRequest = { model, messages: request.messages.map(toWireMessage), stream: false };
  if (request.tools !== undefined && request.tools.length > 0) {
    wire.tools = request.tools.map((tool) => ({
      type: "function",
      function: { name: tool.name, description: tool.description, parameters: tool.parameters },
    }));
  }
  if (request.temperature !== undefined) wire.temperature = request.temperature;
  if (request.maxTokens !== undefined) wire.max_tokens = request.maxTokens;
  return wire;
}

function toWireMessage(message: ChatMessage): WireMessage {
  const toolCalls = message.toolCalls ?? [];
  if (message.role === "assistant") {
    if (toolCalls.length === 0) return { role: "assistant", content: message.content ?? "" };
    return {
      role: "assistant",
      content: message.content,
      tool_calls: toolCalls.map((call) => ({
        id: call.id,
        type: "function",
        function: { name: call.name, arguments: JSON.stringify(call.arguments) },
      })),
    };
  }
  assert(toolCalls.length === 0, `a ${message.role} message carries no tool calls; only assistant messages do`);
  if (message.role === "tool") {
    assert(message.toolCallId !== undefined && message.toolCallId.length > 0, "a tool message names its call (toolCallId)");
    return { role: "tool", content: message.content ?? "", tool_call_id: message.toolCallId };
  }
  return { role: message.role, content: message.content ?? "" };
}

const wireResponseSchema = z.object({
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        message: z.object({
          content: z.string().nullish(),
          tool_calls: z
            .array(
              z.object({
                id: z.string().min(1),
                type: z.literal("function").optional(),
                function: z.object({ name: z.string().min(1), arguments: z.string() }),
              }),
            )
            .nullish(),
        }),
        finish_reason: z.string().nullish(),
      }),
    )
    .min(1),
  usage: z
    .object({
      prompt_tokens: z.number().int().nonnegative(),
      completion_tokens: z.number().int().nonnegative(),
    })
    .nullish(),
});

type WireResponse = z.output<typeof wireResponseSchema>;
type WireResponseToolCall = NonNullable<WireResponse["choices"][number]["message"]["tool_calls"]>[number];

function parseResponse(text: string, requestedModel: string): ModelResponse {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new AgentError("ERR_MODEL", "model endpoint answered with a body that is not JSON", {
      cause,
      details: { body: text.slice(0, detailTextLengthMax) },
    });
  }
  const parsed = wireResponseSchema.safeParse(json);
  if (!parsed.success) {
    const providerMessage = providerErrorMessage(json);
    const what = providerMessage === undefined ? "does not match the chat-completions shape" : `is an error: ${providerMessage}`;
    throw new AgentError("ERR_MODEL", `model endpoint answered 2xx but the body ${what}`, {
      cause: parsed.error,
      details: { issues: summarizeIssues(parsed.error.issues) },
    });
  }
  const choice = parsed.data.choices[0];
  assert(choice !== undefined, "the schema requires at least one choice");
  const toolCalls = (choice.message.tool_calls ?? []).map(toToolCall);
  const message: ChatMessage = { role: "assistant", content: choice.message.content ?? null };
  if (toolCalls.length > 0) message.toolCalls = toolCalls;
  return {
    message,
    toolCalls,
    finishReason: choice.finish_reason ?? (toolCalls.length > 0 ? "tool_calls" : "stop"),
    usage: {
      inputTokens: parsed.data.usage?.prompt_tokens ?? 0,
      outputTokens: parsed.data.usage?.completion_tokens ?? 0,
    },
    model: parsed.data.model ?? requestedModel,
  };
}

function toToolCall(call: WireResponseToolCall): ToolCallRequest {
  const text = call.function.arguments.trim();
  // Some servers send "" for a tool without parameters; that means no arguments, not bad JSON.
  if (text === "") return { id: call.id, name: call.function.name, arguments: {} };
  try {
    return { id: call.id, name: call.function.name, arguments: JSON.parse(text) as Json };
  } catch (cause) {
    throw new AgentError("ERR_MODEL", `model asked for tool ${call.function.name} (call ${call.id}) with arguments that are not JSON`, {
      cause,
      details: { tool: call.function.name, toolCallId: call.id, arguments: text.slice(0, detailTextLengthMax) },
    });
  }
}

function httpError(status: number, text: string, headers: Headers): AgentError {
  const details: Record<string, unknown> = { status };
  let providerMessage: string | undefined;
  try {
    providerMessage = providerErrorMessage(JSON.parse(text));
  } catch {
    providerMessage = text.trim() === "" ? undefined : text.trim().slice(0, detailTextLengthMax);
  }
  if (providerMessage !== undefined) details.providerMessage = providerMessage;
  const retryAfterMs = parseRetryAfterMs(headers.get("retry-after"));
  if (retryAfterMs !== undefined) details.retryAfterMs = retryAfterMs;
  const suffix = providerMessage === undefined ? "" : `: ${providerMessage}`;
  return new AgentError("ERR_MODEL", `model endpoint answered HTTP ${status}${suffix}`, {
    retryable: status === 429 || status >= 500,
    details,
  });
}

/** OpenAI-style errors are `{ error: { message } }`; some servers send `{ error: "text" }`. */
function providerErrorMessage(json: unknown): string | undefined {
  if (typeof json !== "object" || json === null || !("error" in json)) return undefined;
  const error: unknown = json.error;
  if (typeof error === "string") return error.slice(0, detailTextLengthMax);
  if (typeof error === "object" && error !== null && "message" in error && typeof error.message === "string") {
    return error.message.slice(0, detailTextLengthMax);
  }
  return undefined;
}

/** Only the delay-seconds form; the HTTP-date form would need a clock we do not have here. */
function parseRetryAfterMs(value: string | null): number | undefined {
  if (value === null || !/^\d{1,6}$/.test(value.trim())) return undefined;
  return Number(value.trim()) * 1000;
}

async function readBody(response: Response, bytesMax: number, overflow: "throw" | "truncate"): Promise<string> {
  assert(bytesMax > 0, "a body limit is positive");
  if (response.body === null) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (bytes + value.byteLength > bytesMax) {
        if (overflow === "throw") {
          throw new AgentError("ERR_MODEL", `model response is larger than responseBytesMax (${bytesMax} bytes)`, {
            details: { limit: "responseBytesMax", max: bytesMax },
          });
        }
        chunks.push(value.subarray(0, bytesMax - bytes));
        break;
      }
      bytes += value.byteLength;
      chunks.push(value);
    }
  } finally {
    // Cancelling releases the connection when we stop early; after a complete read it is a no-op.
    reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function summarizeIssues(issues: readonly z.core.$ZodIssue[]): Array<{ path: string; code: string; message: string }> {
  return issues.slice(0, issuesMax).map((issue) => ({
    path: issue.path.map(String).join("."),
    code: issue.code,
    message: issue.message,
  }));
}
