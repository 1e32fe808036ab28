import { assign, setup } from "xstate";
import { z } from "zod";
import { callTool, defineAgent, defineTool, type Json } from "../index.js";

/** Records when each tool call started, per run, to measure the step cycle. */
export interface StepClock {
  stamps: Map<string, number[]>;
}

/**
 * The `durable-steps` workload: a run of `steps` sequential steps, each a call of an idempotent
 * tool that returns a ~100-byte JSON object, each result committed before the next call starts.
 */
export function stepperAgent(clock: StepClock) {
  const step = defineTool({
    name: "step",
    description: "Returns a ~100-byte object",
    idempotent: true,
    input: z.object({ i: z.number().int() }),
    output: z.object({ i: z.number().int(), data: z.string() }),
    async execute({ i }, ctx) {
      const list = clock.stamps.get(ctx.actorId) ?? [];
      list.push(performance.now());
      clock.stamps.set(ctx.actorId, list);
      return { i, data: "d".repeat(80) };
    },
  });
  return defineAgent({
    type: "stepper",
    version: 1,
    tools: [step],
    machine: setup({
      types: {} as { context: { i: number; steps: number; last: Json }; input: { steps: number }; events: any },
      guards: { last: ({ context }) => context.i + 1 >= context.steps },
    }).createMachine({
      context: ({ input }) => ({ i: 0, steps: input.steps, last: null }),
      initial: "working",
      states: {
        working: {
          entry: callTool("step", ({ context }) => ({ i: context.i })),
          on: {
            "tool.step.done": [
              { guard: "last", target: "done", actions: assign({ last: ({ event }) => event.output }) },
              {
                target: "working",
                reenter: true,
                actions: assign({ i: ({ context }) => context.i + 1, last: ({ event }) => event.output }),
              },
            ],
          },
        },
        done: { type: "final" },
      },
      output: ({ context }) => ({ steps: context.i + 1 }),
    }),
  });
}

/**
 * An agent that waits for `tick` events and counts them, one journal row per event; with
 * `committed`, it calls it after each tick's step has committed with the count the step reached (a
 * non-durable action, run after the commit and never on replay).
 */
function tickCounter(type: string, committed?: (n: number) => void) {
  return defineAgent({
    type,
    version: 1,
    tools: [],
    machine: setup({ types: {} as { context: { n: number }; events: any } }).createMachine({
      context: { n: 0 },
      initial: "waiting",
      states: {
        waiting: {
          on: {
            tick: {
              // Without a listener, no after-commit action at all (a step plans none).
              actions:
                committed === undefined
                  ? assign({ n: ({ context }) => context.n + 1 })
                  : [assign({ n: ({ context }) => context.n + 1 }), ({ context }) => committed(context.n)],
            },
          },
        },
      },
    }),
  });
}

/** An agent that waits for events and grows its history by one journal row per event. */
export const idleAgent = tickCounter("idler");

/** The {@link idleAgent}'s twin for timing: a caller learns of each tick's commit without polling the store. */
export function countingAgent(committed: (n: number) => void) {
  return tickCounter("counter", committed);
}
