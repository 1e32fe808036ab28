import { assign, setup } from "xstate";
import { z } from "zod";
import { callTool, spawnAgent, startTimer } from "../../actors/actions.js";
import { defineAgent } from "../../actors/define-agent.js";
import { defineTool, type ToolContext } from "../../actors/define-tool.js";

/** Calls recorded by the test tools, keyed by idempotency key. */
export interface CallLog {
  calls: Array<{ tool: string; key: string; args: unknown; attempt: number }>;
}

/** A small hierarchy used across runtime tests: order lookup, a child check, a refund, a timer. */
export function makeDeskAgents(log: CallLog, options: { failLookupTimes?: number; refundDelayMs?: number } = {}) {
  let lookupFailures = options.failLookupTimes ?? 0;
  const record = (tool: string, args: unknown, ctx: ToolContext): void => {
    log.calls.push({ tool, key: ctx.idempotencyKey, args, attempt: ctx.attempt });
  };
  const lookupOrder = defineTool({
    name: "lookupOrder",
    description: "Looks up an order",
    idempotent: true,
    retry: { baseDelayMs: 1, maxDelayMs: 5 },
    input: z.object({ orderId: z.string() }),
    output: z.object({ orderId: z.string(), total: z.number() }),
    async execute(args, ctx) {
      record("lookupOrder", args, ctx);
      if (lookupFailures > 0) {
        lookupFailures -= 1;
        throw new Error("lookup service unavailable");
      }
      return { orderId: args.orderId, total: 42 };
    },
  });
  const refund = defineTool({
    name: "refund",
    description: "Refunds an amount",
    idempotent: false,
    input: z.object({ orderId: z.string(), amount: z.number().positive() }),
    output: z.object({ refundId: z.string() }),
    async execute(args, ctx) {
      record("refund", args, ctx);
      if (options.refundDelayMs) await new Promise((r) => setTimeout(r, options.refundDelayMs));
      return { refundId: `r-${ctx.idempotencyKey.slice(-6)}` };
    },
  });
  const check = defineAgent({
    type: "fraud-check",
    version: 1,
    tools: [],
    machine: setup({ types: {} as { context: { orderId: string }; input: { orderId: string } } }).createMachine({
      context: ({ input }) => ({ orderId: input.orderId }),
      initial: "done",
      states: { done: { type: "final" } },
      output: ({ context }) => ({ orderId: context.orderId, risk: "low" }),
    }),
  });
  const desk = defineAgent({
    type: "support-desk",
    version: 1,
    tools: [lookupOrder, refund],
    machine: setup({
      types: {} as {
        context: { orderId: string; total?: number; risk?: string; refundId?: string };
        input: { orderId: string };
        events: any;
      },
    }).createMachine({
      context: ({ input }) => ({ orderId: input.orderId }),
      initial: "lookingUp",
      states: {
        lookingUp: {
          entry: callTool("lookupOrder", ({ context }) => ({ orderId: context.orderId })),
          on: {
            "tool.lookupOrder.done": { target: "checking", actions: assign({ total: ({ event }) => event.output.total }) },
            "tool.lookupOrder.failed": "failed",
          },
        },
        checking: {
          entry: spawnAgent("check", "fraud-check", ({ context }) => ({ orderId: context.orderId })),
          on: { "child.check.done": { target: "refunding", actions: assign({ risk: ({ event }) => event.output.risk }) } },
        },
        refunding: {
          entry: callTool("refund", ({ context }) => ({ orderId: context.orderId, amount: context.total })),
          on: {
            "tool.refund.done": { target: "waiting", actions: assign({ refundId: ({ event }) => event.output.refundId }) },
            "tool.refund.failed": "failed",
          },
        },
        waiting: {
          entry: startTimer("settle", 50),
          on: { "timer.settle": "done", nudge: "done" },
        },
        done: { type: "final" },
        failed: { type: "final", tags: ["failed"] },
      },
      output: ({ context }) => ({ total: context.total ?? null, risk: context.risk ?? null, refundId: context.refundId ?? null }),
    }),
  });
  return { desk, check, lookupOrder, refund };
}
