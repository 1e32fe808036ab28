/**
 * The agent that cluster tests run in their node processes. A `cluster-worker` run charges once
 * when it starts, then once more for every `ping` event it receives, and completes after its
 * `pingsNeeded`-th ping's charge: `pingsNeeded + 1` charges in all, numbered `n = 0 … pingsNeeded`.
 *
 * `charge` is an idempotent tool: a POST to the ledger service with the effect's idempotency key
 * as `Idempotency-Key` and the lease epoch as `X-Tessera-Epoch`. Its payload `{ runId, n }` names
 * the logical charge, so a test can tell a repeat of one effect (same key: allowed, counted) from
 * a charge made twice (two keys applied for one `{ runId, n }`: a duplicate).
 */
import { assign, setup } from "xstate";
import { z } from "zod";
import { callTool } from "../../actors/actions.js";
import { defineAgent, type AgentDefinition } from "../../actors/define-agent.js";
import { defineTool, type ToolContext } from "../../actors/define-tool.js";

/** The agent type of every cluster-test run. */
export const clusterAgentType = "cluster-worker";

/** The input of a `cluster-worker` run. */
export interface ClusterRunInput {
  /** The run's own id, repeated in every charge's payload. */
  runId: string;
  /** Pings the run waits for before it completes. */
  pingsNeeded: number;
}

/** The output of a completed run. */
export interface ClusterRunOutput {
  charges: number;
  pings: number;
}

/** The ledger `kind` of a charge. */
export const chargeKind = "charge";

/** Hooks a worker uses to report tool calls (on stdout, for the parent to read). */
export interface ChargeHooks {
  /** Called right before the HTTP request leaves. */
  beforeCall?(context: ToolContext, args: { runId: string; n: number }): void;
  /** Called once the ledger answered. */
  afterCall?(context: ToolContext, args: { runId: string; n: number }, applied: boolean): void;
}

interface WorkerContext {
  runId: string;
  pingsNeeded: number;
  /** Charges completed so far. */
  charges: number;
  /** Pings received so far (a ping that arrives while a charge is under way is counted, not lost). */
  pings: number;
}

/**
 * Builds the cluster-test agent over a ledger.
 *
 * @param options - the ledger's base URL, an answer delay asked of the ledger, and hooks
 * @returns the agents to give `createNode`
 * @example
 * ```ts
 * const node = createNode({ store, agents: makeClusterAgents({ ledgerUrl: ledger.url }) });
 * ```
 */
export function makeClusterAgents(options: { ledgerUrl: string; ledgerDelayMs?: number; hooks?: ChargeHooks }): AgentDefinition[] {
  const delayMs = options.ledgerDelayMs ?? 0;
  const charge = defineTool({
    name: "charge",
    description: "Charges once per (run, n) through the ledger (idempotent by key)",
    idempotent: true,
    retry: { attemptsMax: 20, baseDelayMs: 20, maxDelayMs: 250 },
    timeoutMs: 10_000,
    input: z.object({ runId: z.string(), n: z.number().int().min(0) }),
    output: z.object({ ledgerId: z.string(), applied: z.boolean() }),
    async execute(args, context) {
      options.hooks?.beforeCall?.(context, args);
      const response = await fetch(`${options.ledgerUrl}/effects${delayMs > 0 ? `?delayMs=${delayMs}` : ""}`, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          "Idempotency-Key": context.idempotencyKey,
          "X-Tessera-Epoch": String(context.epoch),
        },
        body: JSON.stringify({ kind: chargeKind, payload: args }),
        signal: context.signal,
      });
      const body = (await response.json()) as { applied?: boolean; id?: string; error?: string };
      if ((response.status !== 200 && response.status !== 201) || typeof body.id !== "string") {
        throw new Error(`ledger answered ${response.status}: ${body.error ?? JSON.stringify(body)}`);
      }
      options.hooks?.afterCall?.(context, args, body.applied === true);
      return { ledgerId: body.id, applied: body.applied === true };
    },
  });

  const worker = defineAgent({
    type: clusterAgentType,
    version: 1,
    tools: [charge],
    machine: setup({
      types: {} as { context: WorkerContext; input: ClusterRunInput; events: any },
    }).createMachine({
      context: ({ input }) => ({ runId: input.runId, pingsNeeded: input.pingsNeeded, charges: 0, pings: 0 }),
      initial: "charging",
      states: {
        charging: {
          entry: callTool("charge", ({ context }) => ({ runId: context.runId, n: context.charges })),
          on: {
            ping: { actions: assign({ pings: ({ context }) => context.pings + 1 }) },
            // Guards see the context before the assignment: `charges + 1` is the count after this one.
            "tool.charge.done": [
              {
                guard: ({ context }) => context.charges + 1 > context.pingsNeeded,
                target: "done",
                actions: assign({ charges: ({ context }) => context.charges + 1 }),
              },
              {
                guard: ({ context }) => context.pings >= context.charges + 1,
                target: "charging",
                reenter: true,
                actions: assign({ charges: ({ context }) => context.charges + 1 }),
              },
              { target: "waiting", actions: assign({ charges: ({ context }) => context.charges + 1 }) },
            ],
            "tool.charge.failed": "failed",
          },
        },
        waiting: {
          on: { ping: { target: "charging", actions: assign({ pings: ({ context }) => context.pings + 1 }) } },
        },
        done: { type: "final" },
        failed: { type: "final", tags: ["failed"] },
      },
      output: ({ context }): ClusterRunOutput => ({ charges: context.charges, pings: context.pings }),
    }),
  });
  return [worker];
}
