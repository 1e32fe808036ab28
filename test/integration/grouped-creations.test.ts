import { afterAll, describe, expect, it } from "vitest";
import type { AgentError } from "../../core/errors.js";
import { StoreError } from "../../core/errors.js";
import { createPgStore, type SqlStore } from "../../persistence/pg/index.js";
import { createPgliteStore } from "../../persistence/pglite/index.js";
import { GroupedStatements } from "../../persistence/sql/grouped-statements.js";
import type { SqlExecutor } from "../../persistence/sql/transaction.js";
import { newActor } from "../conformance/store-fixtures.js";
import { databaseUrl } from "../helpers/services.js";
import { createTestPgPool, dropSchemas, uniqueSchema } from "../helpers/sql.js";

const admin = createTestPgPool(1);
const schemas: string[] = [];

afterAll(async () => {
  await dropSchemas(admin, schemas);
  await admin.end();
});

const stores: Array<[string, () => Promise<SqlStore>]> = [
  [
    "PostgreSQL",
    async () => {
      const schema = uniqueSchema();
      schemas.push(schema);
      return createPgStore({ connectionString: databaseUrl, schema, poolSize: 2 });
    },
  ],
  ["PGlite", () => createPgliteStore({ dataDir: "memory://" })],
];

/** What a createActor call gave: its result, or its error code. */
async function outcome(call: Promise<{ actor: { actorId: string }; created: boolean }>): Promise<string> {
  try {
    const { actor, created } = await call;
    return `${created ? "created" : "existing"} ${actor.actorId}`;
  } catch (error) {
    return (error as AgentError).code;
  }
}

describe.each(stores)("actor creations written together (%s)", (_, open) => {
  it("creates concurrent actors in fewer transactions than actors, each readable", async () => {
    const store = await open();
    try {
      await store.migrate();
      const before = store.stats.transactions;
      const actors = Array.from({ length: 40 }, () => newActor("acme"));
      const results = await Promise.all(actors.map((actor, i) => store.createActor(actor, { runKey: `run-${i}`, inputHash: "h" })));
      expect(results.every((r) => r.created)).toBe(true);
      expect(store.stats.transactions - before).toBeLessThan(actors.length);
      for (const actor of actors) expect((await store.getActor("acme", actor.actorId))?.actorId).toBe(actor.actorId);
    } finally {
      await store.close();
    }
  });

  it("gives each creation of a group its own answer when one of them is refused", async () => {
    const store = await open();
    try {
      await store.migrate();
      await store.createActor(newActor("acme"), { runKey: "taken", inputHash: "h1" });
      // The first call is written alone; the others queue behind it and go as one group.
      const first = store.createActor(newActor("acme", { actorId: "act_first" }));
      const calls = [
        store.createActor(newActor("acme", { actorId: "act_twice" })),
        store.createActor(newActor("acme", { actorId: "act_twice" })),
        store.createActor(newActor("acme", { actorId: "act_key_a" }), { runKey: "shared", inputHash: "h" }),
        store.createActor(newActor("acme", { actorId: "act_key_b" }), { runKey: "shared", inputHash: "h" }),
        store.createActor(newActor("acme", { actorId: "act_mismatch" }), { runKey: "taken", inputHash: "h2" }),
        store.createActor(newActor("acme", { actorId: "act_plain" })),
      ];
      expect(await outcome(first)).toBe("created act_first");
      expect(await Promise.all(calls.map(outcome))).toEqual([
        "created act_twice",
        "ERR_ACTOR_EXISTS",
        "created act_key_a",
        "existing act_key_a",
        "ERR_IDEMPOTENCY_MISMATCH",
        "created act_plain",
      ]);
      expect(await store.getActor("acme", "act_key_b")).toBeUndefined();
      expect(await store.getActor("acme", "act_mismatch")).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});

describe("GroupedStatements", () => {
  /** An executor whose every transaction fails with `error`, counting attempts. */
  function failing(error: Error): { executor: SqlExecutor; attempts: () => number } {
    let attempts = 0;
    const executor = {
      transaction: () => {
        attempts += 1;
        return Promise.reject(error);
      },
    } as unknown as SqlExecutor;
    return { executor, attempts: () => attempts };
  }

  it.each([
    ["a broken connection", new StoreError("ERR_STORE_UNAVAILABLE", "connection terminated after COMMIT was sent", { details: {} })],
    ["a server shutting down", new StoreError("ERR_STORE_UNAVAILABLE", "terminating connection", { details: { sqlState: "57P01" } })],
    ["CockroachDB's completion unknown", new StoreError("ERR_STORE_RETRYABLE", "result is ambiguous", { details: { sqlState: "40003" } })],
    [
      "serialization failures past their retries",
      new StoreError("ERR_STORE_RETRYABLE", "could not serialize", { details: { sqlState: "40001" } }),
    ],
  ])("fails every statement of a group that failed as a whole (%s), without running them again", async (_, unknown) => {
    const { executor, attempts } = failing(unknown);
    const grouped = new GroupedStatements(executor, "createActor");
    const runs = [1, 2, 3].map((n) => grouped.run({ text: `SELECT ${n}` }));
    const settled = await Promise.allSettled(runs);
    expect(settled.map((s) => (s.status === "rejected" ? (s.reason as AgentError).code : "ok"))).toEqual([
      unknown.code,
      unknown.code,
      unknown.code,
    ]);
    // The first alone, then the other two as one group; no split after such a failure.
    expect(attempts()).toBe(2);
    expect(grouped.stats.fallbacks).toBe(0);
  });

  it("runs each statement alone again when the database refused the group", async () => {
    const refused = new StoreError("ERR_STORE", "duplicate key", { details: { sqlState: "23505" } });
    const { executor, attempts } = failing(refused);
    const grouped = new GroupedStatements(executor, "createActor");
    const settled = await Promise.allSettled([1, 2, 3].map((n) => grouped.run({ text: `SELECT ${n}` })));
    expect(settled.every((s) => s.status === "rejected")).toBe(true);
    // The first alone; the group of two; then each of those two alone.
    expect(attempts()).toBe(4);
    expect(grouped.stats.fallbacks).toBe(1);
  });

  it("splits a refused group in halves, so one bad statement among 64 costs 13 transactions and fails alone", async () => {
    let transactions = 0;
    const refused = new StoreError("ERR_STORE", "duplicate key", { details: { sqlState: "23505" } });
    const executor = {
      transaction: async (_: string, work: (session: unknown) => Promise<unknown>) => {
        transactions += 1;
        return work({
          queryAll: (statements: Array<{ text: string }>) =>
            statements.some((s) => s.text === "BAD")
              ? Promise.reject(refused)
              : Promise.resolve(statements.map((s) => ({ rows: [{ text: s.text }], rowCount: 1 }))),
        });
      },
    } as unknown as SqlExecutor;
    const grouped = new GroupedStatements(executor, "createActor");
    const first = grouped.run({ text: "first" });
    const texts = Array.from({ length: 64 }, (_, i) => (i === 37 ? "BAD" : `s${i}`));
    const settled = await Promise.allSettled(texts.map((text) => grouped.run({ text })));
    await first;
    expect(settled.map((s) => (s.status === "fulfilled" ? (s.value[0] as { text: string }).text : "refused"))).toEqual(
      texts.map((text) => (text === "BAD" ? "refused" : text)),
    );
    // The first alone; the 64; then two halves at each of 6 levels.
    expect(transactions).toBe(1 + 1 + 12);
  });
});
