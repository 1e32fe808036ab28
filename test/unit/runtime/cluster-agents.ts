import { assign, setup } from "xstate";
import { z } from "zod";
import { callTool, spawnAgent, startTimer } from "../../../actors/actions.js";
import { defineAgent } from "../../../actors/define-agent.js";
import { defineTool } from "../../../actors/define-tool.js";

/** Tool calls by idempotency key, to count duplicates. */
export type CallCounter = Map<string, number>;

/**
 * Agents for in-process cluster tests: a counter that records the order of its `inc` events, a
 * parent that waits for a child that waits for `go`, and a sleeper with a durable timer.
 */
export function makeClusterAgents(calls: CallCounter) {
  const note = defineTool({
    name: "note",
    description: "Records a call",
    idempotent: true,
    input: z.object({ n: z.number() }),
    output: z.object({ ok: z.boolean() }),
    async execute(_args, ctx) {
      calls.set(ctx.idempotencyKey, (calls.get(ctx.idempotencyKey) ?? 0) + 1);
      return { ok: true };
    },
  });
  const counter = defineAgent({
    type: "counter",
    version: 1,
    tools: [note],
    machine: setup({ types: {} as { context: { seen: number[] }; events: any } }).createMachine({
      context: { seen: [] },
      initial: "noting",
      states: {
        noting: {
          entry: callTool("note", () => ({ n: 0 })),
          on: { "tool.note.done": "counting" },
        },
        counting: {
          on: {
            inc: { actions: assign({ seen: ({ context, event }) => [...context.seen, event.n as number] }) },
            finish: "done",
          },
        },
        done: { type: "final" },
      },
      output: ({ context }) => ({ count: context.seen.length }),
    }),
  });
  const child = defineAgent({
    type: "waiter",
    version: 1,
    tools: [],
    machine: setup({ types: {} as { context: { tag: string }; input: { tag: string }; events: any } }).createMachine({
      context: ({ input }) => ({ tag: input.tag }),
      initial: "waiting",
      states: { waiting: { on: { go: "done" } }, done: { type: "final" } },
      output: ({ context }) => ({ tag: context.tag }),
    }),
  });
  const parent = defineAgent({
    type: "parent",
    version: 1,
    tools: [],
    machine: setup({ types: {} as { context: { tag?: string }; events: any } }).createMachine({
      context: {},
      initial: "waiting",
      states: {
        waiting: {
          entry: spawnAgent("kid", "waiter", () => ({ tag: "kid" })),
          on: { "child.kid.done": { target: "done", actions: assign({ tag: ({ event }) => event.output.tag as string }) } },
        },
        done: { type: "final" },
      },
      output: ({ context }) => ({ tag: context.tag ?? null }),
    }),
  });
  const sleeper = defineAgent({
    type: "sleeper",
    version: 1,
    tools: [],
    machine: setup({ types: {} as { context: { woke: boolean; ms: number }; input: { ms: number }; events: any } }).createMachine({
      context: ({ input }) => ({ woke: false, ms: input.ms }),
      initial: "sleeping",
      states: {
        sleeping: {
          entry: startTimer("nap", ({ context }) => context.ms),
          on: { "timer.nap": { target: "done", actions: assign({ woke: true }) } },
        },
        done: { type: "final" },
      },
      output: ({ context }) => ({ woke: context.woke }),
    }),
  });
  const charger = defineAgent({
    type: "charger",
    version: 1,
    tools: [note],
    machine: setup({ types: {} as { context: { n: number }; events: any } }).createMachine({
      context: { n: 0 },
      initial: "ready",
      states: {
        ready: { on: { charge: "charging" } },
        charging: {
          entry: callTool("note", ({ context }) => ({ n: context.n })),
          on: { "tool.note.done": { target: "ready", actions: assign({ n: ({ context }) => context.n + 1 }) } },
        },
      },
    }),
  });
  /** Calls a tool that never answers (within the test): busy for as long as the test runs. */
  const thinker = defineAgent({
    type: "thinker",
    version: 1,
    tools: [
      defineTool({
        name: "think",
        description: "Never answers",
        idempotent: true,
        timeoutMs: 600_000,
        input: z.object({}),
        output: z.object({ ok: z.boolean() }),
        execute: () => new Promise(() => undefined),
      }),
    ],
    machine: setup({ types: {} as { context: object; events: any } }).createMachine({
      initial: "thinking",
      states: { thinking: { entry: callTool("think", () => ({})), on: { "tool.think.done": "done" } }, done: { type: "final" } },
    }),
  });
  return [counter, child, parent, sleeper, charger, thinker];
}
