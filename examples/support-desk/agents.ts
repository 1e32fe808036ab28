/**
 * The support desk: a model-driven agent that looks up an order (idempotent tool), has a
 * sub-agent check it for fraud, refunds through a non-idempotent bank tool, and waits on a
 * durable timer before it answers the customer.
 */
import { assign, setup } from "xstate";
import { z } from "zod";
import { callModel, callTool, defineAgent, defineTool, spawnAgent, startTimer, type ChatMessage, type ModelResponse } from "../../index.js";

/** The orders the desk can look up (a stand-in for the shop's database). */
const orders: Record<string, { total: number; customer: string }> = {
  "o-1001": { total: 42, customer: "ada@example.com" },
  "o-1002": { total: 5000, customer: "eve@example.com" },
};

/** The desk's statechart context: the conversation, the tool call under way, the final reply. */
interface Context {
  messages: ChatMessage[];
  pending?: { name: string; arguments: unknown; id: string };
  reply?: string;
}

/** Builds the agents; `bankUrl` is the bank service that applies refunds. */
export function supportDeskAgents(bankUrl: string) {
  const lookupOrder = defineTool({
    name: "lookupOrder",
    description: "Looks up an order by id",
    idempotent: true,
    input: z.object({ orderId: z.string() }),
    output: z.object({ orderId: z.string(), total: z.number(), customer: z.string() }),
    async execute({ orderId }) {
      const order = orders[orderId];
      if (order === undefined) throw new Error(`no order ${orderId}`);
      return { orderId, ...order };
    },
  });

  const refund = defineTool({
    name: "refund",
    description: "Refunds an amount on an order. Not idempotent: it runs at most once.",
    idempotent: false,
    timeoutMs: 10_000,
    input: z.object({ orderId: z.string(), amount: z.number().positive().max(1000) }),
    output: z.object({ refundId: z.string(), applied: z.boolean() }),
    async execute(args, { idempotencyKey, epoch, signal }) {
      const response = await fetch(`${bankUrl}/refunds`, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": idempotencyKey, "x-tessera-epoch": String(epoch) },
        body: JSON.stringify(args),
        signal,
      });
      if (!response.ok) throw new Error(`bank answered ${response.status}`);
      return (await response.json()) as { refundId: string; applied: boolean };
    },
  });

  const fraudCheck = defineAgent({
    type: "fraud-check",
    version: 1,
    tools: [],
    machine: setup({
      types: {} as { context: { orderId: string; total: number }; input: { orderId: string; total: number } },
    }).createMachine({
      context: ({ input }) => input,
      initial: "decided",
      states: { decided: { type: "final" } },
      output: ({ context }) => ({ orderId: context.orderId, risk: context.total > 1000 ? "high" : "low" }),
    }),
  });

  const desk = defineAgent({
    type: "support-desk",
    version: 1,
    tools: [lookupOrder, refund],
    machine: setup({
      types: {} as { context: Context; input: { ticket: string }; events: any },
      guards: { wantsTool: ({ event }) => (event.output as ModelResponse).toolCalls.length > 0 },
    }).createMachine({
      context: ({ input }) => ({
        messages: [
          { role: "system", content: "You are a support desk. Refunds above 1000 need a human." },
          { role: "user", content: input.ticket },
        ],
      }),
      initial: "thinking",
      states: {
        thinking: {
          entry: callModel("desk", ({ context }) => ({ messages: context.messages, tools: ["lookupOrder", "refund"] })),
          on: {
            "model.desk.done": [
              {
                guard: "wantsTool",
                target: "acting",
                actions: assign(({ context, event }) => ({
                  messages: [...context.messages, event.output.message],
                  pending: event.output.toolCalls[0],
                })),
              },
              { target: "answered", actions: assign({ reply: ({ event }) => event.output.message.content ?? "" }) },
            ],
            "model.desk.failed": "failed",
          },
        },
        acting: {
          entry: callTool(
            ({ context }) => context.pending!.name,
            ({ context }) => context.pending!.arguments as never,
          ),
          on: {
            "tool.lookupOrder.done": {
              target: "checking",
              actions: assign(({ context, event }) => ({ messages: [...context.messages, toolMessage(context, event.output)] })),
            },
            "tool.refund.done": {
              target: "cooling",
              actions: assign(({ context, event }) => ({ messages: [...context.messages, toolMessage(context, event.output)] })),
            },
            "tool.*": {
              target: "thinking",
              actions: assign(({ context, event }) => ({ messages: [...context.messages, toolMessage(context, { error: event.error })] })),
            },
          },
        },
        checking: {
          entry: spawnAgent("fraud", "fraud-check", ({ context }) => lastToolResult(context) as never),
          on: {
            "child.fraud.done": {
              target: "thinking",
              actions: assign(({ context, event }) => ({
                messages: [...context.messages, { role: "user", content: `Fraud check: risk ${event.output.risk}.` }],
              })),
            },
          },
        },
        cooling: {
          // A durable timer: survives a crash and fires in whichever process carries the run on.
          entry: startTimer("settle", 1500),
          on: { "timer.settle": "thinking" },
        },
        answered: { type: "final" },
        failed: { type: "final", tags: ["failed"] },
      },
      output: ({ context }) => ({ reply: context.reply ?? null }),
    }),
  });
  return { desk, fraudCheck };
}

function toolMessage(context: Context, result: unknown): ChatMessage {
  return { role: "tool", toolCallId: context.pending?.id, content: JSON.stringify(result) };
}

function lastToolResult(context: Context): { orderId: string; total: number } {
  const last = [...context.messages].reverse().find((m) => m.role === "tool");
  const parsed = JSON.parse(last?.content ?? "{}") as { orderId: string; total: number };
  return { orderId: parsed.orderId, total: parsed.total };
}
