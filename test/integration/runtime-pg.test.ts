import { afterAll, describe, expect, it } from "vitest";
import { createNode } from "../../actors/node.js";
import { createPgStore } from "../../persistence/pg/index.js";
import { makeDeskAgents, type CallLog } from "../helpers/agents.js";
import { databaseUrl } from "../helpers/services.js";
import { createTestPgPool, dropSchemas, uniqueSchema } from "../helpers/sql.js";
import { silent } from "../helpers/silent-logger.js";

const schemas: string[] = [];

afterAll(async () => {
  const pool = createTestPgPool(1);
  await dropSchemas(pool, schemas);
  await pool.end();
});

describe("the runtime on real PostgreSQL", () => {
  it("finishes 200 concurrent runs with group commit, each effect applied once", async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 4 });
    await store.migrate();
    const log: CallLog = { calls: [] };
    // Fewer failures than effectAttemptsMax (5): the first run's fast retries may take all of them,
    // and must still succeed on its last attempt.
    const { desk, check } = makeDeskAgents(log, { failLookupTimes: 4 });
    const node = createNode({ store, agents: [desk, check], logger: silent });
    await node.start();
    const runs = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        node.startRun({
          tenantId: i % 2 === 0 ? "acme" : "globex",
          agentType: "support-desk",
          input: { orderId: `o-${i}` },
          idempotencyKey: `ticket-${i}`,
        }),
      ),
    );
    const views = await Promise.all(
      runs.map(({ runId }, i) => node.waitForStatus(i % 2 === 0 ? "acme" : "globex", runId, { timeoutMs: 60_000 })),
    );
    expect(views.every((v) => v.status === "completed")).toBe(true);
    const refunds = log.calls.filter((c) => c.tool === "refund");
    expect(refunds).toHaveLength(200);
    expect(new Set(refunds.map((c) => c.key)).size).toBe(200);
    const lookups = new Map<string, number>();
    for (const call of log.calls.filter((c) => c.tool === "lookupOrder")) lookups.set(call.key, (lookups.get(call.key) ?? 0) + 1);
    expect(lookups.size).toBe(200);
    expect(node.commitStats.largestBatch).toBeGreaterThan(1);
    for (const [i, { runId }] of runs.entries()) {
      const tenantId = i % 2 === 0 ? "acme" : "globex";
      const journal = await node.readJournal(tenantId, runId);
      expect(journal.map((e) => e.seq)).toEqual(journal.map((_, k) => k + 1));
      if (i < 5) expect((await node.replay(tenantId, runId)).stateHash).toBe(journal.at(-1)!.stateHash);
    }
    // Tenants never see each other: the same actor id under the other tenant does not exist.
    await expect(node.getActor("globex", runs[0]!.runId)).rejects.toMatchObject({ code: "ERR_ACTOR_NOT_FOUND" });
    await node.close();
    await store.close();
  });

  it("a second node on the same store recovers what the first left unfinished", async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 4 });
    await store.migrate();
    const log: CallLog = { calls: [] };
    const { desk, check } = makeDeskAgents(log);
    const first = createNode({ store, agents: [desk, check], logger: silent });
    await first.start();
    const runs = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        first.startRun({ tenantId: "acme", agentType: "support-desk", input: { orderId: `o-${i}` }, idempotencyKey: `t-${i}` }),
      ),
    );
    await new Promise((r) => setTimeout(r, 15));
    await first.close();
    const second = createNode({ store, agents: [desk, check], logger: silent });
    const { recovered } = await second.start();
    expect(recovered).toBeGreaterThan(0);
    let reconciled = 0;
    for (const { runId } of runs) {
      for (;;) {
        // A refund interrupted by the close is unknown: reconcile it with what the tool really saw.
        const unknown = (await second.listEffects("acme", runId)).find((e) => e.state === "unknown");
        if (unknown !== undefined) {
          const called = log.calls.some((c) => c.key === unknown.idempotencyKey);
          const outcome = called
            ? { state: "completed" as const, result: { refundId: "r-reconciled" } }
            : { state: "failed" as const, error: { code: "ERR_TOOL_FAILED", message: "never reached the bank" } };
          await second.reconcileEffect({ tenantId: "acme", actorId: runId, effectId: unknown.effectId, outcome });
          reconciled += 1;
        }
        const view = await second.waitForStatus("acme", runId, { timeoutMs: 500 }).catch(() => undefined);
        if (view !== undefined) {
          expect(["completed", "failed"]).toContain(view.status);
          break;
        }
      }
    }
    const refundKeys = log.calls.filter((c) => c.tool === "refund").map((c) => c.key);
    expect(new Set(refundKeys).size).toBe(refundKeys.length); // never called twice
    expect(reconciled).toBeLessThanOrEqual(20);
    await second.close();
    await store.close();
  });
});
