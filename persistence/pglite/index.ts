import { mkdir } from "node:fs/promises";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { createPgConfig } from "@electric-sql/pglite/node-postgres";
import pg from "pg";
import { z } from "zod";
import { ConfigError, StoreError } from "../../core/errors.js";
import { SqlStore } from "../sql/sql-store.js";
import { schemaNamePattern } from "../sql/tables.js";
import { defaultSqlRetry, type SqlRetryOptions, type SqlStoreStats } from "../sql/transaction.js";

export type { SqlStore, SqlRetryOptions, SqlStoreStats };

/** Options of {@link createPgliteStore}. */
export interface PgliteStoreOptions {
  /**
   * Where the database lives: a directory (created with its parents if missing; it survives
   * restarts), or `memory://` for a database that lives only as long as the store.
   */
  dataDir: string;
  /** The schema holding Tessera's tables; a lower-case identifier. @defaultValue "tessera" */
  schema?: string;
  /**
   * Limit of waiting for the single connection, in milliseconds. PGlite runs one transaction at a
   * time, so this bounds how long a call may queue behind others. @defaultValue 60000
   */
  connectionTimeoutMs?: number;
}

const optionsSchema = z
  .object({
    dataDir: z
      .string()
      .min(1)
      .refine((dir) => dir === "memory://" || !dir.includes("://"), "a directory path or memory://"),
    schema: z.string().regex(schemaNamePattern).default("tessera"),
    connectionTimeoutMs: z
      .number()
      .int()
      .positive()
      .max(3600 * 1000)
      .default(60_000),
  })
  .strict();

/**
 * Opens the embedded default {@link Store}: PostgreSQL compiled to WebAssembly (PGlite), running in
 * this process with its data in a directory, behind the same SQL code as the PostgreSQL adapter.
 * The first open of a new directory runs initdb and takes several seconds; reopening takes about
 * one. PGlite is a single backend, so transactions run one after another.
 *
 * @param options - the data directory and schema
 * @returns a {@link SqlStore} (the `Store` plus `stats`) whose `close()` also closes the database;
 *   call `migrate()` before use
 * @throws ConfigError when an option is invalid
 * @throws StoreError `ERR_STORE_UNAVAILABLE` when the database cannot be opened (the directory is
 *   not writable, or holds something that is not a PGlite database)
 * @example
 * ```ts
 * const store = await createPgliteStore({ dataDir: ".data/tessera" });
 * await store.migrate();
 * // … createNode({ store, … }) …
 * await store.close();
 * ```
 */
export async function createPgliteStore(options: PgliteStoreOptions): Promise<SqlStore> {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`invalid pglite store option ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}`, {
      details: { issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), code: i.code, message: i.message })) },
    });
  }
  const { dataDir, schema, connectionTimeoutMs } = parsed.data;
  let database: PGlite;
  try {
    // PGlite creates its directory but not the parents of it.
    if (dataDir !== "memory://") await mkdir(path.dirname(path.resolve(dataDir)), { recursive: true });
    database = await PGlite.create(dataDir);
  } catch (cause) {
    throw new StoreError("ERR_STORE_UNAVAILABLE", `cannot open the PGlite database in ${dataDir}: ${(cause as Error).message}`, {
      cause,
      details: { dataDir },
    });
  }
  // More than one connection over one PGlite instance crashes it; a connection is never closed
  // while idle, because the adapter cannot reopen it once ended.
  const pool = new pg.Pool({
    ...createPgConfig(database),
    max: 1,
    idleTimeoutMillis: 0,
    connectionTimeoutMillis: connectionTimeoutMs,
    // The adapter runs protocol messages in order, so statements may be queued back to back.
    pipeline: true,
    allowExitOnIdle: true,
  });
  pool.on("error", () => {});
  return new SqlStore({
    pool,
    schema,
    ownsPool: true,
    retry: defaultSqlRetry,
    kind: "pglite",
    // One process opens a PGlite database: its node may take every active actor over at once.
    shared: false,
    onClose: () => database.close(),
  });
}
