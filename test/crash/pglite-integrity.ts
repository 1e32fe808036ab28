/**
 * Physical checks of a PGlite data directory after a SIGKILL: it opens with PostgreSQL's `amcheck`
 * extension, which verifies every B-tree index of the schema against its table and every table's
 * heap pages, below anything the logical checks (journals, hashes, replay) can see.
 */
import { PGlite } from "@electric-sql/pglite";
import { amcheck } from "@electric-sql/pglite/contrib/amcheck";

/** What {@link checkPgliteIntegrity} found. */
export interface PgliteIntegrity {
  /** Milliseconds to open the directory (WAL replay after the kill included). */
  openMs: number;
  indexesChecked: number;
  tablesChecked: number;
  /** `verify_heapam` and `bt_index_check` findings; empty when the directory is sound. */
  problems: string[];
  /** PGlite's settings that decide what survives: a kill only needs `synchronous_commit`; power loss needs `fsync`. */
  settings: { fsync: string; synchronousCommit: string; walSyncMethod: string };
}

/**
 * Opens a PGlite directory that no other process has open and checks it with `amcheck`.
 *
 * @param dataDir - the directory
 * @param schema - the schema whose tables and indexes are checked
 * @returns the findings
 * @throws Error when the directory cannot be opened (a corrupt cluster)
 */
export async function checkPgliteIntegrity(dataDir: string, schema: string): Promise<PgliteIntegrity> {
  const opening = performance.now();
  const db = await PGlite.create(dataDir, { extensions: { amcheck } });
  const openMs = Math.round(performance.now() - opening);
  try {
    await db.exec("CREATE EXTENSION IF NOT EXISTS amcheck");
    const indexes = await db.query<{ index: string }>(
      `SELECT i.indexrelid::regclass::text AS index FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam
       WHERE n.nspname = $1 AND a.amname = 'btree'`,
      [schema],
    );
    const tables = await db.query<{ table: string }>(
      `SELECT c.oid::regclass::text AS table FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind = 'r'`,
      [schema],
    );
    const problems: string[] = [];
    for (const { index } of indexes.rows) {
      try {
        // heapallindexed: every heap tuple must be found in the index.
        await db.query(`SELECT bt_index_check($1::regclass, true)`, [index]);
      } catch (error) {
        problems.push(`${index}: ${(error as Error).message}`);
      }
    }
    for (const { table } of tables.rows) {
      const found = await db.query<{ msg: string }>(`SELECT msg FROM verify_heapam($1::regclass)`, [table]);
      problems.push(...found.rows.map((row) => `${table}: ${row.msg}`));
    }
    const setting = async (name: string): Promise<string> =>
      (await db.query<{ value: string }>(`SELECT current_setting($1) AS value`, [name])).rows[0]?.value ?? "?";
    return {
      openMs,
      indexesChecked: indexes.rows.length,
      tablesChecked: tables.rows.length,
      problems,
      settings: {
        fsync: await setting("fsync"),
        synchronousCommit: await setting("synchronous_commit"),
        walSyncMethod: await setting("wal_sync_method"),
      },
    };
  } finally {
    await db.close();
  }
}
