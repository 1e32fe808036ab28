import { AgentError, StoreError } from "../../core/errors.js";
import { sqlStateOf } from "./errors.js";
import { migrations } from "./migrations.js";
import type { Tables } from "./tables.js";
import type { SqlExecutor } from "./transaction.js";

/**
 * SQLSTATEs that a concurrent `CREATE … IF NOT EXISTS` can still raise when another process
 * creates the same object at the same moment: the object then exists, which is all we wanted.
 */
const alreadyCreated: ReadonlySet<string> = new Set(["23505", "42P06", "42P07", "42710"]);

/**
 * Creates the schema and the migrations table if missing, then applies every migration not yet
 * recorded, in order, each in its own transaction together with its record row. Safe when two
 * processes run it at once: the record row is inserted first, so the second process waits for the
 * first, then finds the row and skips the step (or retries after a serialization failure).
 *
 * @internal
 * @param executor - runs statements with retry
 * @param tables - the table names
 * @returns when the schema is current
 * @throws StoreError `ERR_MIGRATION_FAILED` naming the step, with the database error as cause
 */
export async function runMigrations(executor: SqlExecutor, tables: Tables): Promise<void> {
  await createIfMissing(executor, `CREATE SCHEMA IF NOT EXISTS ${tables.schema}`);
  await createIfMissing(executor, `CREATE TABLE IF NOT EXISTS ${tables.migrations} (name text PRIMARY KEY, applied_at bigint NOT NULL)`);
  const applied = await executor.single("migrate", async (session) => {
    const { rows } = await session.query(`SELECT name FROM ${tables.migrations}`);
    return new Set(rows.map((row) => row.name as string));
  });
  for (const migration of migrations) {
    if (applied.has(migration.name)) continue;
    try {
      await executor.transaction(`migrate ${migration.name}`, async (session) => {
        const recorded = await session.query(
          `INSERT INTO ${tables.migrations} (name, applied_at) VALUES ($1::text, (extract(epoch FROM now()) * 1000)::bigint)
           ON CONFLICT (name) DO NOTHING RETURNING name`,
          [migration.name],
        );
        if (recorded.rowCount === 0) return;
        for (const statement of migration.sql(tables.schema)) await session.query(statement);
      });
    } catch (error) {
      throw new StoreError("ERR_MIGRATION_FAILED", `migration ${migration.name} failed: ${(error as Error).message}`, {
        cause: error instanceof AgentError && error.cause !== undefined ? error.cause : error,
        retryable: error instanceof AgentError && error.retryable,
        details: { migration: migration.name },
      });
    }
  }
}

async function createIfMissing(executor: SqlExecutor, statement: string): Promise<void> {
  try {
    await executor.single("migrate", (session) => session.query(statement));
  } catch (error) {
    const sqlState = error instanceof AgentError ? sqlStateOf(error.cause) : undefined;
    if (sqlState === undefined || !alreadyCreated.has(sqlState)) throw error;
  }
}
