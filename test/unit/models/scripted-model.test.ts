import { describe, expect, it } from "vitest";
import { createScriptedModel } from "../../../actors/models/index.js";
import type { ScriptedReply } from "../../../actors/models/index.js";
import { AgentError, ConfigError } from "../../../core/errors.js";
import type { ChatMessage, ModelCallContext, ModelRequest, ModelResponse } from "../../../core/ports/model-client.js";

function context(overrides: Partial<ModelCallContext> = {}): ModelCallContext {
  return { signal: new AbortController().signal, idempotencyKey: "tsr-key", ...overrides };
}

async function rejection(promise: Promise<unknown>): Promise<AgentError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(AgentError);
    return error as AgentError;
  }
  throw new Error("expected the promise to reject");
}

/** What a runtime does with a reply: append the assistant message and one tool result per call. */
function continueWith(request: ModelRequest, reply: ModelResponse): ModelRequest {
  const messages: ChatMessage[] = [...request.messages, reply.message];
  for (const call of reply.toolCalls) messages.push({ role: "tool", content: '{"ok":true}', toolCallId: call.id });
  return { ...request, messages };
}

const user: ModelRequest = { messages: [{ role: "user", content: "Refund order o-1, please." }] };

describe("createScriptedModel", () => {
  it("answers each call with the next step and records the requests", async () => {
    const model = createScriptedModel([
      { toolCalls: [{ name: "refund", arguments: { orderId: "o-1", amount: 20 } }] },
      { content: "Refunded." },
    ]);
    const first = await model.complete(user, context());
    expect(first.toolCalls).toEqual([{ id: "call_1", name: "refund", arguments: { orderId: "o-1", amount: 20 } }]);
    expect(first.message).toEqual({ role: "assistant", content: null, toolCalls: first.toolCalls });
    expect(first.finishReason).toBe("tool_calls");
    expect(first.model).toBe("scripted");

    const second = await model.complete(continueWith(user, first), context());
    expect(second.message).toEqual({ role: "assistant", content: "Refunded." });
    expect(second.toolCalls).toEqual([]);
    expect(second.finishReason).toBe("stop");
    expect(model.calls).toHaveLength(2);
    expect(model.calls[0]).toEqual(user);
    expect(model.calls[1]!.messages).toHaveLength(3);
  });

  it("throws ERR_MODEL 'script exhausted' past the end", async () => {
    const model = createScriptedModel([{ content: "only one" }]);
    await model.complete(user, context());
    const error = await rejection(model.complete(user, context()));
    expect(error.code).toBe("ERR_MODEL");
    expect(error.message).toBe("script exhausted");
    expect(error.retryable).toBe(false);
    expect(error.details).toEqual({ steps: 1, call: 2 });
  });

  it("numbers tool call ids after the calls already in the conversation", async () => {
    const model = createScriptedModel([
      { toolCalls: [{ name: "a" }, { name: "b", arguments: { x: 1 } }] },
      { toolCalls: [{ name: "c", arguments: [1, "two", null] }] },
    ]);
    const first = await model.complete(user, context());
    expect(first.toolCalls.map((call) => call.id)).toEqual(["call_1", "call_2"]);
    expect(first.toolCalls[0]!.arguments).toEqual({});
    const second = await model.complete(continueWith(user, first), context());
    expect(second.toolCalls).toEqual([{ id: "call_3", name: "c", arguments: [1, "two", null] }]);
  });

  it("passes the request to function steps", async () => {
    const model = createScriptedModel([(request) => ({ content: `you said: ${request.messages.at(-1)?.content ?? ""}` })]);
    const reply = await model.complete(user, context());
    expect(reply.message.content).toBe("you said: Refund order o-1, please.");
  });

  it("counts about one token per four characters of prompt and reply unless usage is given", async () => {
    const model = createScriptedModel([{ content: "12345678" }, { content: "x", usage: { inputTokens: 7, outputTokens: 3 } }]);
    const request: ModelRequest = { messages: [{ role: "user", content: "a".repeat(41) }] };
    expect((await model.complete(request, context())).usage).toEqual({ inputTokens: 11, outputTokens: 2 });
    expect((await model.complete(request, context())).usage).toEqual({ inputTokens: 7, outputTokens: 3 });
  });

  it("counts tool specs in the prompt and tool calls in the reply", async () => {
    const model = createScriptedModel([{ content: "", toolCalls: [{ name: "refund", arguments: { amount: 20 } }] }]);
    const request: ModelRequest = {
      messages: [{ role: "user", content: "" }],
      tools: [{ name: "refund", description: "Refunds", parameters: { type: "object" } }],
    };
    const reply = await model.complete(request, context());
    expect(reply.usage.inputTokens).toBe(Math.ceil(JSON.stringify(request.tools).length / 4));
    expect(reply.usage.outputTokens).toBe(Math.ceil(JSON.stringify(reply.toolCalls).length / 4));
  });

  it("reports the request's model and the configured name otherwise", async () => {
    const model = createScriptedModel([{ content: "a" }, { content: "b" }], { model: "fake-gpt" });
    expect((await model.complete(user, context())).model).toBe("fake-gpt");
    expect((await model.complete({ ...user, model: "asked-for" }, context())).model).toBe("asked-for");
  });

  it("lets a step throw an AgentError to simulate a provider failure, and wraps anything else", async () => {
    const model = createScriptedModel([
      () => {
        throw new AgentError("ERR_MODEL", "rate limited", { retryable: true, details: { status: 429 } });
      },
      () => {
        throw new TypeError("bug in the script");
      },
      { content: "recovered" },
    ]);
    const limited = await rejection(model.complete(user, context()));
    expect(limited.retryable).toBe(true);
    expect(limited.details).toEqual({ status: 429 });
    const broken = await rejection(model.complete(user, context()));
    expect(broken.code).toBe("ERR_MODEL");
    expect(broken.message).toBe("script step 2 threw: bug in the script");
    expect(broken.cause).toBeInstanceOf(TypeError);
    expect((await model.complete(user, context())).message.content).toBe("recovered");
  });

  it("rejects an invalid reply with ERR_MODEL and the zod issues", async () => {
    const model = createScriptedModel([{ toolCalls: [{ name: "" }] }, { content: 42 } as unknown as ScriptedReply]);
    const empty = await rejection(model.complete(user, context()));
    expect(empty.code).toBe("ERR_MODEL");
    expect(empty.message).toBe("script step 1 returned an invalid reply");
    expect(empty.details.issues).toEqual([expect.objectContaining({ path: "toolCalls.0.name" })]);
    const notText = await rejection(model.complete(user, context()));
    expect(notText.details.issues).toEqual([expect.objectContaining({ path: "content" })]);
  });

  it("does not let later changes to the request or the script leak into records and replies", async () => {
    const step = { toolCalls: [{ name: "f", arguments: { n: 1 } }] };
    const model = createScriptedModel([step]);
    const request: ModelRequest = { messages: [{ role: "user", content: "hi" }] };
    const reply = await model.complete(request, context());
    request.messages.push({ role: "user", content: "later" });
    (step.toolCalls[0]!.arguments as { n: number }).n = 2;
    expect(model.calls[0]!.messages).toHaveLength(1);
    expect(reply.toolCalls[0]!.arguments).toEqual({ n: 1 });
  });

  it("gives concurrent calls distinct steps, in call order", async () => {
    const model = createScriptedModel([
      async () => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        return { content: "slow first" };
      },
      { content: "fast second" },
    ]);
    const [first, second] = await Promise.all([model.complete(user, context()), model.complete(user, context())]);
    expect(first.message.content).toBe("slow first");
    expect(second.message.content).toBe("fast second");
  });

  it("rejects an aborted call with ERR_ABORTED without consuming a step", async () => {
    const model = createScriptedModel([{ content: "kept" }]);
    const error = await rejection(model.complete(user, context({ signal: AbortSignal.abort("stop") })));
    expect(error.code).toBe("ERR_ABORTED");
    expect(error.cause).toBe("stop");
    expect(model.calls).toHaveLength(0);
    expect((await model.complete(user, context())).message.content).toBe("kept");
  });

  it("rejects unknown options with a ConfigError", () => {
    expect(() => createScriptedModel([], { model: "" })).toThrow(ConfigError);
    expect(() => createScriptedModel([], { modle: "x" } as never)).toThrow(ConfigError);
  });
});

