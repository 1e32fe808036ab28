import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createNatsTransport } from "../../actors/transport/nats/index.js";
import type { NatsTransport, NatsTransportOptions } from "../../actors/transport/nats/index.js";
import { AgentError, ConfigError } from "../../core/errors.js";
import { describeTransportConformance } from "../conformance/transport.suite.js";
import { bytes, expectCode, sleep, text, trackTransports, waitFor } from "../conformance/transport-fixtures.js";
import { createPrivateNatsServer } from "../helpers/private-nats-server.js";
import type { PrivateNatsServer } from "../helpers/private-nats-server.js";
import { createPartitionProxy } from "../helpers/partition-proxy.js";
import { natsUrl } from "../helpers/services.js";

const quiet = { onError: () => {} };

describeTransportConformance("nats", async () =>
  trackTransports(async (subjectPrefix, options) =>
    createNatsTransport({ servers: natsUrl, subjectPrefix, name: subjectPrefix, ...options }),
  ),
);

describe("NATS transport", () => {
  const opened: NatsTransport[] = [];
  const open = async (options: Partial<NatsTransportOptions> = {}): Promise<NatsTransport> => {
    const transport = await createNatsTransport({
      servers: natsUrl,
      subjectPrefix: `t_${Math.random().toString(36).slice(2, 10)}`,
      ...options,
    });
    opened.push(transport);
    return transport;
  };
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((t) => t.close()));
  });

  // The test's own timeout is the guard that connecting gives up: a hang fails it.
  it("gives up with ERR_TRANSPORT naming the URL and how to start NATS when nothing listens", { timeout: 10_000 }, async () => {
    const error = await expectCode(createNatsTransport({ servers: "nats://127.0.0.1:1", connectTimeoutMs: 1000 }), "ERR_TRANSPORT");
    expect(error.message).toContain("nats://127.0.0.1:1");
    expect(error.message).toContain("nats-server");
    expect(error.retryable).toBe(true);
    expect(error.cause).toBeInstanceOf(Error);
  });

  it("gives up a server that accepts TCP but never speaks NATS", { timeout: 10_000 }, async () => {
    const net = await import("node:net");
    const silent = net.createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const error = await expectCode(createNatsTransport({ servers: `127.0.0.1:${port}`, connectTimeoutMs: 500 }), "ERR_TRANSPORT");
      expect(error.message).toContain(`127.0.0.1:${port}`);
    } finally {
      silent.close();
    }
  });

  it("rejects bad options with ConfigError naming the option's path", async () => {
    const config = async (options: unknown): Promise<ConfigError> => {
      const error = await createNatsTransport(options as NatsTransportOptions).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ConfigError);
      return error as ConfigError;
    };
    expect((await config({ servers: [] })).details).toMatchObject({ issues: [{ path: "servers" }] });
    expect((await config({ servers: natsUrl, reconnect: { waitMs: 0 } })).message).toContain("reconnect.waitMs");
    expect((await config({ servers: natsUrl, reconnect: { attemptsMax: -2 } })).message).toContain("reconnect.attemptsMax");
    expect((await config({ servers: natsUrl, subjectPrefix: "a.>" })).message).toContain("subjectPrefix");
    expect((await config({ servers: natsUrl, connectTimeoutMs: "2s" })).message).toContain("connectTimeoutMs");
    expect((await config({ servers: natsUrl, surprise: 1 })).code).toBe("ERR_CONFIG");
  });

  it("reports its status and refuses what is above the server's max_payload even without payloadBytesMax", async () => {
    const transport = await open({ payloadBytesMax: 64 * 1024 * 1024 });
    const status = transport.status();
    expect(status).toMatchObject({ state: "connected", disconnects: 0, reconnects: 0 });
    expect(status.serverPayloadBytesMax).toBeGreaterThan(0);
    const error = await expectCode(transport.publish("big", new Uint8Array(status.serverPayloadBytesMax + 1)), "ERR_PAYLOAD_TOO_LARGE");
    expect(error.details).toMatchObject({ limit: "max_payload", max: status.serverPayloadBytesMax });
    await transport.close();
    expect(transport.status().state).toBe("closed");
  });

  it("keeps the NATS error as the cause of a translated error", async () => {
    const transport = await open();
    const error = await expectCode(transport.request("nobody", bytes(""), { timeoutMs: 1000 }), "ERR_NO_RESPONDERS");
    expect((error.cause as Error).constructor.name).toBe("NoRespondersError");
    await transport.close();
    const closed = await expectCode(transport.publish("x", bytes("")), "ERR_TRANSPORT_CLOSED");
    expect(closed).toBeInstanceOf(AgentError);
  });
});

