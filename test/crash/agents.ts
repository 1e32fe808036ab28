/**
 * The agents that crash tests run, in the worker processes and in the test process alike (the
 * test's own node reconciles `unknown` effects and replays runs, so it needs the same definitions).
 *
 * A `crash-desk` run looks an order up (idempotent `lookup`), spawns a `crash-hold` child that
 * reserves stock (idempotent `reserve`), charges the customer (non-idempotent `charge`), then waits
 * on a durable timer before it completes. Every tool is a call to the ledger service over HTTP with
 * the effect's idempotency key as `Idempotency-Key` and the lease epoch as `X-Tessera-Epoch`, so the
 * ledger, which outlives every worker, is the external truth the tests check against.
 */
import { assign, setup } from "xstate";
import { z } from "zod";
import { callTool, spawnAgent, startTimer } from "../../actors/actions.js";
import { defineAgent, type AgentDefinition } from "../../actors/define-agent.js";
import { defineTool, type ToolContext } from "../../actors/define-tool.js";

/** The tools of the crash agents. */
export type CrashToolName = "lookup" | "reserve" | "charge";

/** Tools whose calls are safe to repeat with the same idempotency key. */
export const idempotentTools: readonly CrashToolName[] = ["lookup", "reserve"];

/** What the ledger answers to `POST /effects`. */
export interface LedgerAnswer {
  applied: boolean;
  id: string;
}

/** Hooks a worker uses to print progress and to crash at a chosen point. */
export interface CrashToolHooks {
  /** Called before the HTTP request leaves. */
  beforeCall?(tool: CrashToolName, context: ToolContext): void;
  /** Called once the ledger answered, before the tool returns its result to the runtime. */
  afterCall?(tool: CrashToolName, context: ToolContext, answer: LedgerAnswer): void;
}

/** Options of {@link makeCrashAgents}. */
export interface CrashAgentOptions {
  /** Base URL of the ledger service. */
  ledgerUrl: string;
  /** Per-tool `delayMs` asked of the ledger: the answer comes that late, the effect is applied at once. */
  ledgerDelayMs?: Partial<Record<CrashToolName, number>>;
  /** Delay of the durable `settle` timer, in milliseconds. @defaultValue 150 */
  settleDelayMs?: number;
  hooks?: CrashToolHooks;
}

/** The agent type of a run's root actor. */
export const deskAgentType = "crash-desk";

/** Output of a completed `crash-desk` run. */
export interface DeskOutput {
  orderId: string;
  lookupId: string | null;
  holdId: string | null;
  chargeId: string | null;
  /** Charges planned: 1, or 2 when the first was reconciled as never applied. */
  chargeAttempts: number;
}

interface DeskContext {
  orderId: string;
  lookupId?: string;
  holdId?: string;
  chargeId?: string;
  chargeAttempts: number;
}

/**
 * Builds the crash agents over a ledger.
 *
 * @param options - the ledger's URL, optional answer delays, timer delay and hooks
 * @returns the root agent, the child agent, and both as a list for `createNode`
 * @example
 * ```ts
 * const { agents } = makeCrashAgents({ ledgerUrl: ledger.url });
 * const node = createNode({ store, agents });
 * ```
 */