describe("createScriptedModel.byTurn", () => {
  const replies: ScriptedReply[] = [
    { toolCalls: [{ name: "refund", arguments: { orderId: "o-1", amount: 20 } }] },
    { content: "Refunded." },
  ];

  it("chooses the reply by the number of assistant messages in the request", async () => {
    const turns: number[] = [];
    const model = createScriptedModel.byTurn((_request, turn) => {
      turns.push(turn);
      return replies[turn];
    });
    const first = await model.complete(user, context());
    const second = await model.complete(continueWith(user, first), context());
    expect(turns).toEqual([0, 1]);
    expect(first.toolCalls[0]!.name).toBe("refund");
    expect(second.message.content).toBe("Refunded.");
    expect(model.calls).toHaveLength(2);
  });

  it("answers a retried or replayed call exactly as the first time, in a fresh instance too", async () => {
    const before = createScriptedModel.byTurn((_request, turn) => replies[turn]);
    const first = await before.complete(user, context());
    const request = continueWith(user, first);
    const original = await before.complete(request, context());
    // Same request again in the same instance (a retry), then in a new instance (after a crash).
    const retried = await before.complete(request, context());
    const afterCrash = createScriptedModel.byTurn((_request, turn) => replies[turn]);
    const replayedFirst = await afterCrash.complete(user, context());
    const replayed = await afterCrash.complete(request, context());
    expect(retried).toEqual(original);
    expect(replayedFirst).toEqual(first);
    expect(replayed).toEqual(original);
  });

  it("throws 'script exhausted' when the function has no reply for the turn", async () => {
    const model = createScriptedModel.byTurn((_request, turn) => replies[turn]);
    const request: ModelRequest = {
      messages: [
        { role: "user", content: "a" },
        { role: "assistant", content: "b" },
        { role: "user", content: "c" },
        { role: "assistant", content: "d" },
      ],
    };
    const error = await rejection(model.complete(request, context()));
    expect(error.code).toBe("ERR_MODEL");
    expect(error.message).toBe("script exhausted");
    expect(error.details).toEqual({ turn: 2 });
  });
});
