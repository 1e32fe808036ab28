import { afterAll, describe, expect, it } from "vitest";
import type { NewActor } from "../../core/ports/store.js";
import { createPgStore, type SqlStore } from "../../persistence/pg/index.js";
import { createPgliteStore } from "../../persistence/pglite/index.js";
import { statisticsFirstCheckSteps } from "../../persistence/sql/statistics-keeper.js";
import { commit, completed, createStarted, effect } from "../conformance/store-fixtures.js";
import { databaseUrl } from "../helpers/services.js";
import { createTestPgPool, dropSchemas, uniqueSchema } from "../helpers/sql.js";
import { until } from "../helpers/until.js";

const admin = createTestPgPool(2);
const schemas: string[] = [];

afterAll(async () => {
  await dropSchemas(admin, schemas);
  await admin.end();
});

/**
 * Commits `rounds` steps on each of `actors` (a round is one `commitSteps` of one step per actor),
 * every step planning an effect and recording the outcome of the one before.
 */
async function grow(store: SqlStore, actors: readonly NewActor[], rounds: number, from = 1): Promise<void> {
  for (let round = from; round < from + rounds; round++) {
    const outcomes = await store.commitSteps(
      actors.map((actor) =>
        commit("acme", actor.actorId, round, {
          effects: [effect("acme", actor.actorId, `e${round}`, round + 1, { state: "running" })],
          effectOutcome: round === 1 ? undefined : completed(`e${round - 1}`, { result: { round } }),
        }),
      ),
    );
    expect(outcomes.every((outcome) => outcome.ok)).toBe(true);
  }
}

async function startedActors(store: SqlStore, count: number): Promise<NewActor[]> {
  const actors: NewActor[] = [];
  for (let i = 0; i < count; i++) actors.push(await createStarted(store, "acme"));
  return actors;
}

describe("statistics of young tables (PostgreSQL)", () => {
  it("analyzes the tables that grew, once enough steps were committed, and plans read the effect by its key afterwards", async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 2 });
    try {
      await store.migrate();
      // Only the keeper analyzes here: autovacuum, where it runs, would analyze every column.
      for (const table of ["journal", "effects"]) await admin.query(`ALTER TABLE "${schema}".${table} SET (autovacuum_enabled = false)`);
      const actors = await startedActors(store, 50);
      // 50 starting steps + 50 × 10: past the first check.
      await grow(store, actors, 10);
      expect(50 + 50 * 10).toBeGreaterThanOrEqual(statisticsFirstCheckSteps);
      await until(() => (store.statistics?.analyzes ?? 0) >= 1, 20_000);
      expect(store.statistics).toMatchObject({ failures: 0 });
      // -1 until a table's first ANALYZE.
      const { rows } = await admin.query<{ relname: string; reltuples: number }>(
        `SELECT relname, reltuples FROM pg_class WHERE relnamespace = $1::regnamespace AND relname IN ('journal', 'effects') ORDER BY relname`,
        [schema],
      );
      expect(rows.map((row) => row.relname)).toEqual(["effects", "journal"]);
      for (const row of rows) expect(row.reltuples, row.relname).toBeGreaterThan(0);
      // Keys are analyzed; documents, which no statement filters on, are not.
      const analyzed = await admin.query<{ attname: string }>(
        `SELECT attname FROM pg_stats WHERE schemaname = $1 AND tablename = 'journal' ORDER BY attname`,
        [schema],
      );
      const columns = analyzed.rows.map((row) => row.attname);
      expect(columns).toEqual(expect.arrayContaining(["actor_id", "seq", "tenant_id"]));
      for (const document of ["event", "planned", "state_value"]) expect(columns).not.toContain(document);
      // With statistics, the generic plan of an outcome write reads the one effect, not the actor's every effect.
      const client = await admin.connect();
      try {
        await client.query("SET plan_cache_mode = force_generic_plan");
        await client.query(
          `PREPARE outcome(text, text, text) AS UPDATE "${schema}".effects SET attempts = attempts WHERE tenant_id = $1 AND actor_id = $2 AND effect_id = $3`,
        );
        const actorId = actors[0]!.actorId.replaceAll("'", "''");
        const plan = await client.query<{ "QUERY PLAN": string }>(
          `EXPLAIN (ANALYZE, COSTS OFF) EXECUTE outcome('acme', '${actorId}', 'e5')`,
        );
        const text = plan.rows.map((row) => row["QUERY PLAN"]).join("\n");
        expect(text).toContain("effects_pkey");
        expect(text).not.toContain("Rows Removed by Filter");
        await client.query("DEALLOCATE outcome");
      } finally {
        client.release();
      }
    } finally {
      await store.close();
    }
  });

  it("checks again only after twice as many steps, and not at all when turned off", async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 2 });
    const offSchema = uniqueSchema();
    schemas.push(offSchema);
    const off = createPgStore({ connectionString: databaseUrl, schema: offSchema, poolSize: 1, keepStatistics: false });
    try {
      await store.migrate();
      const actors = await startedActors(store, 50);
      await grow(store, actors, 10);
      await until(() => store.statistics?.checks === 1 && (store.statistics.analyzes ?? 0) === 1, 20_000);
      // 550 steps so far: the next check comes at 1,100.
      await grow(store, actors.slice(0, 10), 5, 11);
      // A check starts (and counts) synchronously with the commit that reaches its mark.
      expect(store.statistics?.checks).toBe(1);
      expect(off.statistics).toBeUndefined();
    } finally {
      await store.close();
      await off.close();
    }
  });
});

describe("statistics of young tables (PGlite)", () => {
  it("analyzes on PGlite too, where no autovacuum runs", async () => {
    const store = await createPgliteStore({ dataDir: "memory://" });
    try {
      await store.migrate();
      const actors = await startedActors(store, 50);
      await grow(store, actors, 10);
      await until(() => (store.statistics?.analyzes ?? 0) >= 1, 30_000);
      expect(store.statistics).toMatchObject({ checks: 1, analyzes: 1, failures: 0 });
    } finally {
      await store.close();
    }
  });
});
