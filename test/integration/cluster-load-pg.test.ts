import { afterAll, describe, expect, it } from "vitest";
import { createNode } from "../../actors/node.js";
import { createPgStore } from "../../persistence/pg/index.js";
import { makeClusterAgents, type CallCounter } from "../unit/runtime/cluster-agents.js";
import { databaseUrl } from "../helpers/services.js";
import { createTestPgPool, dropSchemas, uniqueSchema } from "../helpers/sql.js";
import { silent } from "../helpers/silent-logger.js";
import { until } from "../helpers/until.js";

const schemas: string[] = [];
afterAll(async () => {
  const pool = createTestPgPool(1);
  await dropSchemas(pool, schemas);
  await pool.end();
});

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

describe("load on one actor and many idle actors (PostgreSQL)", () => {
  it("applies 1,000 concurrent events to one actor once each, in one order, while other actors keep going", async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 4 });
    await store.migrate();
    const calls: CallCounter = new Map();
    const node = createNode({ store, agents: makeClusterAgents(calls), logger: silent });
    await node.start();
    const hot = (await node.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: "hot" })).runId;
    const others: string[] = [];
    for (let i = 0; i < 20; i++)
      others.push((await node.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: `o${i}` })).runId);
    await until(
      async () => (await Promise.all([hot, ...others].map((id) => store.getActor("t", id)))).every((r) => r!.revision >= 2),
      30_000,
      20,
    );

    // Latency of the unrelated actors' events, alone and during the burst (reported, not asserted).
    const latencyOf = async (tag: string): Promise<number[]> => {
      const sent = new Map<string, number>();
      await Promise.all(
        others.map(async (id) => {
          sent.set(id, Date.now());
          await node.sendEvent({ tenantId: "t", actorId: id, event: { type: "inc", n: 1 }, messageId: `${id}-${tag}` });
        }),
      );
      const latencies: number[] = [];
      for (const id of others) {
        await until(async () => (await node.readJournal("t", id)).some((e) => e.messageId === `${id}-${tag}`), 30_000, 20);
        const entry = (await node.readJournal("t", id)).find((e) => e.messageId === `${id}-${tag}`)!;
        latencies.push(entry.createdAt - sent.get(id)!);
      }
      return latencies;
    };
    const alone = await latencyOf("alone");

    const burst = Array.from({ length: 1000 }, (_, i) =>
      node.sendEvent({ tenantId: "t", actorId: hot, event: { type: "inc", n: i }, messageId: `e${i}` }),
    );
    const during = latencyOf("during");
    const accepted = await Promise.all(burst);
    expect(accepted.every((a) => a.accepted)).toBe(true);
    // Sent again: every one is a duplicate.
    const again = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        node.sendEvent({ tenantId: "t", actorId: hot, event: { type: "inc", n: i }, messageId: `e${i}` }),
      ),
    );
    expect(again.every((a) => !a.accepted)).toBe(true);
    const duringLatencies = await during;
    await until(async () => (await store.getActor("t", hot))!.revision >= 1002, 60_000, 20);
    await node.sendEvent({ tenantId: "t", actorId: hot, event: { type: "finish" }, messageId: "fin" });
    expect(await node.waitForStatus("t", hot, { timeoutMs: 30_000 })).toMatchObject({ status: "completed", output: { count: 1000 } });

    const journal = await node.readJournal("t", hot, { limit: 2000 });
    const applied = journal.filter((e) => e.messageId?.startsWith("e")).map((e) => e.messageId!);
    expect(applied).toHaveLength(1000);
    expect(new Set(applied).size).toBe(1000);
    expect(journal.map((e) => e.seq)).toEqual(journal.map((_, k) => k + 1));
    // The order the actor saw is the journal's order.
    const context = (await node.replay("t", hot)).context as { seen: number[] };
    expect(context.seen.map((n) => `e${n}`)).toEqual(applied);
    console.log(
      JSON.stringify({
        test: "1000-events-one-actor",
        otherActorsLatencyMs: {
          alone: { p50: percentile(alone, 50), p99: percentile(alone, 99) },
          duringBurst: { p50: percentile(duringLatencies, 50), p99: percentile(duringLatencies, 99) },
        },
        largestBatch: node.commitStats.largestBatch,
      }),
    );
    await node.close();
    await store.close();
  });

  it("keeps 10,000 idle actors under the resident cap and reactivates them on their next message", async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 4 });
    await store.migrate();
    const calls: CallCounter = new Map();
    const cap = 1_000;
    const node = createNode({
      store,
      agents: makeClusterAgents(calls),
      logger: silent,
      passivation: { idleMs: 60_000, residentActorsMax: cap },
    });
    await node.start();
    let residentMax = 0;
    const sampler = setInterval(() => (residentMax = Math.max(residentMax, node.residentActors)), 10);
    const ids: string[] = [];
    const started = Date.now();
    for (let batch = 0; batch < 50; batch++) {
      const page = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          node.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: `k${batch * 200 + i}` }),
        ),
      );
      ids.push(...page.map((p) => p.runId));
    }
    await until(() => calls.size === 10_000, 120_000, 20);
    await until(async () => (await store.findPendingWork(node.nodeId, Date.now(), 10)).length === 0, 60_000, 20);
    const createMs = Date.now() - started;
    clearInterval(sampler);
    expect(node.residentActors).toBeLessThanOrEqual(cap);
    expect(residentMax).toBeLessThanOrEqual(cap);
    const heapBefore = process.memoryUsage().heapUsed;

    // Reactivation: one event each to 200 passivated actors, one at a time.
    const sample = ids.filter((_, i) => i % 50 === 7);
    const latencies: number[] = [];
    for (const id of sample) {
      const sentAt = Date.now();
      await node.sendEvent({ tenantId: "t", actorId: id, event: { type: "inc", n: 1 }, messageId: `${id}-wake` });
      await until(async () => (await store.getActor("t", id))!.revision >= 3, 10_000, 20);
      const entry = (await node.readJournal("t", id, { afterSeq: 2 }))[0]!;
      latencies.push(entry.createdAt - sentAt);
    }
    expect(node.residentActors).toBeLessThanOrEqual(cap);
    console.log(
      JSON.stringify({
        test: "10k-idle-actors",
        createMs,
        residentCap: cap,
        residentMaxSampled: residentMax,
        residentAfter: node.residentActors,
        passivated: node.clusterStats.passivated,
        deferredActivations: node.clusterStats.deferredActivations,
        heapUsedMb: Math.round(heapBefore / 1e6),
        reactivationMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), n: latencies.length },
      }),
    );
    await node.close();
    await store.close();
  });
});