describe("NATS transport across a server crash", () => {
  let server: PrivateNatsServer;
  const opened: NatsTransport[] = [];
  beforeAll(async () => {
    server = await createPrivateNatsServer();
    await server.start();
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((t) => t.close()));
  });
  afterAll(async () => {
    await server?.dispose();
  });
  const open = async (options: Partial<NatsTransportOptions> = {}): Promise<NatsTransport> => {
    const transport = await createNatsTransport({
      servers: server.url,
      subjectPrefix: "crash",
      reconnect: { waitMs: 100, jitterMs: 0, attemptsMax: 600 },
      ...quiet,
      ...options,
    });
    opened.push(transport);
    return transport;
  };

  it("reconnects after SIGKILL and a restart on the same port; subscriptions resume; messages published while down are counted", async () => {
    const [publisher, subscriber] = [await open({ name: "publisher" }), await open({ name: "subscriber" })];
    const received = new Set<number>();
    subscriber.subscribe("ticks", (m) => void received.add(Number(text(m))));
    subscriber.subscribe("svc", (m) => void m.respond(bytes(`pong:${text(m)}`)), { queue: "svc" });
    await subscriber.flush();
    for (let i = 0; i < 100; i++) await publisher.publish("ticks", bytes(String(i)));
    await publisher.flush();
    await waitFor(() => received.size === 100, "100 messages before the crash");

    await server.kill();
    await waitFor(
      () => publisher.status().state === "reconnecting" && subscriber.status().state === "reconnecting",
      "both clients to notice",
    );
    const outage = { accepted: 0, refused: 0, codes: new Set<string>() };
    for (let i = 100; i < 200; i++) {
      await publisher.publish("ticks", bytes(String(i))).then(
        () => outage.accepted++,
        (error: AgentError) => {
          outage.refused++;
          outage.codes.add(error.code);
        },
      );
      await sleep(5);
    }
    const requestWhileDown = await publisher.request("svc", bytes("down"), { timeoutMs: 300 }).then(
      () => "answered",
      (error: AgentError) => error.code,
    );
    const flushWhileDown = publisher.flush().then(
      () => "flushed",
      (error: AgentError) => error.code,
    );

    await server.start();
    await waitFor(
      () => publisher.status().state === "connected" && subscriber.status().state === "connected",
      "both clients to reconnect",
      15_000,
    );
    await subscriber.flush();
    for (let i = 200; i < 300; i++) await publisher.publish("ticks", bytes(String(i)));
    await publisher.flush();
    await waitFor(() => [...received].filter((n) => n >= 200).length === 100, "100 messages after the restart", 10_000);
    const reply = await publisher.request("svc", bytes("up"), { timeoutMs: 2000 });
    expect(text(reply)).toBe("pong:up");

    const report = {
      publishedWhileDown: 100,
      accepted: outage.accepted,
      refused: outage.refused,
      refusedCodes: [...outage.codes],
      deliveredFromOutage: [...received].filter((n) => n >= 100 && n < 200).length,
      requestWhileDown,
      flushWhileDown: await flushWhileDown,
    };
    console.log(`NATS crash report: ${JSON.stringify(report)}`);
    // Once the client knows the server is gone, nothing is accepted and silently lost: every publish is refused, retryably.
    expect(report).toMatchObject({ accepted: 0, refused: 100, refusedCodes: ["ERR_TRANSPORT"], deliveredFromOutage: 0 });
    expect(requestWhileDown).toBe("ERR_TRANSPORT");
    expect(report.flushWhileDown).toBe("ERR_TRANSPORT");
    expect(publisher.status()).toMatchObject({ disconnects: 1, reconnects: 1 });
    expect(subscriber.status()).toMatchObject({ disconnects: 1, reconnects: 1 });
  });

  it("detects a silent partition by pings, refuses publishing until it reconnects, and counts what it accepted meanwhile", async () => {
    const proxy = await createPartitionProxy(server.port);
    try {
      const publisher = await open({
        servers: `nats://127.0.0.1:${proxy.port}`,
        pingIntervalMs: 200,
        pingsOutstandingMax: 2,
        connectTimeoutMs: 500,
      });
      const subscriber = await open();
      const received = new Set<number>();
      subscriber.subscribe("beats", (m) => void received.add(Number(text(m))));
      await subscriber.flush();
      await publisher.publish("beats", bytes("0"));
      await waitFor(() => received.has(0), "a message before the partition");

      proxy.partition();
      const partitionedAt = Date.now();
      let accepted = 0;
      let sequence = 1;
      while (publisher.status().state === "connected" && Date.now() - partitionedAt < 10_000) {
        await publisher.publish("beats", bytes(String(sequence++)));
        accepted++;
        await sleep(10);
      }
      const detectionMs = Date.now() - partitionedAt;
      const refused = await expectCode(publisher.publish("beats", bytes("refused")), "ERR_TRANSPORT");
      proxy.heal();
      await waitFor(() => publisher.status().state === "connected", "the publisher to reconnect", 15_000);
      await publisher.publish("beats", bytes("100000"));
      await waitFor(() => received.has(100_000), "a message after the partition", 5000);
      const delivered = [...received].filter((n) => n > 0 && n < 100_000).length;
      console.log(
        `NATS partition report: ${JSON.stringify({ detectionMs, acceptedBeforeDetection: accepted, deliveredOfThose: delivered, lost: accepted - delivered })}`,
      );
      expect(refused.retryable).toBe(true);
      expect(delivered).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  it("resolves closed() to the error that closed it when reconnecting gives up", async () => {
    const transport = await open({ reconnect: { waitMs: 50, jitterMs: 0, attemptsMax: 3 } });
    await server.kill();
    const error = await transport.closed();
    await server.start();
    expect(error).toBeInstanceOf(AgentError);
    expect((error as AgentError).code).toBe("ERR_TRANSPORT");
    expect((error as AgentError).cause).toBeInstanceOf(Error);
    expect(transport.status().state).toBe("closed");
    await expectCode(transport.publish("x", bytes("")), "ERR_TRANSPORT_CLOSED");
    await transport.close();
  });
});
