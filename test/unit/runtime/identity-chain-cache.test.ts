/**
 * The chain a run is started with is verified once: the intake's verification is the one the run's
 * tool calls find in the node's chain cache, also after other actors certified keys of their own.
 */
import { assign, setup } from "xstate";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { callTool } from "../../../actors/actions.js";
import { defineAgent } from "../../../actors/define-agent.js";
import { defineTool } from "../../../actors/define-tool.js";
import { createNode, TesseraNode } from "../../../actors/node.js";
import { systemClock } from "../../../core/clock.js";
import { sha256 } from "../../../core/ids.js";
import { TenantAuthority } from "../../../identity/index.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";

const lookup = defineTool({
  name: "lookup",
  description: "Looks a number up",
  idempotent: true,
  input: z.object({ i: z.number().int() }),
  output: z.object({ i: z.number().int() }),
  execute: async ({ i }) => ({ i }),
});

const caller = defineAgent({
  type: "caller",
  version: 1,
  tools: [lookup],
  machine: setup({ types: {} as { context: { i: number }; events: any } }).createMachine({
    context: { i: 0 },
    initial: "calling",
    states: {
      calling: {
        entry: callTool("lookup", ({ context }) => ({ i: context.i })),
        on: {
          "tool.lookup.done": [
            { guard: ({ context }) => context.i >= 2, target: "done" },
            { target: "calling", reenter: true, actions: assign({ i: ({ context }) => context.i + 1 }) },
          ],
        },
      },
      done: { type: "final" },
    },
  }),
});

describe("identity: one verification per presented chain", () => {
  it("a run's tool calls are chain-cache hits from the first one, though every run certified a key since", async () => {
    const authority = await TenantAuthority.create({ tenant: "acme", clock: systemClock });
    const store = createMemoryStore();
    await store.migrate();
    const node = createNode({
      store,
      agents: [caller],
      logger: silent,
      identity: { authorities: new Map([["acme", authority]]), rootAuthority: () => true },
    });
    await node.start();
    try {
      const runIds = ["run-a", "run-b", "run-c"];
      for (const runId of runIds) {
        const chain = [
          await authority.issueRootLink({
            aud: TesseraNode.principalOf("acme", runId),
            caps: [{ res: "tool:lookup", act: "/invoke", cav: [] }],
            mdl: 1,
            onBehalfOf: { user: "tsr:acme:user:alice", authnHash: sha256("alice session evidence") },
          }),
        ];
        await node.startRun({ tenantId: "acme", agentType: "caller", input: null, idempotencyKey: runId, runId, chain });
      }
      for (const runId of runIds) {
        expect((await node.waitForStatus("acme", runId, { timeoutMs: 10_000 })).status).toBe("completed");
        const effects = await node.listEffects("acme", runId);
        expect(effects).toHaveLength(3);
        const caches = effects.map((effect) => (effect.audit as { verifier: { cache: string } }).verifier.cache);
        expect(caches).toEqual(["hit", "hit", "hit"]);
      }
    } finally {
      await node.close();
    }
  });
});
