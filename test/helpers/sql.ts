import { randomUUID } from "node:crypto";
import { PGlite } from "@electric-sql/pglite";
import { createPgConfig } from "@electric-sql/pglite/node-postgres";
import pg from "pg";
import { databaseUrl } from "./services.js";

/** A schema name no other test uses: `t_` and 16 hex digits. */
export function uniqueSchema(): string {
  return `t_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
}

/**
 * A small pool on the test PostgreSQL, with the 'error' listener every pool needs. It pipelines
 * (as the store's own pools do) unless `pipeline` is false.
 */
export function createTestPgPool(max = 4, options: { pipeline?: boolean } = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 1_000,
    allowExitOnIdle: true,
    pipeline: options.pipeline ?? true,
  });
  pool.on("error", () => {});
  return pool;
}

/** Drops schemas and everything in them. */
export async function dropSchemas(pool: pg.Pool, schemas: readonly string[]): Promise<void> {
  for (const schema of schemas) {
    if (!/^t_[0-9a-f]{16}$/.test(schema)) throw new Error(`refusing to drop schema ${schema}: not a test schema`);
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  }
}

/** One in-memory PGlite database shared by the tests of a file, as a `pg.Pool` of one connection. */
export async function openSharedPglite(): Promise<{ pool: pg.Pool; close: () => Promise<void> }> {
  const database = await PGlite.create("memory://");
  const pool = new pg.Pool({ ...createPgConfig(database), max: 1, idleTimeoutMillis: 0, connectionTimeoutMillis: 60_000, pipeline: true });
  pool.on("error", () => {});
  return {
    pool,
    close: async () => {
      await pool.end();
      await database.close();
    },
  };
}
