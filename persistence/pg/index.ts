import pg from "pg";
import { z } from "zod";
import { ConfigError } from "../../core/errors.js";
import { SqlStore } from "../sql/sql-store.js";
import { schemaNamePattern } from "../sql/tables.js";
import { defaultSqlRetry, type SqlPool, type SqlRetryOptions, type SqlStoreStats } from "../sql/transaction.js";

export type { SqlStore, SqlRetryOptions, SqlStoreStats };

/** Options of {@link createPgStore}. Give exactly one of `connectionString` and `pool`. */
export interface PgStoreOptions {
  /** A PostgreSQL or CockroachDB URL, e.g. `postgresql://root@127.0.0.1:26257/tessera`. */
  connectionString?: string;
  /**
   * A pool you made and keep: the store uses it but never ends it, and applies none of the pool
   * options below. Create it with `pipeline: true` to save a round trip per transaction (the store
   * then sends BEGIN together with the first statement); without it, every statement waits for
   * the one before.
   */
  pool?: pg.Pool;
  /** The schema holding Tessera's tables; a lower-case identifier. @defaultValue "tessera" */
  schema?: string;
  /** Connections in the pool. @defaultValue 10 */
  poolSize?: number;
  /** Server-side limit of one statement, in milliseconds. @defaultValue 30000 */
  statementTimeoutMs?: number;
  /** Limit of waiting for a connection (new or from the pool), in milliseconds. @defaultValue 5000 */
  connectionTimeoutMs?: number;
  /**
   * The server ends a transaction left open and idle this long (`idle_in_transaction_session_timeout`),
   * in milliseconds. A node paused between a step's statement and its COMMIT (SIGSTOP, a frozen VM)
   * would otherwise hold the actor rows' locks for as long as the pause, and no other node could take
   * them over. Keep it below the cluster's lease TTL. @defaultValue 2000
   */
  idleInTransactionTimeoutMs?: number;
  /** An idle connection is closed after this long, in milliseconds. @defaultValue 10000 */
  idleTimeoutMs?: number;
  /**
   * Plan the store's statements once per connection (`plan_cache_mode=force_generic_plan`). The
   * step statement is one large CTE whose custom re-planning cost PostgreSQL more CPU than running
   * it; generic plans took a one-run step's p50 from about 2.7 to 2.0 ms on our 2-core machine.
   * Turn it off for a CockroachDB older than 23.2, which does not know the setting.
   * @defaultValue true
   */
  genericPlans?: boolean;
  /**
   * Analyze the store's tables while they are young: after 500 steps committed through the store,
   * and each time that count doubles, the tables that at least doubled in size since their last
   * `ANALYZE` are analyzed, so that the connections' cached plans are made again with what the
   * tables hold (see `SqlStore.statistics`). Turn it off when you run `ANALYZE` yourself.
   * CockroachDB is left alone.
   * @defaultValue true
   */
  keepStatistics?: boolean;
  /**
   * Retry of serialization failures (SQLSTATE 40001, 40003 before a COMMIT was sent, 40P01, 55P03).
   * @defaultValue `{ attemptsMax: 8, baseDelayMs: 4, delayMsMax: 250 }`
   */
  retry?: Partial<SqlRetryOptions>;
}

/** {@link PgStoreOptions} after parsing: every field resolved. */
interface ResolvedPgStoreOptions {
  connectionString: string | undefined;
  pool: pg.Pool | undefined;
  schema: string;
  poolSize: number;
  statementTimeoutMs: number;
  connectionTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
  idleTimeoutMs: number;
  genericPlans: boolean;
  keepStatistics: boolean;
  retry: SqlRetryOptions;
}

const positiveMs = z
  .number()
  .int()
  .positive()
  .max(24 * 3600 * 1000);

