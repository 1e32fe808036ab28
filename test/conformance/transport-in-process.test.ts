import { describe, expect, it } from "vitest";
import { createInProcessBus, createInProcessTransport } from "../../actors/transport/index.js";
import { ConfigError } from "../../core/errors.js";
import { describeTransportConformance } from "./transport.suite.js";
import { bytes, collector, expectCode, trackTransports, waitFor } from "./transport-fixtures.js";

describeTransportConformance("in-process", async () => {
  const bus = createInProcessBus();
  return trackTransports(async (subjectPrefix, options) => createInProcessTransport({ bus, subjectPrefix, ...options }));
});

describe("in-process transport", () => {
  it("hands every message to its handlers by the time flush resolves", async () => {
    const transport = createInProcessTransport();
    const received = collector();
    transport.subscribe("a.>", received.handler);
    for (let i = 0; i < 5000; i++) await transport.publish(`a.${i}`, bytes(""));
    await transport.flush();
    expect(received.messages).toHaveLength(5000);
    await transport.close();
  });

  it("keeps transports with different prefixes apart on one bus", async () => {
    const bus = createInProcessBus();
    const acme = createInProcessTransport({ bus, subjectPrefix: "acme" });
    const globex = createInProcessTransport({ bus, subjectPrefix: "globex" });
    const received = collector();
    globex.subscribe(">", received.handler);
    await acme.publish("x", bytes(""));
    await expectCode(acme.request("x", bytes(""), { timeoutMs: 100 }), "ERR_NO_RESPONDERS");
    await globex.publish("y", bytes(""));
    await globex.flush();
    expect(received.messages.map((m) => m.subject)).toEqual(["y"]);
    expect(bus.subscriptionCount()).toBe(1);
    await Promise.all([acme.close(), globex.close()]);
    expect(bus.subscriptionCount()).toBe(0);
  });

  it("refuses publish with retryable ERR_TRANSPORT when the bus holds pendingDeliveriesMax messages", async () => {
    const bus = createInProcessBus({ pendingDeliveriesMax: 10 });
    const transport = createInProcessTransport({ bus });
    const received = collector();
    transport.subscribe("q", received.handler);
    for (let i = 0; i < 10; i++) await transport.publish("q", bytes(""));
    const error = await expectCode(transport.publish("q", bytes("")), "ERR_TRANSPORT");
    expect(error.retryable).toBe(true);
    await waitFor(() => received.messages.length === 10, "the queued messages");
    await transport.publish("q", bytes(""));
    await transport.close();
  });

  it("refuses publish with retryable ERR_TRANSPORT when the bus holds pendingBytesMax bytes", async () => {
    const bus = createInProcessBus({ pendingBytesMax: 100 });
    const transport = createInProcessTransport({ bus });
    transport.subscribe("q", () => {});
    await transport.publish("q", new Uint8Array(60));
    expect(bus.pendingBytes()).toBe(60);
    const error = await expectCode(transport.publish("q", new Uint8Array(60)), "ERR_TRANSPORT");
    expect(error.details).toMatchObject({ limit: "pendingBytesMax", max: 100, actual: 120 });
    await transport.flush();
    expect(bus.pendingBytes()).toBe(0);
    await transport.publish("q", new Uint8Array(60));
    await transport.close();
  });

  it("does not let the publisher's later writes change a delivered message", async () => {
    const transport = createInProcessTransport();
    const received = collector();
    transport.subscribe("m", received.handler);
    const data = bytes("before");
    await transport.publish("m", data);
    data.set(bytes("after!"));
    await transport.flush();
    expect(new TextDecoder().decode(received.messages[0]!.data)).toBe("before");
    await transport.close();
  });

  it("rejects bad options with ConfigError naming the option", () => {
    const bad = (options: unknown): ConfigError => {
      try {
        createInProcessTransport(options as never);
      } catch (error) {
        return error as ConfigError;
      }
      throw new Error("expected a ConfigError");
    };
    expect(bad({ payloadBytesMax: 0 })).toMatchObject({ code: "ERR_CONFIG", details: { issues: [{ path: "payloadBytesMax" }] } });
    expect(bad({ subjectPrefix: "a.*" })).toMatchObject({ code: "ERR_CONFIG", details: { issues: [{ path: "subjectPrefix" }] } });
    expect(bad({ surprise: true }).code).toBe("ERR_CONFIG");
    expect(() => createInProcessBus({ pendingDeliveriesMax: -1 })).toThrow(ConfigError);
  });
});