export function makeCrashAgents(options: CrashAgentOptions): {
  desk: AgentDefinition;
  hold: AgentDefinition;
  agents: AgentDefinition[];
} {
  const call = async (tool: CrashToolName, payload: Record<string, unknown>, context: ToolContext): Promise<LedgerAnswer> => {
    options.hooks?.beforeCall?.(tool, context);
    const delayMs = options.ledgerDelayMs?.[tool] ?? 0;
    const response = await fetch(`${options.ledgerUrl}/effects${delayMs > 0 ? `?delayMs=${delayMs}` : ""}`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "Idempotency-Key": context.idempotencyKey,
        "X-Tessera-Epoch": String(context.epoch),
      },
      body: JSON.stringify({ kind: tool, payload }),
      signal: context.signal,
    });
    const body = (await response.json()) as Partial<LedgerAnswer> & { error?: string };
    if ((response.status !== 200 && response.status !== 201) || typeof body.id !== "string") {
      throw new Error(`ledger answered ${response.status} to ${tool}: ${body.error ?? JSON.stringify(body)}`);
    }
    const answer = { applied: body.applied === true, id: body.id };
    options.hooks?.afterCall?.(tool, context, answer);
    return answer;
  };
  const retry = { attemptsMax: 5, baseDelayMs: 10, maxDelayMs: 100 };

  const lookup = defineTool({
    name: "lookup",
    description: "Looks an order up (idempotent)",
    idempotent: true,
    retry,
    timeoutMs: 10_000,
    input: z.object({ orderId: z.string() }),
    output: z.object({ ledgerId: z.string() }),
    async execute(args, context) {
      // A repeat of the same key answers with the first call's id, so the output does not depend on retries.
      return { ledgerId: (await call("lookup", args, context)).id };
    },
  });
  const reserve = defineTool({
    name: "reserve",
    description: "Reserves stock for an order (idempotent)",
    idempotent: true,
    retry,
    timeoutMs: 10_000,
    input: z.object({ orderId: z.string() }),
    output: z.object({ ledgerId: z.string() }),
    async execute(args, context) {
      return { ledgerId: (await call("reserve", args, context)).id };
    },
  });
  const charge = defineTool({
    name: "charge",
    description: "Charges the customer (not idempotent: called at most once per effect)",
    idempotent: false,
    timeoutMs: 10_000,
    input: z.object({ orderId: z.string(), amountCents: z.number().int().positive(), attempt: z.number().int() }),
    output: z.object({ ledgerId: z.string() }),
    async execute(args, context) {
      const answer = await call("charge", args, context);
      // A second call with one key would be a double charge in real life; the runtime must never make it.
      if (!answer.applied) throw new Error(`charge ${context.idempotencyKey} was called twice`);
      return { ledgerId: answer.id };
    },
  });

  const hold = defineAgent({
    type: "crash-hold",
    version: 1,
    tools: [reserve],
    machine: setup({
      types: {} as { context: { orderId: string; reserveId?: string }; input: { orderId: string }; events: any },
    }).createMachine({
      context: ({ input }) => ({ orderId: input.orderId }),
      initial: "reserving",
      states: {
        reserving: {
          entry: callTool("reserve", ({ context }) => ({ orderId: context.orderId })),
          on: {
            "tool.reserve.done": { target: "held", actions: assign({ reserveId: ({ event }) => event.output.ledgerId }) },
            "tool.reserve.failed": "failed",
          },
        },
        held: { type: "final" },
        failed: { type: "final", tags: ["failed"] },
      },
      output: ({ context }) => ({ reserveId: context.reserveId ?? null }),
    }),
  });

  const desk = defineAgent({
    type: deskAgentType,
    version: 1,
    tools: [lookup, charge],
    machine: setup({
      types: {} as { context: DeskContext; input: { orderId: string }; events: any },
    }).createMachine({
      context: ({ input }) => ({ orderId: input.orderId, chargeAttempts: 1 }),
      initial: "lookingUp",
      states: {
        lookingUp: {
          entry: callTool("lookup", ({ context }) => ({ orderId: context.orderId })),
          on: {
            "tool.lookup.done": { target: "holding", actions: assign({ lookupId: ({ event }) => event.output.ledgerId }) },
            "tool.lookup.failed": "failed",
          },
        },
        holding: {
          entry: spawnAgent("hold", "crash-hold", ({ context }) => ({ orderId: context.orderId })),
          on: {
            "child.hold.done": { target: "charging", actions: assign({ holdId: ({ event }) => event.output.reserveId }) },
            "child.hold.failed": "failed",
            "child.hold.stopped": "failed",
          },
        },
        charging: {
          entry: callTool("charge", ({ context }) => ({ orderId: context.orderId, amountCents: 4200, attempt: context.chargeAttempts })),
          on: {
            "tool.charge.done": { target: "settling", actions: assign({ chargeId: ({ event }) => event.output.ledgerId }) },
            // A charge reconciled as never applied is made again, once, as a new effect with a new key.
            "tool.charge.failed": [
              {
                guard: ({ context }) => context.chargeAttempts < 2,
                target: "charging",
                reenter: true,
                actions: assign({ chargeAttempts: ({ context }) => context.chargeAttempts + 1 }),
              },
              { target: "failed" },
            ],
          },
        },
        settling: {
          entry: startTimer("settle", options.settleDelayMs ?? 150),
          on: { "timer.settle": "done" },
        },
        done: { type: "final" },
        failed: { type: "final", tags: ["failed"] },
      },
      output: ({ context }): DeskOutput => ({
        orderId: context.orderId,
        lookupId: context.lookupId ?? null,
        holdId: context.holdId ?? null,
        chargeId: context.chargeId ?? null,
        chargeAttempts: context.chargeAttempts,
      }),
    }),
  });

  return { desk, hold, agents: [desk, hold] };
}
