import fc from "fast-check";
import { assign, setup } from "xstate";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { callTool } from "../../../actors/actions.js";
import { defineAgent } from "../../../actors/define-agent.js";
import { defineTool } from "../../../actors/define-tool.js";
import { createNode } from "../../../actors/node.js";
import { canonicalJson } from "../../../core/json.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";

const double = defineTool({
  name: "double",
  description: "Doubles a number",
  idempotent: true,
  input: z.object({ n: z.number() }),
  output: z.object({ n: z.number() }),
  execute: async ({ n }) => ({ n: n * 2 }),
});

const agent = defineAgent({
  type: "folder",
  version: 1,
  tools: [double],
  machine: setup({ types: {} as { context: { items: string[]; sum: number }; events: any } }).createMachine({
    context: { items: [], sum: 0 },
    initial: "open",
    states: {
      open: {
        on: {
          add: { actions: assign({ items: ({ context, event }) => [...context.items, event.text] }) },
          compute: "computing",
          close: "closed",
        },
      },
      computing: {
        entry: callTool("double", ({ event }) => ({ n: event.n })),
        on: {
          "tool.double.done": { target: "open", actions: assign({ sum: ({ context, event }) => context.sum + event.output.n }) },
          add: { actions: assign({ items: ({ context, event }) => [...context.items, event.text] }) },
        },
      },
      closed: { type: "final" },
    },
    output: ({ context }) => context,
  }),
});

const eventArb = fc.oneof(
  fc.record({ type: fc.constant("add"), text: fc.string({ maxLength: 12 }) }),
  fc.record({ type: fc.constant("compute"), n: fc.integer({ min: -1000, max: 1000 }) }),
);

describe("journal fold (property)", () => {
  it("folding the journal reproduces the stored snapshot and every recorded state hash", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb, { minLength: 1, maxLength: 25 }),
        fc.integer({ min: 1, max: 6 }),
        fc.boolean(),
        async (events, interval, close) => {
          const store = createMemoryStore();
          await store.migrate();
          const node = createNode({ store, agents: [agent], logger: silent, limits: { snapshotIntervalSteps: interval } });
          await node.start();
          const { runId } = await node.startRun({ tenantId: "t", agentType: "folder", input: null, idempotencyKey: "k" });
          let i = 0;
          for (const event of [...events, ...(close ? [{ type: "close" }] : [])]) {
            await node.sendEvent({ tenantId: "t", actorId: runId, event: event as never, messageId: `m${i++}` });
          }
          // Quiescent: every message applied and no effect open.
          const deadline = Date.now() + 5000;
          for (;;) {
            const pending = await store.pendingMessages("t", runId, 100);
            const open = await store.listEffects("t", runId, { states: ["planned", "running"] });
            const actor = await store.getActor("t", runId);
            if ((pending.length === 0 && open.length === 0) || actor?.status !== "active") break;
            if (Date.now() > deadline) throw new Error("not quiescent");
            await new Promise((r) => setTimeout(r, 2));
          }
          const record = (await store.getActor("t", runId))!;
          const journal = await store.readJournal("t", runId, { afterSeq: 0, limit: 10_000 });
          expect(journal.map((e) => e.seq)).toEqual(journal.map((_, k) => k + 1));
          expect(record.revision).toBe(journal.length);
          const folded = await node.replayEnvelope("t", runId, record.snapshotSeq);
          expect(canonicalJson(folded)).toBe(canonicalJson(record.snapshot));
          const replay = await node.replay("t", runId);
          expect(replay.stateHash).toBe(journal.at(-1)!.stateHash);
          await node.close();
        },
      ),
      { numRuns: 40 },
    );
  });

  it("reports a divergence when the statechart no longer reproduces its journal", async () => {
    const store = createMemoryStore();
    await store.migrate();
    const node = createNode({ store, agents: [agent], logger: silent });
    await node.start();
    const { runId } = await node.startRun({ tenantId: "t", agentType: "folder", input: null, idempotencyKey: "k" });
    await node.sendEvent({ tenantId: "t", actorId: runId, event: { type: "add", text: "a" }, messageId: "m" });
    await node.sendEvent({ tenantId: "t", actorId: runId, event: { type: "close" }, messageId: "c" });
    await node.waitForStatus("t", runId, { timeoutMs: 3000 });
    await node.close();
    const tampered = defineAgent({
      type: "folder",
      version: 1,
      tools: [double],
      machine: setup({ types: {} as { context: { items: string[]; sum: number }; events: any } }).createMachine({
        context: { items: [], sum: 0 },
        initial: "open",
        states: {
          open: { on: { add: { actions: assign({ items: ({ context }) => [...context.items, "other"] }) }, close: "closed" } },
          closed: { type: "final" },
        },
      }),
    });
    const other = createNode({ store, agents: [tampered], logger: silent });
    await expect(other.replay("t", runId)).rejects.toMatchObject({ code: "ERR_REPLAY_DIVERGED", details: { seq: 2 } });
  });
});
