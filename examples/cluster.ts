/**
 * Three nodes and a tool worker pool in one process, to show what a cluster does: runs are placed
 * across the live nodes, ownership is visible, a draining node hands its actors to the others
 * (epoch + 1, no waiting for its lease to expire), and a pooled tool runs in whichever worker of
 * its queue group is free. In production each node is a process of its own (`tessera node`, or
 * `createNode` in your service) on PostgreSQL or CockroachDB with NATS between them; here a
 * shared in-memory store and an in-process bus stand in, so it runs with no servers:
 *
 * ```sh
 * npx tsx examples/cluster.ts
 * ```
 */
import { assign, setup } from "xstate";
import { z } from "zod";
import { callTool, createNode, defineAgent, defineTool, poolTool, serveToolPool, type TesseraNode } from "../index.js";
import { createInProcessBus, createInProcessTransport } from "../actors/transport/in-process/index.js";
import { createMemoryStore } from "../persistence/memory/index.js";

const bus = createInProcessBus();
const transport = () => createInProcessTransport({ bus, subjectPrefix: "example" });

// The tool's implementation lives in the worker pool; agents see only its declaration.
const input = z.object({ orderId: z.string() });
const output = z.object({ total: z.number(), worker: z.string() });
const workers = ["worker-1", "worker-2"].map((name) =>
  serveToolPool({
    transport: transport(),
    pool: "orders",
    tools: [
      defineTool({
        name: "lookupOrder",
        description: "Finds an order",
        idempotent: true,
        input,
        output,
        execute: async ({ orderId }) => ({ total: orderId.length * 10, worker: name }),
      }),
    ],
  }),
);

const agent = defineAgent({
  type: "order-bot",
  version: 1,
  tools: [
    poolTool(
      { name: "lookupOrder", description: "Finds an order", idempotent: true, input, output },
      { transport: transport(), pool: "orders" },
    ),
  ],
  machine: setup({ types: {} as { context: { orderId: string; worker?: string }; input: { orderId: string }; events: any } }).createMachine(
    {
      context: ({ input: i }) => ({ orderId: i.orderId }),
      initial: "looking",
      states: {
        looking: {
          entry: callTool("lookupOrder", ({ context }) => ({ orderId: context.orderId })),
          on: { "tool.lookupOrder.done": { target: "waiting", actions: assign({ worker: ({ event }) => event.output.worker as string }) } },
        },
        // Waits for a human's go-ahead: it may be on another node by then.
        waiting: { on: { approve: "done" } },
        done: { type: "final" },
      },
      output: ({ context }) => ({ worker: context.worker ?? null }),
    },
  ),
});

const store = createMemoryStore({ shared: true });
const nodes: TesseraNode[] = ["node-a", "node-b", "node-c"].map((nodeId) =>
  createNode({ store, agents: [agent], nodeId, transport: transport(), cluster: { leaseTtlMs: 3_000, sweepIntervalMs: 200 } }),
);
for (const node of nodes) await node.start();
const [a, b, c] = nodes as [TesseraNode, TesseraNode, TesseraNode];
while (a.clusterStats.liveNodes.length < 3) await new Promise((r) => setTimeout(r, 10));

const runIds: string[] = [];
for (let i = 0; i < 12; i++) {
  const { runId } = await a.startRun({
    tenantId: "acme",
    agentType: "order-bot",
    input: { orderId: `o-${i}` },
    idempotencyKey: `order-${i}`,
  });
  runIds.push(runId);
}
// Every run reaches `waiting` on the node placement chose.
for (const id of runIds) while ((await a.getActor("acme", id)).revision < 2) await new Promise((r) => setTimeout(r, 10));
console.log("owned actors per node:", Object.fromEntries((await a.listNodes()).map((n) => [n.nodeId, n.ownedActors])));

await a.drain({ graceMs: 1_000 });
console.log(
  "after node-a drained:",
  Object.fromEntries((await b.listNodes()).map((n) => [n.nodeId, `${n.state}, ${n.ownedActors} actors`])),
);

for (const id of runIds) await b.sendEvent({ tenantId: "acme", actorId: id, event: { type: "approve" }, messageId: `approve-${id}` });
const views = await Promise.all(runIds.map((id) => c.waitForStatus("acme", id, { timeoutMs: 10_000 })));
const byWorker: Record<string, number> = {};
for (const v of views) byWorker[(v.output as { worker: string }).worker] = (byWorker[(v.output as { worker: string }).worker] ?? 0) + 1;
console.log(`${views.filter((v) => v.status === "completed").length}/12 runs completed; lookups per pool worker:`, byWorker);
console.log("epochs after the hand-off:", [...new Set(views.map((v) => v.epoch))].sort().join(", "));

for (const worker of workers) worker.close();
await Promise.all(nodes.map((node) => node.close()));
await store.close();
