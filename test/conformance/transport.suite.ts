import { ROOT_CONTEXT, propagation, trace, TraceFlags } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { extractTraceContext, injectTraceHeaders } from "../../actors/transport/index.js";
import type { TransportMessage } from "../../core/ports/transport.js";
import { describeDelivery, describeLifecycle } from "./transport-lifecycle.suite.js";
import { bytes, collector, expectCode, expectThrowsCode, sleep, text, waitFor } from "./transport-fixtures.js";
import type { MakeTransportFixture, TransportFixture } from "./transport-fixtures.js";

/** What every test of the suite shares: the fixture made for it. */
export interface TransportContext {
  fixture: TransportFixture;
}

/**
 * The conformance suite of the `Transport` port. Every adapter runs it; each test gets a fresh
 * fixture with a unique subject prefix, and the suite closes every transport it made.
 *
 * @param name - the adapter, for test names
 * @param makeFixture - makes the fixture of one test
 * @example
 * ```ts
 * describeTransportConformance("in-process", async () => {
 *   const bus = createInProcessBus();
 *   return trackTransports(async (subjectPrefix, options) => createInProcessTransport({ bus, subjectPrefix, ...options }));
 * });
 * ```
 */
export function describeTransportConformance(name: string, makeFixture: MakeTransportFixture): void {
  describe(`Transport conformance: ${name}`, () => {
    const ctx = {} as TransportContext;
    beforeAll(() => {
      propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    });
    afterAll(() => {
      propagation.disable();
    });
    beforeEach(async () => {
      ctx.fixture = await makeFixture();
    });
    afterEach(async () => {
      await ctx.fixture.cleanup();
    });

    describePublishSubscribe(ctx);
    describeRequests(ctx);
    describeHeadersAndLimits(ctx);
    describeLifecycle(ctx);
    describeDelivery(ctx);
  });
}

function describePublishSubscribe(ctx: TransportContext): void {
  describe("publish and subscribe", () => {
    it("delivers to a subscriber on another transport, subject without the prefix, never inside publish", async () => {
      const [publisher, subscriber] = [await ctx.fixture.make(), await ctx.fixture.make()];
      const received = collector();
      subscriber.subscribe("wake.a1", received.handler);
      await subscriber.flush();
      const publishing = publisher.publish("wake.a1", bytes("hello"));
      expect(received.messages).toHaveLength(0);
      await publishing;
      await waitFor(() => received.messages.length === 1, "the message");
      const [message] = received.messages as [TransportMessage];
      expect(message.subject).toBe("wake.a1");
      expect(text(message)).toBe("hello");
      expect(message.headers).toEqual({});
      expect(message.respond(bytes("nobody asked"))).toBe(false);
    });

    it("matches '*' against exactly one token and '>' against one or more", async () => {
      const transport = await ctx.fixture.make();
      const star = collector();
      const tail = collector();
      const exact = collector();
      transport.subscribe("a.*", star.handler);
      transport.subscribe("a.>", tail.handler);
      transport.subscribe("a.b", exact.handler);
      transport.subscribe("*.*.c", star.handler);
      for (const subject of ["a", "a.b", "a.b.c", "b.b", "x.y.c"]) await transport.publish(subject, bytes(subject));
      await transport.publish("done", bytes(""));
      await waitFor(() => tail.messages.length === 2 && star.messages.length === 3, "wildcard deliveries");
      await sleep(50);
      expect(star.messages.map((m) => m.subject).sort()).toEqual(["a.b", "a.b.c", "x.y.c"]);
      expect(tail.messages.map((m) => m.subject)).toEqual(["a.b", "a.b.c"]);
      expect(exact.messages.map((m) => m.subject)).toEqual(["a.b"]);
    });

    it("gives each message to exactly one member of a queue group, spreads the load, and every plain subscriber gets all", async () => {
      const [first, second] = [await ctx.fixture.make(), await ctx.fixture.make()];
      const members = [collector(), collector(), collector()];
      first.subscribe("tools.search", members[0]!.handler, { queue: "workers" });
      first.subscribe("tools.search", members[1]!.handler, { queue: "workers" });
      second.subscribe("tools.*", members[2]!.handler, { queue: "workers" });
      const audit = collector();
      second.subscribe("tools.search", audit.handler);
      await Promise.all([first.flush(), second.flush()]);
      const count = 300;
      for (let i = 0; i < count; i++) await first.publish("tools.search", bytes(String(i)));
      await waitFor(
        () => members.reduce((n, m) => n + m.messages.length, 0) === count && audit.messages.length === count,
        "all deliveries",
      );
      await sleep(50);
      const seen = members.flatMap((m) => m.messages.map(text));
      expect(seen).toHaveLength(count);
      expect(new Set(seen).size).toBe(count);
      for (const member of members) expect(member.messages.length).toBeGreaterThan(count / 10);
    });

    it("stops delivery after unsubscribe, and unsubscribe is idempotent", async () => {
      const transport = await ctx.fixture.make();
      const received = collector();
      const subscription = transport.subscribe("events", received.handler);
      await transport.publish("events", bytes("1"));
      await waitFor(() => received.messages.length === 1, "the first message");
      subscription.unsubscribe();
      subscription.unsubscribe();
      await transport.publish("events", bytes("2"));
      await transport.flush();
      await sleep(50);
      expect(received.messages.map(text)).toEqual(["1"]);
    });

    it("refuses invalid subjects and queue names with ERR_VALIDATION", async () => {
      const transport = await ctx.fixture.make();
      for (const subject of ["", "a..b", "a.*", "a.>", "a b", ".a", "a."])
        await expectCode(transport.publish(subject, bytes("x")), "ERR_VALIDATION");
      for (const subject of ["", "a.>.b", "a..b", "a*.b"]) expectThrowsCode(() => transport.subscribe(subject, () => {}), "ERR_VALIDATION");
      expectThrowsCode(() => transport.subscribe("a", () => {}, { queue: "two words" }), "ERR_VALIDATION");
      await expectCode(transport.request("a.*", bytes("x"), { timeoutMs: 100 }), "ERR_VALIDATION");
    });
  });
}

