import type { DialectCache } from "./commit-steps.js";
import type { Tables } from "./tables.js";
import type { SqlExecutor } from "./transaction.js";

/** Steps committed through one store before its first check (created actors do not count). */
export const statisticsFirstCheckSteps = 500;

/** The tables whose statistics plans depend on: every table a step or a read of the hot path touches. */
const keptTables = ["actors", "runs", "journal", "effects", "mailbox_heads", "mailbox", "timers", "blobs", "chains"] as const;

/** A table smaller than this many pages is planned well enough without statistics. */
const grownPagesMin = 8;

/** What {@link StatisticsKeeper} has done, for tests and benchmarks. */
export interface StatisticsKeeperStats {
  /** Checks of the tables' sizes. */
  checks: number;
  /** `ANALYZE` statements run (each covers every table found stale). */
  analyzes: number;
  /** Checks or analyzes that failed; a failure is otherwise ignored (autovacuum remains). */
  failures: number;
}

/**
 * Keeps the planner's statistics of young tables current on PostgreSQL (and PGlite).
 *
 * The store plans each statement once per connection (generic plans), with the statistics of that
 * moment. A table that grew from nothing since its last `ANALYZE` is still planned as empty: one
 * sequential scan of `actors` per step, or an index on `(tenant_id, actor_id)` picked over the
 * primary key, so that a step reads every effect its actor ever had. Autovacuum corrects that, but
 * only after its nap (a minute by default) and not at all on PGlite; until then every step costs
 * more the larger the tables are.
 *
 * So, after {@link statisticsFirstCheckSteps} steps committed through this store, and again each
 * time the count doubles, the keeper compares each table's size with the size its statistics were
 * taken at, and analyzes the tables that at least doubled since (and hold at least 8 pages). Sizes,
 * not autovacuum's modification counters: those reach the statistics views up to seconds late, and
 * a young table's plans go wrong within seconds. `ANALYZE` invalidates the cached plans that read
 * those tables, so every connection plans again with what the tables now hold. The planner scales
 * row counts by a table's current size by itself; what goes stale is the shape of the data (how
 * many effects an actor has), so a table is analyzed again only when it doubled: a few times in its
 * youth, then rarely, and never in place of autovacuum. The check is one small read of the catalog,
 * in the background, one at a time. Only the columns that are not JSON are analyzed: no statement
 * filters or joins on a document, and sorting documents was most of an `ANALYZE`'s cost (the
 * journal of 33,000 steps: 550–690 ms with its documents, 140 ms without). An `ANALYZE` of some
 * columns does not reset the table's count of changes since its last analysis, so where autovacuum
 * runs it still analyzes the whole table on its own schedule, as it would without the keeper.
 * CockroachDB collects statistics itself and is left alone.
 * `ANALYZE (SKIP_LOCKED)` needs PostgreSQL 12 or later; on an older server every analyze fails and
 * only counts in `failures`.
 * A role that does not own the tables gets a warning from `ANALYZE`, not an error, and its plans
 * wait for autovacuum as before. On PGlite the `ANALYZE` runs on the event loop, like every
 * statement there: measured 5 ms for a table of 1,000 rows and 150 ms at 50,000 (it samples at most
 * 30,000 rows), once per doubling of the table.
 *
 * @internal
 */
export class StatisticsKeeper {
  readonly stats: StatisticsKeeperStats = { checks: 0, analyzes: 0, failures: 0 };
  readonly #executor: SqlExecutor;
  readonly #tables: Tables;
  readonly #schema: string;
  readonly #dialect: DialectCache;
  #steps = 0;
  #nextCheckAt = statisticsFirstCheckSteps;
  #running: Promise<void> | undefined;
  #closed = false;

  /**
   * @param executor - the store's executor
   * @param tables - the store's tables
   * @param schema - the schema's name as stored in the catalog (unquoted)
   * @param dialect - the store's dialect, known after its first commit
   */
  constructor(executor: SqlExecutor, tables: Tables, schema: string, dialect: DialectCache) {
    this.#executor = executor;
    this.#tables = tables;
    this.#schema = schema;
    this.#dialect = dialect;
  }

  /** Counts `count` committed steps; starts a check in the background when the count reached the next mark. */
  noteSteps(count: number): void {
    this.#steps += count;
    if (this.#closed || this.#steps < this.#nextCheckAt || this.#running !== undefined) return;
    this.#nextCheckAt = this.#steps * 2;
    this.#running = this.#check().finally(() => {
      this.#running = undefined;
    });
  }

  /** Stops checking and waits for a check under way. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#running;
  }

  async #check(): Promise<void> {
    if (this.#dialect.dialect !== "postgres") return;
    try {
      this.stats.checks += 1;
      const stale = await this.#executor.single("statisticsCheck", (session) =>
        session.query(
          `SELECT c.relname, (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid NOT IN ('json'::regtype, 'jsonb'::regtype)) AS columns
          FROM pg_class c
          WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND c.relname = ANY($2::text[]) AND c.relkind = 'r'
            AND pg_relation_size(c.oid) / current_setting('block_size')::int >= greatest(2 * c.relpages, ${grownPagesMin})
          ORDER BY c.relname`,
          [this.#schema, [...keptTables]],
        ),
      );
      const targets = stale.rows.map((row) => ({
        name: String(row.relname),
        columns: row.columns === null ? undefined : String(row.columns),
      }));
      if (targets.length === 0 || this.#closed) return;
      // The check returns only names of `keptTables` (plain identifiers), and column names quoted
      // by the database.
      const list = targets.map(({ name, columns }) => `${this.#tables.schema}.${name}${columns === undefined ? "" : ` (${columns})`}`);
      // SKIP_LOCKED: a table another node (or autovacuum) is analyzing right now is skipped, not waited for.
      await this.#executor.single("statisticsAnalyze", (session) => session.query(`ANALYZE (SKIP_LOCKED) ${list.join(", ")}`));
      this.stats.analyzes += 1;
    } catch {
      this.stats.failures += 1;
    }
  }
}
