import { describe, expect, it } from "vitest";
import type { TransportErrorContext } from "../../actors/transport/index.js";
import type { TransportContext } from "./transport.suite.js";
import { bytes, collector, expectCode, expectThrowsCode, sleep, text, waitFor } from "./transport-fixtures.js";

/** Close, closed() and what a closed transport refuses. */
export function describeLifecycle(ctx: TransportContext): void {
  describe("lifecycle", () => {
    it("closes idempotently; closed() resolves to undefined after a close() and never rejects", async () => {
      const transport = await ctx.fixture.make();
      let settled = false;
      const closed = transport.closed().then((value) => {
        settled = true;
        return value;
      });
      await sleep(10);
      expect(settled).toBe(false);
      await Promise.all([transport.close(), transport.close()]);
      await transport.close();
      await expect(closed).resolves.toBeUndefined();
      await expect(transport.closed()).resolves.toBeUndefined();
    });

    it("refuses publish, request and flush with ERR_TRANSPORT_CLOSED after close, and subscribe throws it", async () => {
      const transport = await ctx.fixture.make();
      await transport.close();
      const error = await expectCode(transport.publish("x", bytes("")), "ERR_TRANSPORT_CLOSED");
      expect(error.retryable).toBe(false);
      await expectCode(transport.request("x", bytes(""), { timeoutMs: 100 }), "ERR_TRANSPORT_CLOSED");
      await expectCode(transport.flush(), "ERR_TRANSPORT_CLOSED");
      expectThrowsCode(() => transport.subscribe("x", () => {}), "ERR_TRANSPORT_CLOSED");
    });

    it("rejects a pending request with ERR_TRANSPORT_CLOSED when the transport closes", async () => {
      const transport = await ctx.fixture.make();
      transport.subscribe("never", () => {});
      const pending = transport.request("never", bytes(""), { timeoutMs: 10_000 });
      await sleep(20);
      await transport.close();
      await expectCode(pending, "ERR_TRANSPORT_CLOSED");
    });

    it("stops delivering to the subscriptions of a closed transport while the others go on", async () => {
      const [closing, staying] = [await ctx.fixture.make(), await ctx.fixture.make()];
      const gone = collector();
      const kept = collector();
      closing.subscribe("news", gone.handler);
      staying.subscribe("news", kept.handler);
      await Promise.all([closing.flush(), staying.flush()]);
      await closing.close();
      await staying.publish("news", bytes("after"));
      await waitFor(() => kept.messages.length === 1, "the surviving subscriber");
      await sleep(50);
      expect(gone.messages).toHaveLength(0);
    });

    it("reports a throwing or rejecting handler to onError and keeps the subscription", async () => {
      const reported: { error: unknown; context: TransportErrorContext }[] = [];
      const transport = await ctx.fixture.make({ onError: (error, context) => void reported.push({ error, context }) });
      const received: string[] = [];
      transport.subscribe(
        "work.*",
        async (message) => {
          received.push(text(message));
          if (text(message) === "throw") throw new Error("sync failure");
          if (text(message) === "reject") {
            await sleep(1);
            throw new Error("async failure");
          }
        },
        { queue: "workers" },
      );
      for (const body of ["throw", "reject", "fine"]) await transport.publish("work.a", bytes(body));
      await waitFor(() => received.length === 3 && reported.length === 2, "three deliveries and two reports");
      expect(received).toEqual(["throw", "reject", "fine"]);
      expect(reported.map((r) => (r.error as Error).message).sort()).toEqual(["async failure", "sync failure"]);
      expect(reported[0]!.context).toMatchObject({ source: "handler", subject: "work.a", queue: "workers" });
    });
  });
}

/** Ordering and volume on a healthy connection. */
export function describeDelivery(ctx: TransportContext): void {
  describe("delivery", () => {
    it("keeps the order of one publisher's messages to one subscriber", async () => {
      const [publisher, subscriber] = [await ctx.fixture.make(), await ctx.fixture.make()];
      const order: number[] = [];
      subscriber.subscribe("seq", (m) => void order.push(Number(text(m))));
      await subscriber.flush();
      const count = 2000;
      await Promise.all(Array.from({ length: count }, (_, i) => publisher.publish("seq", bytes(String(i)))));
      await publisher.flush();
      await waitFor(() => order.length === count, `${count} ordered messages`);
      expect(order).toEqual(Array.from({ length: count }, (_, i) => i));
    });

    it("delivers 10,000 messages without losing one", async () => {
      const [publisher, subscriber] = [await ctx.fixture.make(), await ctx.fixture.make()];
      const seen = new Set<number>();
      let deliveries = 0;
      subscriber.subscribe("bulk.>", (m) => {
        deliveries++;
        seen.add(new DataView(m.data.buffer, m.data.byteOffset, m.data.byteLength).getUint32(0));
      });
      await subscriber.flush();
      const count = 10_000;
      for (let i = 0; i < count; i++) {
        const data = new Uint8Array(4);
        new DataView(data.buffer).setUint32(0, i);
        await publisher.publish(`bulk.${i % 16}`, data);
      }
      await publisher.flush();
      await waitFor(() => deliveries >= count, `${count} messages`, 20_000);
      await sleep(50);
      expect(deliveries).toBe(count);
      expect(seen.size).toBe(count);
    });

    it("flush resolves after the published messages were accepted", async () => {
      const transport = await ctx.fixture.make();
      const received = collector();
      transport.subscribe("f", received.handler);
      for (let i = 0; i < 100; i++) await transport.publish("f", bytes(String(i)));
      await transport.flush();
      await waitFor(() => received.messages.length === 100, "100 messages");
    });
  });
}
