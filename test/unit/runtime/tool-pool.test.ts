import { setup } from "xstate";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { callTool } from "../../../actors/actions.js";
import { defineAgent } from "../../../actors/define-agent.js";
import { defineTool } from "../../../actors/define-tool.js";
import { createNode } from "../../../actors/node.js";
import { poolTool, serveToolPool } from "../../../actors/tool-pool.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";
import { createInProcessBus, createInProcessTransport } from "../../../actors/transport/in-process/index.js";
import { runToolPoolScenario } from "../../shared/tool-pool-scenario.js";

describe("tool worker pools (in-process transport)", () => {
  it("runs each pooled call once in one member of the queue group, with the effect's idempotency key", async () => {
    const bus = createInProcessBus();
    await runToolPoolScenario(async () => createInProcessTransport({ bus, subjectPrefix: "pool-test" }));
  });
});

describe("a pooled non-idempotent call whose answer never comes", () => {
  it("is left unknown, not failed, and not called again", async () => {
    const bus = createInProcessBus();
    const nodeTransport = createInProcessTransport({ bus, subjectPrefix: "pool-unknown" });
    const workerTransport = createInProcessTransport({ bus, subjectPrefix: "pool-unknown" });
    const input = z.object({ cents: z.number() });
    const output = z.object({ ok: z.boolean() });
    let calls = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const worker = serveToolPool({
      transport: workerTransport,
      pool: "payments",
      tools: [
        defineTool({
          name: "charge",
          description: "Charges",
          idempotent: false,
          input,
          output,
          async execute() {
            calls++;
            await gate; // it acted; the answer is late
            return { ok: true };
          },
        }),
      ],
    });
    const charge = poolTool(
      { name: "charge", description: "Charges", idempotent: false, input, output },
      { transport: nodeTransport, pool: "payments" },
    );
    const agent = defineAgent({
      type: "charger",
      version: 1,
      tools: [charge],
      machine: setup({ types: {} as { context: object; events: any } }).createMachine({
        initial: "charging",
        states: {
          charging: { entry: callTool("charge", () => ({ cents: 5 })), on: { "tool.charge.done": "done", "tool.charge.failed": "failed" } },
          done: { type: "final" },
          failed: { type: "final" },
        },
      }),
    });
    const store = createMemoryStore();
    const node = createNode({ store, agents: [agent], logger: silent });
    await node.start();
    const { runId } = await node.startRun({ tenantId: "t", agentType: "charger", input: null, idempotencyKey: "c1" });
    while (calls === 0) await new Promise((r) => setTimeout(r, 5));
    // The node's connection goes away with the request out: the worker may well have charged.
    await nodeTransport.close();
    for (let i = 0; i < 400 && (await store.listEffects("t", runId))[0]?.state !== "unknown"; i++)
      await new Promise((r) => setTimeout(r, 5));
    expect((await store.listEffects("t", runId))[0]).toMatchObject({ state: "unknown", error: { code: "ERR_OUTCOME_UNKNOWN" } });
    expect((await store.getActor("t", runId))!.status).toBe("active");
    release();
    expect(calls).toBe(1);
    worker.close();
    await node.close();
    await workerTransport.close();
  });
});
