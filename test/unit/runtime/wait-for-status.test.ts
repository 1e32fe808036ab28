import { assign, setup } from "xstate";
import { describe, expect, it } from "vitest";
import { defineAgent } from "../../../actors/define-agent.js";
import { createNode } from "../../../actors/node.js";
import type { Store } from "../../../core/ports/store.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";
import { until } from "../../helpers/until.js";

/** Waits for `tick`s, counting them, and finishes on `finish`. */
const waiter = defineAgent({
  type: "waiter",
  version: 1,
  tools: [],
  machine: setup({ types: {} as { context: { n: number }; events: { type: "tick" } | { type: "finish" } } }).createMachine({
    context: { n: 0 },
    initial: "waiting",
    states: {
      waiting: { on: { tick: { actions: assign({ n: ({ context }) => context.n + 1 }) }, finish: "done" } },
      done: { type: "final" },
    },
    output: ({ context }) => ({ ticks: context.n }),
  }),
});

/**
 * A memory store whose actor reads are counted; `withoutActorState` hides the one-read method,
 * `readDelayMs` slows every actor read down.
 */
async function countingStore(
  options: { withoutActorState?: boolean; readDelayMs?: number } = {},
): Promise<{ store: Store; reads: () => number }> {
  const inner = createMemoryStore();
  await inner.migrate();
  let reads = 0;
  const store = new Proxy(inner, {
    get(target, property, receiver) {
      if (property === "getActorState" && options.withoutActorState === true) return undefined;
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== "function") return value;
      if (property === "getActorState" || property === "getActor") {
        return async (...args: unknown[]) => {
          reads += 1;
          if (options.readDelayMs !== undefined) await new Promise((r) => setTimeout(r, options.readDelayMs));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  }) as Store;
  return { store, reads: () => reads };
}

describe("waitForStatus", () => {
  it("waits for an actor active on this node without reading it until its status changes", async () => {
    const { store, reads } = await countingStore();
    const node = createNode({ store, agents: [waiter], logger: silent, statusPollMs: 50 });
    await node.start();
    const { runId } = await node.startRun({ tenantId: "acme", agentType: "waiter", input: null, idempotencyKey: "k1" });
    await until(() => node.residentActors === 1, 5000);
    await node.sendEvent({ tenantId: "acme", actorId: runId, messageId: "m1", event: { type: "tick" } });
    const before = reads();
    const waiting = node.waitForStatus("acme", runId, { timeoutMs: 10_000 });
    await node.sendEvent({ tenantId: "acme", actorId: runId, messageId: "m2", event: { type: "finish" } });
    const view = await waiting;
    expect(view).toMatchObject({ status: "completed", output: { ticks: 1 }, stateValue: "done" });
    // sendEvent to a resident actor reads nothing (the cell knows its type); the waiter reads once,
    // when the actor finished (twice if a slow machine let its 500 ms safety poll fire first).
    expect(reads() - before).toBeLessThanOrEqual(2);
    await node.close();
  });

  it("reads the store before it times out, even when memory says the actor is active", async () => {
    const { store, reads } = await countingStore();
    const node = createNode({ store, agents: [waiter], logger: silent });
    await node.start();
    const { runId } = await node.startRun({ tenantId: "acme", agentType: "waiter", input: null, idempotencyKey: "k1" });
    await until(() => node.residentActors === 1, 5000);
    const before = reads();
    await expect(node.waitForStatus("acme", runId, { timeoutMs: 0 })).rejects.toMatchObject({
      code: "ERR_TIMEOUT",
      details: { status: "active" },
    });
    expect(reads() - before).toBe(1);
    await node.close();
  });

  it("rejects with the abort reason when the signal aborts during a store read", async () => {
    const { store } = await countingStore({ readDelayMs: 200 });
    // Poll and timeout longer than the test may take: only the abort can end the wait in time.
    const node = createNode({ store, agents: [waiter], logger: silent, statusPollMs: 60_000 });
    await node.start();
    const { runId } = await node.startRun({ tenantId: "acme", agentType: "waiter", input: null, idempotencyKey: "k1" });
    await node.sendEvent({ tenantId: "acme", actorId: runId, messageId: "m1", event: { type: "finish" } });
    await until(() => node.residentActors === 0, 5000);
    // Finished and gone from memory: the wait reads the store, and the abort lands during that read.
    const controller = new AbortController();
    const waiting = node.waitForStatus("acme", runId, { statuses: ["stopped"], timeoutMs: 60_000, signal: controller.signal });
    setTimeout(() => controller.abort("client went away"), 50);
    await expect(waiting).rejects.toBe("client went away");
    await node.close();
  });

  it("reads the state value with getActor and readJournal from a store without getActorState", async () => {
    const { store } = await countingStore({ withoutActorState: true });
    expect(store.getActorState).toBeUndefined();
    const node = createNode({ store, agents: [waiter], logger: silent });
    await node.start();
    const { runId } = await node.startRun({ tenantId: "acme", agentType: "waiter", input: null, idempotencyKey: "k1" });
    await node.sendEvent({ tenantId: "acme", actorId: runId, messageId: "m1", event: { type: "finish" } });
    const view = await node.waitForStatus("acme", runId, { timeoutMs: 10_000 });
    expect(view).toMatchObject({ status: "completed", stateValue: "done", output: { ticks: 0 } });
    await node.close();
  });
});
