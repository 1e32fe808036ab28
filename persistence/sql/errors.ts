import { AgentError, StoreError } from "../../core/errors.js";

/** SQLSTATEs after which the whole transaction may simply run again (DESIGN.md §11). */
const retryableSqlStates: ReadonlySet<string> = new Set([
  "40001", // serialization_failure (PostgreSQL SERIALIZABLE, CockroachDB restarts)
  "40003", // statement_completion_unknown (CockroachDB ambiguous result)
  "40P01", // deadlock_detected
  "55P03", // lock_not_available
]);

/** SQLSTATEs that mean the server cannot serve us right now. Class 08 (connection exception) is added below. */
const unavailableSqlStates: ReadonlySet<string> = new Set([
  "53300", // too_many_connections
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
]);

const sqlStatePattern = /^[0-9A-Z]{5}$/;

/** The SQLSTATE of a driver error, when it has one. */
export function sqlStateOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && sqlStatePattern.test(code) ? code : undefined;
}

/**
 * Turns anything a driver throws into an {@link AgentError}, keeping the original as `cause`.
 * Errors are told apart by SQLSTATE (`err.code`), never by class: errors that come through the
 * PGlite adapter are not `pg.DatabaseError` instances. A driver error without a SQLSTATE (a
 * terminated connection, a connect timeout, a refused socket) means the store is unreachable.
 *
 * @internal
 * @param error - what was thrown
 * @param operation - the store method, for the message
 * @returns `error` itself when it already is an AgentError, else a {@link StoreError} with code
 *   `ERR_STORE_RETRYABLE`, `ERR_STORE_UNAVAILABLE` or `ERR_STORE`
 * @example
 * ```ts
 * catch (error) { throw translateError(error, "getActor") }
 * ```
 */
export function translateError(error: unknown, operation: string): AgentError {
  if (error instanceof AgentError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const sqlState = sqlStateOf(error);
  if (sqlState !== undefined) {
    const details = { operation, sqlState, ...constraintOf(error) };
    if (retryableSqlStates.has(sqlState)) {
      return new StoreError("ERR_STORE_RETRYABLE", `${operation}: ${message}`, { cause: error, retryable: true, details });
    }
    if (sqlState.startsWith("08") || unavailableSqlStates.has(sqlState)) {
      return new StoreError("ERR_STORE_UNAVAILABLE", `${operation}: the database is unavailable: ${message}`, {
        cause: error,
        retryable: true,
        details,
      });
    }
    // 57014 is query_canceled, which is how statement_timeout ends a statement.
    return new StoreError("ERR_STORE", `${operation}: ${message}`, { cause: error, retryable: sqlState === "57014", details });
  }
  if (error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError) {
    return new StoreError("ERR_STORE", `${operation}: ${message}`, { cause: error, details: { operation } });
  }
  return new StoreError("ERR_STORE_UNAVAILABLE", `${operation}: the database is unreachable: ${message}`, {
    cause: error,
    retryable: true,
    details: { operation, errno: (error as { code?: unknown } | null)?.code ?? null },
  });
}

function constraintOf(error: unknown): { constraint?: string } {
  const constraint = (error as { constraint?: unknown }).constraint;
  return typeof constraint === "string" ? { constraint } : {};
}