function describeRequests(ctx: TransportContext): void {
  describe("request and reply", () => {
    it("returns the first reply with its headers", async () => {
      const [client, server] = [await ctx.fixture.make(), await ctx.fixture.make()];
      server.subscribe("echo", (m) => void m.respond(bytes(`echo:${text(m)}`), { headers: { "tessera-status": "ok" } }), { queue: "echo" });
      await server.flush();
      const reply = await client.request("echo", bytes("hi"), { timeoutMs: 2000, headers: { "tessera-id": "r1" } });
      expect(text(reply)).toBe("echo:hi");
      expect(reply.headers["tessera-status"]).toBe("ok");
      expect(reply.respond(bytes("x"))).toBe(false);
    });

    it("passes the request's headers to the responder", async () => {
      const transport = await ctx.fixture.make();
      transport.subscribe("who", (m) => void m.respond(bytes(m.headers["tessera-tenant"] ?? "none")));
      const reply = await transport.request("who", bytes(""), { timeoutMs: 2000, headers: { "tessera-tenant": "acme" } });
      expect(text(reply)).toBe("acme");
    });

    it("times out with ERR_TIMEOUT when nobody answers, and a late answer is dropped", async () => {
      const transport = await ctx.fixture.make();
      const held: TransportMessage[] = [];
      transport.subscribe("slow", (m) => void held.push(m));
      const started = Date.now();
      const error = await expectCode(transport.request("slow", bytes(""), { timeoutMs: 150 }), "ERR_TIMEOUT");
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(140);
      expect(elapsed).toBeLessThan(2000);
      expect(error.retryable).toBe(true);
      expect(held).toHaveLength(1);
      expect(held[0]!.respond(bytes("too late"))).toBe(true);
      await transport.flush();
    });

    it("fails at once with ERR_NO_RESPONDERS when nobody subscribes", async () => {
      const transport = await ctx.fixture.make();
      const started = Date.now();
      await expectCode(transport.request("nobody.home", bytes(""), { timeoutMs: 5000 }), "ERR_NO_RESPONDERS");
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it("abandons a request when its signal aborts, with the signal's reason", async () => {
      const transport = await ctx.fixture.make();
      transport.subscribe("never", () => {});
      const controller = new AbortController();
      const pending = transport.request("never", bytes(""), { timeoutMs: 10_000, signal: controller.signal });
      setTimeout(() => controller.abort(new Error("caller gave up")), 20);
      await expect(pending).rejects.toThrow("caller gave up");
      const aborted = AbortSignal.abort(new Error("already"));
      await expect(transport.request("never", bytes(""), { timeoutMs: 1000, signal: aborted })).rejects.toThrow("already");
    });

    it("refuses a missing or non-positive timeout and one above requestTimeoutMsMax", async () => {
      const transport = await ctx.fixture.make({ requestTimeoutMsMax: 1000 });
      transport.subscribe("svc", (m) => void m.respond(bytes("")));
      await expectCode(transport.request("svc", bytes(""), { timeoutMs: 0 }), "ERR_VALIDATION");
      await expectCode(transport.request("svc", bytes(""), { timeoutMs: 1.5 }), "ERR_VALIDATION");
      await expectCode(transport.request("svc", bytes(""), {} as { timeoutMs: number }), "ERR_VALIDATION");
      const error = await expectCode(transport.request("svc", bytes(""), { timeoutMs: 1001 }), "ERR_LIMIT_EXCEEDED");
      expect(error.details).toMatchObject({ limit: "requestTimeoutMsMax", max: 1000, actual: 1001 });
    });
  });
}

function describeHeadersAndLimits(ctx: TransportContext): void {
  describe("headers and limits", () => {
    it("carries headers both ways, trace context included", async () => {
      const [publisher, subscriber] = [await ctx.fixture.make(), await ctx.fixture.make()];
      const received = collector();
      subscriber.subscribe("traced", received.handler);
      await subscriber.flush();
      const spanContext = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: TraceFlags.SAMPLED };
      const headers = injectTraceHeaders(
        { "tessera-message-id": "m-1", "Mixed-Case": "Value with spaces" },
        trace.setSpanContext(ROOT_CONTEXT, spanContext),
      );
      expect(headers.traceparent).toBe("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
      await publisher.publish("traced", bytes("x"), { headers });
      await waitFor(() => received.messages.length === 1, "the traced message");
      const message = received.messages[0]!;
      expect(message.headers).toMatchObject({
        "tessera-message-id": "m-1",
        "Mixed-Case": "Value with spaces",
        traceparent: headers.traceparent,
      });
      const extracted = trace.getSpanContext(extractTraceContext(message.headers, ROOT_CONTEXT));
      expect(extracted).toMatchObject({ traceId: spanContext.traceId, spanId: spanContext.spanId, isRemote: true });
      expect(trace.getSpanContext(extractTraceContext({ Traceparent: headers.traceparent! }, ROOT_CONTEXT))?.traceId).toBe(
        spanContext.traceId,
      );
      expect(trace.getSpanContext(extractTraceContext({}, ROOT_CONTEXT))).toBeUndefined();
    });

    it("refuses header names and values NATS cannot carry", async () => {
      const transport = await ctx.fixture.make();
      await expectCode(transport.publish("h", bytes(""), { headers: { "bad:name": "v" } }), "ERR_VALIDATION");
      await expectCode(transport.publish("h", bytes(""), { headers: { "bad name": "v" } }), "ERR_VALIDATION");
      await expectCode(transport.publish("h", bytes(""), { headers: { ok: "line\r\nbreak" } }), "ERR_VALIDATION");
    });

    it("refuses a message above payloadBytesMax with ERR_PAYLOAD_TOO_LARGE, headers counted, and delivers one at the limit", async () => {
      const transport = await ctx.fixture.make({ payloadBytesMax: 1024 });
      const received = collector();
      transport.subscribe("big", received.handler);
      const error = await expectCode(transport.publish("big", new Uint8Array(1025)), "ERR_PAYLOAD_TOO_LARGE");
      expect(error.details).toMatchObject({ limit: "payloadBytesMax", max: 1024, actual: 1025 });
      await expectCode(transport.publish("big", new Uint8Array(1020), { headers: { a: "b" } }), "ERR_PAYLOAD_TOO_LARGE");
      await expectCode(transport.request("big", new Uint8Array(2048), { timeoutMs: 100 }), "ERR_PAYLOAD_TOO_LARGE");
      await transport.publish("big", new Uint8Array(1024).fill(7));
      await waitFor(() => received.messages.length === 1, "the message at the limit");
      expect(received.messages[0]!.data).toEqual(new Uint8Array(1024).fill(7));
    });

    it("refuses an oversized reply in respond() with ERR_PAYLOAD_TOO_LARGE", async () => {
      const transport = await ctx.fixture.make({ payloadBytesMax: 512 });
      const failures: unknown[] = [];
      transport.subscribe("svc", (m) => {
        try {
          m.respond(new Uint8Array(513));
        } catch (error) {
          failures.push(error);
          m.respond(bytes("small"));
        }
      });
      const reply = await transport.request("svc", bytes(""), { timeoutMs: 2000 });
      expect(text(reply)).toBe("small");
      expect(failures).toHaveLength(1);
      expect(failures[0]).toMatchObject({ code: "ERR_PAYLOAD_TOO_LARGE" });
    });
  });
}
