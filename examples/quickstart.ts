import { assign, setup } from "xstate";
import { z } from "zod";
import { callTool, createNode, defineAgent, defineTool } from "../index.js";
import { createPgliteStore } from "../persistence/pglite/index.js";

const lookupOrder = defineTool({
  name: "lookupOrder",
  description: "Finds an order",
  idempotent: true,
  input: z.object({ orderId: z.string() }),
  output: z.object({ total: z.number() }),
  execute: async ({ orderId }) => ({ total: orderId === "o-1" ? 42 : 0 }),
});

const agent = defineAgent({
  type: "order-bot",
  version: 1,
  tools: [lookupOrder],
  machine: setup({ types: {} as { context: { orderId: string; total?: number }; input: { orderId: string }; events: any } }).createMachine({
    context: ({ input }) => ({ orderId: input.orderId }),
    initial: "looking",
    states: {
      looking: {
        entry: callTool("lookupOrder", ({ context }) => ({ orderId: context.orderId })),
        on: { "tool.lookupOrder.done": { target: "done", actions: assign({ total: ({ event }) => event.output.total }) } },
      },
      done: { type: "final" },
    },
    output: ({ context }) => ({ total: context.total }),
  }),
});

const store = await createPgliteStore({ dataDir: ".data/quickstart" });
await store.migrate();
const node = createNode({ store, agents: [agent] });
await node.start(); // recovers anything a previous process left unfinished
const { runId } = await node.startRun({ tenantId: "acme", agentType: "order-bot", input: { orderId: "o-1" }, idempotencyKey: "order-o-1" });
console.log(await node.waitForStatus("acme", runId, { timeoutMs: 10_000 }));
await node.close();
await store.close();
