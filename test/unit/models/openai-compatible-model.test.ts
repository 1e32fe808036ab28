import http from "node:http";
import type { AddressInfo } from "node:net";
import { getEventListeners } from "node:events";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createOpenAiCompatibleModel } from "../../../actors/models/index.js";
import { AgentError, ConfigError } from "../../../core/errors.js";
import type { ModelCallContext, ModelRequest } from "../../../core/ports/model-client.js";

/** What the fake server saw of one request. */
interface SeenRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
  /** Resolves when the server side of the exchange closed; `finished` is false if it closed before we answered. */
  closed: Promise<{ finished: boolean }>;
}

type Responder = (request: SeenRequest, response: http.ServerResponse) => void;

/** A fake OpenAI-compatible server on 127.0.0.1, owned by this test file. */
async function startFakeServer(): Promise<{
  url: string;
  seen: SeenRequest[];
  respondWith(responder: Responder): void;
  close(): Promise<void>;
}> {
  const seen: SeenRequest[] = [];
  let responder: Responder = (_request, response) => json(response, 500, { error: { message: "no responder" } });
  const server = http.createServer((request, response) => {
    const closed = new Promise<{ finished: boolean }>((resolve) => {
      response.once("close", () => resolve({ finished: response.writableFinished }));
    });
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const entry: SeenRequest = {
        method: request.method ?? "",
        path: request.url ?? "",
        headers: request.headers,
        body: text === "" ? undefined : JSON.parse(text),
        closed,
      };
      seen.push(entry);
      responder(entry, response);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    respondWith(next) {
      responder = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function json(response: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  response.writeHead(status, { "Content-Type": "application/json", ...headers });
  response.end(text);
}

function completion(message: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: "chatcmpl-1",
    object: "chat.completion",
    model: "gpt-test-2025",
    choices: [{ index: 0, message: { role: "assistant", ...message }, finish_reason: "stop" }],
    usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 },
    ...extra,
  };
}

function context(overrides: Partial<ModelCallContext> = {}): ModelCallContext {
  return { signal: new AbortController().signal, idempotencyKey: "tsr-key-1", ...overrides };
}

const hello: ModelRequest = { messages: [{ role: "user", content: "Hello" }] };

async function rejection(promise: Promise<unknown>): Promise<AgentError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(AgentError);
    return error as AgentError;
  }
  throw new Error("expected the promise to reject");
}

