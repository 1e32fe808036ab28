import { afterAll, describe, expect, it } from "vitest";
import { createPgStore } from "../../persistence/pg/index.js";
import { SqlParams, type SqlRowsMode, type UnnestColumn } from "../../persistence/sql/sql-params.js";
import { commit, commitOk, createStarted, message } from "../conformance/store-fixtures.js";
import { databaseUrl } from "../helpers/services.js";
import { createTestPgPool, dropSchemas, uniqueSchema } from "../helpers/sql.js";

const pool = createTestPgPool(1);

const schemas: string[] = [];

afterAll(async () => {
  await dropSchemas(pool, schemas);
  await pool.end();
});

const modes: SqlRowsMode[] = ["arrays", "json", "values"];

/** Reads a row source built in `mode` back from PostgreSQL, rows in input order. */
async function roundTrip(mode: SqlRowsMode, columns: readonly UnnestColumn[]): Promise<unknown[]> {
  const p = new SqlParams(mode);
  const source = p.unnest("u", [["n", "int8", columns[0]![2].map((_, i) => i)], ...columns]);
  const { rows } = await pool.query(`SELECT * FROM ${source} ORDER BY n`, p.values);
  return rows.map(({ n: _, ...row }: Record<string, unknown>) => row);
}

describe("SqlParams row sources on PostgreSQL", () => {
  const awkward = ["plain", "it's", 'say "hi"', "back\\slash", "{braces,comma}", "NULL", "", "ünïcødé ✓ 🎉", "line\nbreak", null];
  const columns: UnnestColumn[] = [
    ["t", "text", awkward],
    ["i", "int8", awkward.map((_, i) => (i === 0 ? Number.MAX_SAFE_INTEGER : i === 1 ? -Number.MAX_SAFE_INTEGER : i === 9 ? null : i))],
    ["b", "bool", awkward.map((_, i) => (i === 9 ? null : i % 2 === 0))],
    ["j", "text", awkward.map((value) => (value === null ? null : JSON.stringify({ value })))],
  ];

  it.each(modes)("%s: every value comes back as it went in", async (mode) => {
    const rows = await roundTrip(mode, columns);
    expect(rows).toEqual(
      awkward.map((t, r) => ({
        t,
        i: columns[1]![2][r] === null ? null : String(columns[1]![2][r]),
        b: columns[2]![2][r],
        j: columns[3]![2][r],
      })),
    );
  });

  it("all three modes give the same rows, one row or many", async () => {
    for (const count of [1, 2, awkward.length]) {
      const some: UnnestColumn[] = columns.map(([name, type, values]) => [name, type, values.slice(0, count)]);
      const [arrays, json, values] = await Promise.all(modes.map((mode) => roundTrip(mode, some)));
      expect(json).toEqual(arrays);
      expect(values).toEqual(arrays);
    }
  });

  it("values: a source of no rows is still valid SQL", async () => {
    const rows = await roundTrip("values", [["t", "text", []]]);
    expect(rows).toEqual([]);
  });

  it("values: a source of other than one row goes as manyRows says, so parameters do not grow with the rows", async () => {
    for (const manyRows of ["arrays", "json"] as const) {
      const p = new SqlParams("values", manyRows);
      const source = p.unnest("u", columns);
      expect(p.values).toHaveLength(manyRows === "json" ? 1 : columns.length);
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${source}`, p.values);
      expect(rows[0]).toEqual({ n: awkward.length });
    }
  });

  it("values: tells the planner the row count, so a one-row source is looked up by index", async () => {
    const p = new SqlParams("values");
    const source = p.unnest("u", [["relname", "text", ["pg_class"]]]);
    const { rows } = await pool.query(`EXPLAIN SELECT c.oid FROM ${source} JOIN pg_class c ON c.relname = u.relname`, p.values);
    const plan = rows.map((row: Record<string, string>) => row["QUERY PLAN"]).join("\n");
    expect(plan).toMatch(/rows=1\b/);
    expect(plan).toContain("Index");
  });
});

describe("a step committed alone", () => {
  it("carries 8,000 messages (more than PostgreSQL's 65,535 parameters, were each value one)", async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 1 });
    try {
      await store.migrate();
      const sender = await createStarted(store, "acme");
      const recipient = await createStarted(store, "acme");
      const messages = Array.from({ length: 8_000 }, (_, i) => message("acme", recipient.actorId, `m-${i}`));
      await commitOk(store, commit("acme", sender.actorId, 1, { messages }));
      const pending = await store.pendingMessages("acme", recipient.actorId, 10_000);
      expect(pending).toHaveLength(8_000);
    } finally {
      await store.close();
    }
  });
});
