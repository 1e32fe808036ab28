import { assign, setup } from "xstate";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { callTool, startTimer } from "../../../actors/actions.js";
import { defineAgent } from "../../../actors/define-agent.js";
import { defineTool } from "../../../actors/define-tool.js";
import { createNode } from "../../../actors/node.js";
import { SimulatedClock } from "../../../core/clock.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";
import { until } from "../../helpers/until.js";

function timerAgent() {
  return defineAgent({
    type: "reminder",
    version: 1,
    tools: [],
    machine: setup({ types: {} as { context: { fired: number }; events: any } }).createMachine({
      context: { fired: 0 },
      initial: "waiting",
      states: {
        waiting: {
          entry: startTimer("remind", 3_600_000),
          on: { "timer.remind": { target: "done", actions: assign({ fired: ({ context }) => context.fired + 1 }) } },
        },
        done: { type: "final" },
      },
      output: ({ context }) => ({ fired: context.fired }),
    }),
  });
}

describe("recovery on one node", () => {
  it("keeps a durable timer across a restart and fires it once when due", async () => {
    const store = createMemoryStore();
    await store.migrate();
    const clock = new SimulatedClock(1_000_000);
    const first = createNode({ store, agents: [timerAgent()], clock, logger: silent });
    await first.start();
    const { runId } = await first.startRun({ tenantId: "t", agentType: "reminder", input: null, idempotencyKey: "r1" });
    await until(async () => (await store.listTimers("t", runId)).length === 1);
    const [timer] = await store.listTimers("t", runId);
    expect(timer!.dueAt).toBe(1_000_000 + 3_600_000);
    await first.close();
    clock.advance(3_600_000 * 2);
    const second = createNode({ store, agents: [timerAgent()], clock, logger: silent });
    expect((await second.start()).recovered).toBe(1);
    clock.advance(0); // the simulated clock fires what is due only when told to
    const view = await second.waitForStatus("t", runId, { timeoutMs: 3000 });
    expect(view).toMatchObject({ status: "completed", output: { fired: 1 } });
    expect(await store.listTimers("t", runId)).toEqual([]);
    await second.close();
  });

  it("marks a non-idempotent effect interrupted mid-call unknown, never retries it, and resumes after reconcile", async () => {
    const calls: string[] = [];
    let block = true;
    const charge = defineTool({
      name: "charge",
      description: "Charges a card",
      idempotent: false,
      input: z.object({ cents: z.number() }),
      output: z.object({ ok: z.boolean() }),
      async execute(_args, { idempotencyKey, signal }) {
        calls.push(idempotencyKey);
        if (block) await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
        return { ok: true };
      },
    });
    const agent = defineAgent({
      type: "charger",
      version: 1,
      tools: [charge],
      machine: setup({ types: {} as { context: { result: string }; events: any } }).createMachine({
        context: { result: "none" },
        initial: "charging",
        states: {
          charging: {
            entry: callTool("charge", { cents: 500 }),
            on: {
              "tool.charge.done": { target: "done", actions: assign({ result: "charged" }) },
              "tool.charge.failed": { target: "done", actions: assign({ result: "declined" }) },
            },
          },
          done: { type: "final" },
        },
        output: ({ context }) => ({ result: context.result }),
      }),
    });
    const store = createMemoryStore();
    await store.migrate();
    const first = createNode({ store, agents: [agent], logger: silent });
    await first.start();
    const { runId } = await first.startRun({ tenantId: "t", agentType: "charger", input: null, idempotencyKey: "c1" });
    await until(async () => calls.length === 1);
    await first.close(); // the process "dies" while the charge is in flight
    block = false;
    const second = createNode({ store, agents: [agent], logger: silent });
    await second.start();
    await until(async () => (await store.listEffects("t", runId))[0]?.state === "unknown");
    expect(calls).toHaveLength(1);
    expect((await second.getActor("t", runId)).status).toBe("active");
    // Two reconciles racing (an operator's retry): exactly one outcome is applied.
    const reconcile = () =>
      second.reconcileEffect({ tenantId: "t", actorId: runId, effectId: "e1.0", outcome: { state: "completed", result: { ok: true } } });
    const raced = await Promise.allSettled([reconcile(), reconcile()]);
    expect(raced.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(raced.find((r) => r.status === "rejected")).toMatchObject({ reason: { code: "ERR_EFFECT_NOT_UNKNOWN" } });
    const view = await second.waitForStatus("t", runId, { timeoutMs: 3000 });
    expect(view).toMatchObject({ status: "completed", output: { result: "charged" } });
    expect(calls).toHaveLength(1);
    const journal = await store.readJournal("t", runId, { limit: 100 });
    expect(journal.filter((e) => (e.event as { type: string }).type === "tool.charge.done")).toHaveLength(1);
    const [effect] = await store.listEffects("t", runId);
    expect(effect).toMatchObject({ state: "completed", attempts: 1 });
    await expect(
      second.reconcileEffect({ tenantId: "t", actorId: runId, effectId: "e1.0", outcome: { state: "completed", result: { ok: true } } }),
    ).rejects.toMatchObject({ code: "ERR_EFFECT_NOT_UNKNOWN" });
    await second.close();
  });

  it("stops an actor and its whole subtree", async () => {
    const leaf = defineAgent({
      type: "leaf",
      version: 1,
      tools: [],
      machine: setup({ types: {} as { events: any } }).createMachine({ initial: "idle", states: { idle: { on: { never: "idle" } } } }),
    });
    const { spawnAgent } = await import("../../../actors/actions.js");
    const parent = defineAgent({
      type: "parent",
      version: 1,
      tools: [],
      machine: setup({ types: {} as { events: any } }).createMachine({
        initial: "running",
        states: { running: { entry: [spawnAgent("a", "leaf", null), spawnAgent("b", "leaf", null)], on: { never: "running" } } },
      }),
    });
    const store = createMemoryStore();
    await store.migrate();
    const node = createNode({ store, agents: [parent, leaf], logger: silent });
    await node.start();
    const { runId } = await node.startRun({ tenantId: "t", agentType: "parent", input: null, idempotencyKey: "p" });
    await until(async () => (await node.listChildren("t", runId)).filter((c) => c.revision >= 1).length === 2);
    await node.stopActor("t", runId);
    await node.waitForStatus("t", runId, { timeoutMs: 3000 });
    for (const child of await node.listChildren("t", runId)) {
      expect((await node.waitForStatus("t", child.actorId, { timeoutMs: 3000 })).status).toBe("stopped");
    }
    expect((await node.getActor("t", runId)).status).toBe("stopped");
    await node.close();
  });
});
