import { afterAll, describe, expect, it } from "vitest";
import { createNode } from "../../actors/node.js";
import { AgentError } from "../../core/errors.js";
import { createPgStore } from "../../persistence/pg/index.js";
import { createCommitDropProxy } from "../helpers/commit-drop-proxy.js";
import { databaseUrl } from "../helpers/services.js";
import { createTestPgPool, dropSchemas, uniqueSchema } from "../helpers/sql.js";
import { silent } from "../helpers/silent-logger.js";
import { makeClusterAgents, type CallCounter } from "../unit/runtime/cluster-agents.js";

const schemas: string[] = [];
afterAll(async () => {
  const pool = createTestPgPool(1);
  await dropSchemas(pool, schemas);
  await pool.end();
});

/** Retries a call whose COMMIT may have landed without an answer: the same key makes the retry safe. */
async function retried<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof AgentError) || !error.code.startsWith("ERR_STORE") || attempt >= 20) throw error;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

describe("ambiguous commits (PostgreSQL behind a proxy that cuts the connection after COMMIT)", () => {
  it("loses no step and applies none twice when COMMIT answers never arrive", async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const proxy = createCommitDropProxy(Number(new URL(databaseUrl).port || 5432));
    const { port } = await proxy;
    const url = new URL(databaseUrl);
    url.port = String(port);
    // The schema is prepared directly; only the node's traffic goes through the proxy.
    const direct = createPgStore({ connectionString: databaseUrl, schema });
    await direct.migrate();
    await direct.close();
    const store = createPgStore({ connectionString: url.toString(), schema, poolSize: 4 });
    const calls: CallCounter = new Map();
    const node = createNode({ store, agents: makeClusterAgents(calls), logger: silent });
    await node.start();
    const p = await proxy;
    const runs = 30;
    const events = 5;
    const ids: string[] = [];
    for (let i = 0; i < runs; i++) {
      ids.push(
        (
          await retried(() =>
            node.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: `k${i}`, runId: `run-${i}` }),
          )
        ).runId,
      );
    }
    // Cut the answer of every fifth COMMIT while the runs take their steps (a time-based cut would
    // hit a lone retry every time).
    p.cutEvery(5);
    const until = async (check: () => Promise<boolean>): Promise<void> => {
      const deadline = Date.now() + 60_000;
      while (!(await check())) {
        if (Date.now() > deadline) throw new Error("condition not reached");
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await until(async () => (await Promise.all(ids.map((id) => retried(() => node.getActor("t", id))))).every((v) => v.revision >= 2));
    for (let n = 0; n < events; n++) {
      await Promise.all(
        ids.map((id) => retried(() => node.sendEvent({ tenantId: "t", actorId: id, event: { type: "inc", n }, messageId: `${id}-${n}` }))),
      );
    }
    await Promise.all(
      ids.map((id) => retried(() => node.sendEvent({ tenantId: "t", actorId: id, event: { type: "finish" }, messageId: `${id}-fin` }))),
    );
    const views = await Promise.all(ids.map((id) => retried(() => node.waitForStatus("t", id, { timeoutMs: 60_000 }))));
    p.cutEvery(0);
    expect(p.dropped).toBeGreaterThan(5);
    // Nothing lost: every run took every event, in order.
    expect(views.every((v) => v.status === "completed")).toBe(true);
    for (const id of ids) {
      expect(await retried(() => node.getContext("t", id))).toEqual({ seen: [0, 1, 2, 3, 4] });
      // Nothing twice: one journal entry per seq and per message.
      const journal = await retried(() => node.readJournal("t", id));
      expect(journal.map((e) => e.seq)).toEqual(journal.map((_, k) => k + 1));
      const messages = journal.filter((e) => e.messageId !== undefined).map((e) => e.messageId);
      expect(new Set(messages).size).toBe(messages.length);
      expect(messages).toHaveLength(events + 1);
    }
    // One effect per run, whatever its key was called (an idempotent retry after an ambiguous commit
    // uses the same key).
    expect(calls.size).toBe(runs);
    console.log(
      JSON.stringify({
        test: "ambiguous-commit",
        commitsCut: p.dropped,
        toolCallsPerKey: { max: Math.max(...calls.values()), total: [...calls.values()].reduce((a, b) => a + b, 0) },
      }),
    );
    await node.close();
    await store.close();
    await p.close();
  });
});
