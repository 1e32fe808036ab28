import { describe, expect, it } from "vitest";
import { createNode } from "../../../actors/node.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { makeDeskAgents, type CallLog } from "../../helpers/agents.js";
import { silent } from "../../helpers/silent-logger.js";

describe("a run on one node", () => {
  it("looks up, spawns a child, refunds once, waits on a timer and completes", async () => {
    const log: CallLog = { calls: [] };
    const { desk, check } = makeDeskAgents(log, { failLookupTimes: 2 });
    const store = createMemoryStore();
    await store.migrate();
    const node = createNode({ store, agents: [desk, check], logger: silent });
    await node.start();
    const { runId, created } = await node.startRun({
      tenantId: "acme",
      agentType: "support-desk",
      input: { orderId: "o-1" },
      idempotencyKey: "k1",
    });
    expect(created).toBe(true);
    const again = await node.startRun({ tenantId: "acme", agentType: "support-desk", input: { orderId: "o-1" }, idempotencyKey: "k1" });
    expect(again).toEqual({ runId, created: false });
    const view = await node.waitForStatus("acme", runId, { timeoutMs: 5000 });
    expect(view.status).toBe("completed");
    expect(view.output).toMatchObject({ total: 42, risk: "low" });
    const lookups = log.calls.filter((c) => c.tool === "lookupOrder");
    expect(lookups).toHaveLength(3);
    expect(new Set(lookups.map((c) => c.key)).size).toBe(1);
    expect(lookups.map((c) => c.attempt)).toEqual([1, 2, 3]);
    expect(log.calls.filter((c) => c.tool === "refund")).toHaveLength(1);
    const journal = await node.readJournal("acme", runId);
    expect(journal.map((e) => e.seq)).toEqual(journal.map((_, i) => i + 1));
    for (let i = 1; i < journal.length; i++) expect(journal[i]!.prevHash).toBe(journal[i - 1]!.hash);
    const effects = await node.listEffects("acme", runId);
    expect(effects.map((e) => [e.name, e.state, e.attempts])).toEqual([
      ["lookupOrder", "completed", 3],
      ["refund", "completed", 1],
    ]);
    const children = await node.listChildren("acme", runId);
    expect(children).toHaveLength(1);
    expect(children[0]).toMatchObject({ status: "completed", depth: 1, parentId: runId });
    // Finished actors leave memory: nothing of this run stays resident.
    expect(node.residentActors).toBe(0);
    const replayed = await node.replay("acme", runId);
    expect(replayed.steps).toBe(journal.length);
    await node.close();
  });
});