/** Resolves with the value, or rejects if it takes longer than `ms`: tests never wait unbounded. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe("createOpenAiCompatibleModel", () => {
  let server: Awaited<ReturnType<typeof startFakeServer>>;

  beforeAll(async () => {
    server = await startFakeServer();
  });
  afterAll(async () => {
    await server.close();
  });
  afterEach(() => {
    server.seen.length = 0;
  });

  describe("request", () => {
    it("POSTs chat completions with tools, tool-call history and tool results in OpenAI's shape", async () => {
      server.respondWith((_request, response) => json(response, 200, completion({ content: "ok" })));
      const model = createOpenAiCompatibleModel({
        baseUrl: `${server.url}/v1/`,
        apiKey: "sk-test",
        model: "gpt-default",
      });
      await model.complete(
        {
          messages: [
            { role: "system", content: "Be brief." },
            { role: "user", content: "Refund order o-1" },
            {
              role: "assistant",
              content: null,
              toolCalls: [{ id: "call_a", name: "refund", arguments: { orderId: "o-1", amount: 20 } }],
            },
            { role: "tool", content: '{"ok":true}', toolCallId: "call_a" },
          ],
          tools: [
            {
              name: "refund",
              description: "Refunds an order",
              parameters: { type: "object", properties: { orderId: { type: "string" } }, required: ["orderId"] },
            },
          ],
          temperature: 0.2,
          maxTokens: 256,
        },
        context(),
      );
      expect(server.seen).toHaveLength(1);
      const seen = server.seen[0]!;
      expect(seen.method).toBe("POST");
      expect(seen.path).toBe("/v1/chat/completions");
      expect(seen.body).toEqual({
        model: "gpt-default",
        stream: false,
        temperature: 0.2,
        max_tokens: 256,
        messages: [
          { role: "system", content: "Be brief." },
          { role: "user", content: "Refund order o-1" },
          {
            role: "assistant",
            content: null,
            tool_calls: [
              {
                id: "call_a",
                type: "function",
                function: { name: "refund", arguments: '{"orderId":"o-1","amount":20}' },
              },
            ],
          },
          { role: "tool", content: '{"ok":true}', tool_call_id: "call_a" },
        ],
        tools: [
          {
            type: "function",
            function: {
              name: "refund",
              description: "Refunds an order",
              parameters: { type: "object", properties: { orderId: { type: "string" } }, required: ["orderId"] },
            },
          },
        ],
      });
    });

    it("sends the idempotency key, the bearer token, JSON content type and extra headers", async () => {
      server.respondWith((_request, response) => json(response, 200, completion({ content: "ok" })));
      const model = createOpenAiCompatibleModel({
        baseUrl: server.url,
        apiKey: "sk-secret",
        model: "m",
        headers: { "X-Gateway-Tenant": "acme", "Idempotency-Key": "must-be-overridden" },
      });
      await model.complete(hello, context({ idempotencyKey: "tsr-effect-42" }));
      const headers = server.seen[0]!.headers;
      expect(headers["idempotency-key"]).toBe("tsr-effect-42");
      expect(headers.authorization).toBe("Bearer sk-secret");
      expect(headers["content-type"]).toBe("application/json");
      expect(headers["x-gateway-tenant"]).toBe("acme");
    });

    it("sends no Authorization header without an apiKey, omits empty tools and uses the request's model", async () => {
      server.respondWith((_request, response) => json(response, 200, completion({ content: "ok" })));
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      await model.complete({ ...hello, model: "override", tools: [] }, context());
      const seen = server.seen[0]!;
      expect(seen.headers.authorization).toBeUndefined();
      expect(seen.body).toEqual({ model: "override", stream: false, messages: [{ role: "user", content: "Hello" }] });
    });

    it("refuses, as a programmer bug, a tool message without toolCallId", async () => {
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      const error = await rejection(model.complete({ messages: [{ role: "tool", content: "x" }] }, context()));
      expect(error.code).toBe("ERR_INVARIANT");
      expect(server.seen).toHaveLength(0);
    });
  });

  describe("response", () => {
    it("parses tool calls, maps usage and keeps the reported model and finish reason", async () => {
      server.respondWith((_request, response) =>
        json(response, 200, {
          model: "gpt-test-2025",
          choices: [
            {
              index: 0,
              message: {
                role: "assistant",
                content: null,
                tool_calls: [
                  {
                    id: "call_x",
                    type: "function",
                    function: { name: "lookup", arguments: '{"orderId":"o-9","deep":{"a":[1,2]}}' },
                  },
                  { id: "call_y", type: "function", function: { name: "now", arguments: "" } },
                ],
              },
              finish_reason: "tool_calls",
            },
          ],
          usage: { prompt_tokens: 40, completion_tokens: 7, total_tokens: 47 },
        }),
      );
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      const reply = await model.complete(hello, context());
      const toolCalls = [
        { id: "call_x", name: "lookup", arguments: { orderId: "o-9", deep: { a: [1, 2] } } },
        { id: "call_y", name: "now", arguments: {} },
      ];
      expect(reply).toEqual({
        message: { role: "assistant", content: null, toolCalls },
        toolCalls,
        finishReason: "tool_calls",
        usage: { inputTokens: 40, outputTokens: 7 },
        model: "gpt-test-2025",
      });
    });

    it("returns text replies without toolCalls on the message, and zero usage when the server reports none", async () => {
      server.respondWith((_request, response) =>
        json(response, 200, { choices: [{ message: { role: "assistant", content: "Hi!" }, finish_reason: null }] }),
      );
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      const reply = await model.complete(hello, context());
      expect(reply).toEqual({
        message: { role: "assistant", content: "Hi!" },
        toolCalls: [],
        finishReason: "stop",
        usage: { inputTokens: 0, outputTokens: 0 },
        model: "m",
      });
    });

    it("fails non-retryably, with details, on tool-call arguments that are not JSON", async () => {
      server.respondWith((_request, response) =>
        json(
          response,
          200,
          completion({
            content: null,
            tool_calls: [{ id: "call_bad", type: "function", function: { name: "refund", arguments: '{"orderId": "o-1"' } }],
          }),
        ),
      );
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      const error = await rejection(model.complete(hello, context()));
      expect(error.code).toBe("ERR_MODEL");
      expect(error.retryable).toBe(false);
      expect(error.details).toEqual({ tool: "refund", toolCallId: "call_bad", arguments: '{"orderId": "o-1"' });
      expect(error.cause).toBeInstanceOf(SyntaxError);
    });

    it.each([
      ["a body that is not JSON", "<html>oops</html>"],
      ["a body without choices", { id: "x", object: "chat.completion" }],
      ["empty choices", { choices: [] }],
      ["a tool call without an id", { choices: [{ message: { tool_calls: [{ function: { name: "f", arguments: "{}" } }] } }] }],
      ["an error object with status 200", { error: { message: "context length exceeded" } }],
    ])("fails non-retryably on %s", async (_what, body) => {
      server.respondWith((_request, response) => json(response, 200, body));
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      const error = await rejection(model.complete(hello, context()));
      expect(error.code).toBe("ERR_MODEL");
      expect(error.retryable).toBe(false);
    });

    it("names the provider's error and lists the zod issues when a 2xx body is an error object", async () => {
      server.respondWith((_request, response) => json(response, 200, { error: { message: "context length exceeded" } }));
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      const error = await rejection(model.complete(hello, context()));
      expect(error.message).toContain("context length exceeded");
      expect(error.details.issues).toEqual(expect.arrayContaining([expect.objectContaining({ path: "choices" })]));
    });

    it("refuses a response larger than responseBytesMax, non-retryably", async () => {
      server.respondWith((_request, response) => json(response, 200, completion({ content: "x".repeat(10_000) })));
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m", responseBytesMax: 1024 });
      const error = await rejection(model.complete(hello, context()));
      expect(error.code).toBe("ERR_MODEL");
      expect(error.retryable).toBe(false);
      expect(error.details).toEqual({ limit: "responseBytesMax", max: 1024 });
    });
  });

  describe("HTTP errors", () => {
    it("makes 429 retryable and keeps the status, the provider's message and Retry-After", async () => {
      server.respondWith((_request, response) =>
        json(response, 429, { error: { message: "Rate limit reached", type: "requests" } }, { "Retry-After": "3" }),
      );
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      const error = await rejection(model.complete(hello, context()));
      expect(error.code).toBe("ERR_MODEL");
      expect(error.retryable).toBe(true);
      expect(error.details).toEqual({ status: 429, providerMessage: "Rate limit reached", retryAfterMs: 3000 });
    });

    it.each([500, 502, 503])("makes %i retryable", async (status) => {
      server.respondWith((_request, response) => json(response, status, "upstream exploded"));
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      const error = await rejection(model.complete(hello, context()));
      expect(error.code).toBe("ERR_MODEL");
      expect(error.retryable).toBe(true);
      expect(error.details).toEqual({ status, providerMessage: "upstream exploded" });
    });

    it.each([400, 401, 404, 422])("makes %i non-retryable", async (status) => {
      server.respondWith((_request, response) => json(response, status, { error: { message: "bad request" } }));
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      const error = await rejection(model.complete(hello, context()));
      expect(error.code).toBe("ERR_MODEL");
      expect(error.retryable).toBe(false);
      expect(error.details.status).toBe(status);
      expect(error.message).toContain("bad request");
    });

    it("does not follow redirects: a 3xx is a non-retryable error", async () => {
      server.respondWith((_request, response) => {
        response.writeHead(307, { Location: "http://127.0.0.1:1/elsewhere" });
        response.end();
      });
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      const error = await rejection(model.complete(hello, context()));
      expect(error.retryable).toBe(false);
      expect(error.details.status).toBe(307);
      expect(server.seen).toHaveLength(1);
    });

    it("makes a refused connection a retryable network error", async () => {
      const gone = await startFakeServer();
      await gone.close();
      const model = createOpenAiCompatibleModel({ baseUrl: gone.url, model: "m" });
      const error = await rejection(model.complete(hello, context()));
      expect(error.code).toBe("ERR_MODEL");
      expect(error.retryable).toBe(true);
      expect(error.details).toEqual({ reason: "network", causeCode: "ECONNREFUSED" });
    });
  });

  describe("cancellation", () => {
    it("cancels the HTTP request when the timeout fires, and the server sees the connection close", async () => {
      server.respondWith(() => undefined); // Never answers.
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m", requestTimeoutMs: 150 });
      const error = await rejection(model.complete(hello, context()));
      expect(error.code).toBe("ERR_MODEL");
      expect(error.retryable).toBe(true);
      expect(error.details).toEqual({ reason: "timeout", timeoutMs: 150 });
      expect(server.seen).toHaveLength(1);
      await expect(within(server.seen[0]!.closed, 2_000)).resolves.toEqual({ finished: false });
    });

    it("cancels when the body stalls after the headers, since the timeout covers the whole call", async () => {
      server.respondWith((_request, response) => {
        response.writeHead(200, { "Content-Type": "application/json" });
        response.write('{"choices": [');
      });
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m", requestTimeoutMs: 150 });
      const error = await rejection(model.complete(hello, context()));
      expect(error.details.reason).toBe("timeout");
      await expect(within(server.seen[0]!.closed, 2_000)).resolves.toEqual({ finished: false });
    });

    it("cancels the HTTP request when the caller aborts, with ERR_ABORTED and the caller's reason", async () => {
      const caller = new AbortController();
      server.respondWith(() => caller.abort(new Error("node shutting down")));
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m", requestTimeoutMs: 30_000 });
      const error = await rejection(model.complete(hello, context({ signal: caller.signal })));
      expect(error.code).toBe("ERR_ABORTED");
      expect(error.retryable).toBe(false);
      expect((error.cause as Error).message).toBe("node shutting down");
      await expect(within(server.seen[0]!.closed, 2_000)).resolves.toEqual({ finished: false });
    });

    it("does not send anything when the caller's signal is already aborted", async () => {
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m" });
      const error = await rejection(model.complete(hello, context({ signal: AbortSignal.abort() })));
      expect(error.code).toBe("ERR_ABORTED");
      expect(server.seen).toHaveLength(0);
    });

    it("leaves no listener on the caller's signal after success, HTTP errors and timeouts", async () => {
      const caller = new AbortController();
      const model = createOpenAiCompatibleModel({ baseUrl: server.url, model: "m", requestTimeoutMs: 100 });
      server.respondWith((_request, response) => json(response, 200, completion({ content: "ok" })));
      for (let i = 0; i < 20; i++) await model.complete(hello, context({ signal: caller.signal }));
      server.respondWith((_request, response) => json(response, 503, "busy"));
      await rejection(model.complete(hello, context({ signal: caller.signal })));
      server.respondWith(() => undefined);
      await rejection(model.complete(hello, context({ signal: caller.signal })));
      expect(getEventListeners(caller.signal, "abort")).toHaveLength(0);
    });
  });

  describe("options", () => {
    it.each([
      ["baseUrl", { baseUrl: "not a url", model: "m" }],
      ["baseUrl", { baseUrl: "ftp://example.com", model: "m" }],
      ["model", { baseUrl: "http://127.0.0.1", model: "" }],
      ["requestTimeoutMs", { baseUrl: "http://127.0.0.1", model: "m", requestTimeoutMs: 0 }],
      ["requestTimeoutMs", { baseUrl: "http://127.0.0.1", model: "m", requestTimeoutMs: Number.POSITIVE_INFINITY }],
      ["apiKey", { baseUrl: "http://127.0.0.1", model: "m", apiKey: "" }],
      ["headers.bad header", { baseUrl: "http://127.0.0.1", model: "m", headers: { "bad header": "x" } }],
      ["timeoutMs", { baseUrl: "http://127.0.0.1", model: "m", timeoutMs: 5 }],
    ])("rejects a bad %s with a ConfigError naming it", (path, options) => {
      let caught: unknown;
      try {
        createOpenAiCompatibleModel(options as never);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      const error = caught as ConfigError;
      expect(error.code).toBe("ERR_CONFIG");
      const issues = error.details.issues as Array<{ path: string; code: string }>;
      expect(issues.length).toBeGreaterThan(0);
      const named = issues.some((issue) => issue.path === path || (issue.code === "unrecognized_keys" && path === "timeoutMs"));
      expect(named).toBe(true);
    });
  });
});
