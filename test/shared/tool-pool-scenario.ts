import { assign, setup } from "xstate";
import { expect } from "vitest";
import { z } from "zod";
import { callTool } from "../../actors/actions.js";
import { defineAgent } from "../../actors/define-agent.js";
import { defineTool } from "../../actors/define-tool.js";
import { createNode } from "../../actors/node.js";
import { poolTool, serveToolPool } from "../../actors/tool-pool.js";
import type { Transport } from "../../core/ports/transport.js";
import { createMemoryStore } from "../../persistence/memory/index.js";
import { silent } from "../helpers/silent-logger.js";

const input = z.object({ amount: z.number().positive() });
const output = z.object({ chargeId: z.string(), worker: z.string() });

/**
 * A node whose `charge` tool runs in a pool of two workers on other transports: every call runs
 * once, in one of them, with the caller's idempotency key; both take a share; a worker's typed
 * failure comes back to the actor as the tool's failure.
 */
export async function runToolPoolScenario(makeTransport: () => Promise<Transport>): Promise<void> {
  const pool = `payments${Math.random().toString(36).slice(2, 8)}`;
  const calls = new Map<string, string[]>();
  const implementation = (worker: string) =>
    defineTool({
      name: "charge",
      description: "Charges an amount",
      idempotent: true,
      input,
      output,
      async execute({ amount }, ctx) {
        calls.set(ctx.idempotencyKey, [...(calls.get(ctx.idempotencyKey) ?? []), worker]);
        if (amount > 1000) throw new Error("card declined");
        return { chargeId: `ch-${ctx.idempotencyKey.slice(-8)}`, worker };
      },
    });
  const [nodeTransport, t1, t2] = await Promise.all([makeTransport(), makeTransport(), makeTransport()]);
  const w1 = serveToolPool({ transport: t1!, pool, tools: [implementation("w1")] });
  const w2 = serveToolPool({ transport: t2!, pool, tools: [implementation("w2")] });
  await Promise.all([t1!.flush(), t2!.flush()]);
  const charge = poolTool(
    { name: "charge", description: "Charges an amount", idempotent: true, input, output, retry: { attemptsMax: 1 } },
    {
      transport: nodeTransport!,
      pool,
    },
  );
  const agent = defineAgent({
    type: "biller",
    version: 1,
    tools: [charge],
    machine: setup({
      types: {} as { context: { amount: number; worker?: string; error?: string }; input: { amount: number }; events: any },
    }).createMachine({
      context: ({ input: i }) => ({ amount: i.amount }),
      initial: "charging",
      states: {
        charging: {
          entry: callTool("charge", ({ context }) => ({ amount: context.amount })),
          on: {
            "tool.charge.done": { target: "done", actions: assign({ worker: ({ event }) => event.output.worker as string }) },
            "tool.charge.failed": { target: "done", actions: assign({ error: ({ event }) => event.error.message as string }) },
          },
        },
        done: { type: "final" },
      },
      output: ({ context }) => ({ worker: context.worker ?? null, error: context.error ?? null }),
    }),
  });
  const store = createMemoryStore();
  const node = createNode({ store, agents: [agent], logger: silent });
  await node.start();
  try {
    const ids: string[] = [];
    for (let i = 0; i < 40; i++)
      ids.push((await node.startRun({ tenantId: "t", agentType: "biller", input: { amount: 10 + i }, idempotencyKey: `b${i}` })).runId);
    const declined = (await node.startRun({ tenantId: "t", agentType: "biller", input: { amount: 5000 }, idempotencyKey: "big" })).runId;
    const views = await Promise.all(ids.map((id) => node.waitForStatus("t", id, { timeoutMs: 20_000 })));
    expect(views.every((v) => v.status === "completed" && (v.output as { worker: string }).worker !== null)).toBe(true);
    // Every call ran once, in one worker; the queue group spread them.
    expect(calls.size).toBe(41);
    expect([...calls.values()].every((workers) => workers.length === 1)).toBe(true);
    const byWorker = new Map<string, number>();
    for (const v of views)
      byWorker.set((v.output as { worker: string }).worker, (byWorker.get((v.output as { worker: string }).worker) ?? 0) + 1);
    expect(byWorker.get("w1") ?? 0).toBeGreaterThan(0);
    expect(byWorker.get("w2") ?? 0).toBeGreaterThan(0);
    // The idempotency key the worker saw is the effect's.
    const [effect] = await node.listEffects("t", ids[0]!);
    expect(calls.has(effect!.idempotencyKey)).toBe(true);
    expect(await node.waitForStatus("t", declined, { timeoutMs: 20_000 })).toMatchObject({
      status: "completed",
      output: { worker: null, error: expect.stringContaining("card declined") },
    });
    expect(w1.stats.calls + w2.stats.calls).toBe(41);
  } finally {
    w1.close();
    w2.close();
    await node.close();
    await Promise.all([nodeTransport!.close(), t1!.close(), t2!.close()]);
  }
}
