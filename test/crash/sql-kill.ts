/**
 * Kills a worker at an exact statement of a group-commit transaction, for PostgreSQL and PGlite
 * alike: the SQL store sends every statement through `pg.Client#query` (over PGlite too, through
 * its node-postgres adapter), so a patch of that method in the worker process sees them all. A
 * timer cannot do this on PGlite, which runs a whole batch within one turn of the event loop.
 *
 * Test-only fault injection: it lives in the worker process and nowhere else.
 */
import pg from "pg";

/**
 * Where in the batch's transaction the worker dies.
 *
 * - `after-insert`: the statement inserting the journal rows was acknowledged; no COMMIT was sent.
 * - `before-commit`: the COMMIT is about to be sent; everything before it was acknowledged.
 * - `commit-sent`: the COMMIT was handed to the connection (on PostgreSQL, written to the socket);
 *   its acknowledgement never arrives. The in-doubt window of every database client.
 */
export type SqlKill = "after-insert" | "before-commit" | "commit-sent";

type AnyQuery = (this: pg.Client, ...args: unknown[]) => unknown;

/**
 * Patches `pg.Client#query` so that the next group commit dies at `at`. The batch is recognised
 * by its journal insert: the runtime has one batch in flight at a time, and nothing else writes
 * the journal.
 *
 * @param at - where to die
 * @param die - prints the crash line and kills the process; never returns
 */
export function armSqlKill(at: SqlKill, die: (detail: Record<string, unknown>) => never): void {
  const prototype = pg.Client.prototype as unknown as { query: AnyQuery };
  const original = prototype.query;
  // The connection that runs the batch, remembered without holding on to it.
  const batchClient = new WeakSet<pg.Client>();
  let found = false;
  prototype.query = function (this: pg.Client, ...args: unknown[]): unknown {
    const config = args[0] as string | { text?: string } | undefined;
    const text = typeof config === "string" ? config : (config?.text ?? "");
    if (batchClient.has(this) && text === "COMMIT") {
      if (at === "before-commit") die({ at });
      const sent = original.apply(this, args);
      if (at === "commit-sent") die({ at });
      return sent;
    }
    const result = original.apply(this, args);
    if (!found && /^\s*WITH[\s\S]*INSERT INTO \S+\.journal\b/.test(text)) {
      found = true;
      batchClient.add(this);
      if (at === "after-insert") return (result as Promise<unknown>).then(() => die({ at }));
    }
    return result;
  };
}
