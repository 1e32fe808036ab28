import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { databaseUrl } from "../helpers/services.js";
import { createTestPgPool, dropSchemas, uniqueSchema } from "../helpers/sql.js";

const run = promisify(execFile);
const schema = uniqueSchema();

afterAll(async () => {
  const pool = createTestPgPool(1);
  await dropSchemas(pool, [schema]);
  await pool.end();
});

describe("tessera migrate", () => {
  it("prepares a database, twice without harm, and records its migrations", async () => {
    const args = ["--import", "tsx", "cli/tessera.ts", "migrate", "--database-url", databaseUrl, "--schema", schema];
    for (let i = 0; i < 2; i++) {
      const { stdout } = await run(process.execPath, args, { timeout: 60_000 });
      expect(JSON.parse(stdout.trim())).toEqual({ migrated: true, store: "pg", schema });
    }
    const pool = createTestPgPool(1);
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${schema}".tsr_migrations`);
    await pool.end();
    expect((rows[0] as { n: number }).n).toBeGreaterThan(0);
  });

  it("exits non-zero with a typed JSON error when no database is given", async () => {
    const failure = await run(process.execPath, ["--import", "tsx", "cli/tessera.ts", "migrate"], {
      timeout: 60_000,
      env: { ...process.env, DATABASE_URL: "" },
    }).catch((error: { code: number; stderr: string }) => error);
    expect((failure as { code: number }).code).toBe(1);
    expect(JSON.parse((failure as { stderr: string }).stderr.trim())).toMatchObject({ error: { code: "ERR_CONFIG" } });
  });
});