const optionsSchema = z
  .object({
    connectionString: z.string().min(1).optional(),
    pool: z
      .custom<pg.Pool>(
        (v) =>
          typeof v === "object" && v !== null && typeof (v as pg.Pool).connect === "function" && typeof (v as pg.Pool).end === "function",
        "a pg.Pool",
      )
      .optional(),
    schema: z.string().regex(schemaNamePattern).default("tessera"),
    poolSize: z.number().int().min(1).max(1000).default(10),
    statementTimeoutMs: positiveMs.default(30_000),
    connectionTimeoutMs: positiveMs.default(5_000),
    idleInTransactionTimeoutMs: positiveMs.default(2_000),
    idleTimeoutMs: positiveMs.default(10_000),
    genericPlans: z.boolean().default(true),
    keepStatistics: z.boolean().default(true),
    retry: z
      .object({
        attemptsMax: z.number().int().min(1).max(100),
        baseDelayMs: z.number().int().min(0).max(60_000),
        delayMsMax: z.number().int().min(0).max(600_000),
      })
      .strict()
      .partial()
      .default({}),
  })
  .strict()
  .refine((o) => (o.connectionString === undefined) !== (o.pool === undefined), {
    message: "give exactly one of connectionString and pool",
    path: ["connectionString"],
  });

/**
 * Parses {@link PgStoreOptions} once.
 *
 * @throws ConfigError naming the first invalid option, with every zod issue in `details.issues`
 */
function resolvePgStoreOptions(options: PgStoreOptions): ResolvedPgStoreOptions {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`invalid pg store option ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}`, {
      details: { issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), code: i.code, message: i.message })) },
    });
  }
  const o = parsed.data;
  const retry = { ...defaultSqlRetry, ...o.retry };
  if (retry.delayMsMax < retry.baseDelayMs) {
    throw new ConfigError("invalid pg store option retry.delayMsMax: must be at least retry.baseDelayMs", {
      details: { issues: [{ path: "retry.delayMsMax", code: "too_small", message: "below retry.baseDelayMs" }] },
    });
  }
  return { ...o, connectionString: o.connectionString, pool: o.pool, retry };
}

/**
 * Creates the {@link Store} over PostgreSQL or CockroachDB. The pool connects lazily: nothing
 * touches the network until the first call (normally `migrate()`).
 *
 * @param options - a connection string (the store then owns its pool) or a pool of yours, and the
 *   schema, pool size and timeouts
 * @returns a {@link SqlStore}: the `Store` plus `stats` (transactions, statements, round trips, retries)
 * @throws ConfigError when an option is invalid
 * @example
 * ```ts
 * const store = createPgStore({ connectionString: process.env.DATABASE_URL, schema: "tessera" });
 * await store.migrate();
 * // … createNode({ store, … }) …
 * await store.close();
 * ```
 */
export function createPgStore(options: PgStoreOptions): SqlStore {
  const o = resolvePgStoreOptions(options);
  let pool: SqlPool;
  if (o.pool !== undefined) {
    pool = o.pool;
  } else {
    const own = new pg.Pool({
      connectionString: o.connectionString,
      max: o.poolSize,
      connectionTimeoutMillis: o.connectionTimeoutMs,
      idleTimeoutMillis: o.idleTimeoutMs,
      statement_timeout: o.statementTimeoutMs,
      idle_in_transaction_session_timeout: o.idleInTransactionTimeoutMs,
      application_name: "tessera",
      ...(o.genericPlans ? { options: "-c plan_cache_mode=force_generic_plan" } : {}),
      // Statements of one transaction go out back to back (BEGIN with the first statement): a
      // group commit takes two round trips instead of three.
      pipeline: true,
      // Idle connections must not keep the process alive.
      allowExitOnIdle: true,
    });
    // An idle connection that breaks (server restart, network) is dropped by the pool; without a
    // listener the 'error' event would crash the process. The next query reports the outage.
    own.on("error", () => {});
    pool = own;
  }
  return new SqlStore({
    pool,
    schema: o.schema,
    ownsPool: o.pool === undefined,
    retry: o.retry,
    kind: "pg",
    shared: true,
    keepStatistics: o.keepStatistics,
  });
}
