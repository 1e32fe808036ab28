import { createHash } from "node:crypto";
import type pg from "pg";
import { assert } from "../../core/assert.js";
import type { AgentError } from "../../core/errors.js";
import { StoreError } from "../../core/errors.js";
import { translateError } from "./errors.js";

/** Statement texts whose prepared-statement names are remembered. */
const statementNamesMax = 4096;

/** The part of a `pg.Pool` the SQL store uses; a pool over PGlite has it too. */
export type SqlPool = Pick<pg.Pool, "connect" | "end">;

/** A row as the driver returns it. */
export type Row = Record<string, unknown>;

/** How serialization failures are retried: capped exponential backoff with full jitter. */
export interface SqlRetryOptions {
  /** Attempts of one transaction, the first included. @defaultValue 8 */
  attemptsMax: number;
  /** Backoff before the second attempt (before jitter), in milliseconds. @defaultValue 4 */
  baseDelayMs: number;
  /** Longest backoff, in milliseconds. @defaultValue 250 */
  delayMsMax: number;
}

/** The defaults of {@link SqlRetryOptions}. */
export const defaultSqlRetry: Readonly<SqlRetryOptions> = Object.freeze({ attemptsMax: 8, baseDelayMs: 4, delayMsMax: 250 });

/** Counters for benchmarks: every statement is one round trip to the database. */
export interface SqlStoreStats {
  /** Transactions started (each attempt counts). */
  transactions: number;
  /** Statements sent, `BEGIN`, `COMMIT` and `ROLLBACK` included. */
  statements: number;
  /** Transactions run again after a serialization failure. */
  retries: number;
}

/** Runs statements on one connection, counting them. */
export interface SqlSession {
  query(text: string, values?: readonly unknown[]): Promise<{ rows: Row[]; rowCount: number }>;
}

/**
 * Runs work on pooled connections: in SERIALIZABLE transactions with retry, or as single
 * statements. It never uses `pool.query`, which destroys the connection on any SQL error; with
 * PGlite that connection is the only one and cannot be reopened.
 *
 * @internal
 */
export class SqlExecutor {
  /** Counters of round trips. */
  readonly stats: SqlStoreStats = { transactions: 0, statements: 0, retries: 0 };
  readonly #pool: SqlPool;
  readonly #retry: SqlRetryOptions;
  readonly #names = new Map<string, string>();
  #closed = false;

  constructor(pool: SqlPool, retry: SqlRetryOptions) {
    assert(retry.attemptsMax >= 1, "retry.attemptsMax >= 1");
    assert(retry.baseDelayMs >= 0 && retry.delayMsMax >= retry.baseDelayMs, "0 <= retry.baseDelayMs <= retry.delayMsMax");
    this.#pool = pool;
    this.#retry = retry;
  }

  /** Marks the executor closed: every later call fails with `ERR_STORE_UNAVAILABLE`. */
  close(): void {
    this.#closed = true;
  }

  /**
   * Runs `work` in one SERIALIZABLE transaction and retries the whole of it on a serialization
   * failure. `work` must be free of side effects outside the transaction.
   *
   * @throws StoreError, or whatever AgentError `work` throws
   */
  transaction<T>(operation: string, work: (session: SqlSession) => Promise<T>): Promise<T> {
    return this.#withRetry(operation, true, work);
  }

  /** Runs `work` (one statement, or reads that need no common snapshot) outside a transaction. */
  single<T>(operation: string, work: (session: SqlSession) => Promise<T>): Promise<T> {
    return this.#withRetry(operation, false, work);
  }

  async #withRetry<T>(operation: string, transactional: boolean, work: (session: SqlSession) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt += 1) {
      if (this.#closed) throw new StoreError("ERR_STORE_UNAVAILABLE", `${operation}: the store is closed`, { details: { operation } });
      try {
        return await this.#attempt(operation, transactional, work);
      } catch (error) {
        const translated = error as AgentError;
        if (translated.code !== "ERR_STORE_RETRYABLE" || attempt >= this.#retry.attemptsMax) throw translated;
        this.stats.retries += 1;
        const ceilingMs = Math.min(this.#retry.delayMsMax, this.#retry.baseDelayMs * 2 ** (attempt - 1));
        await new Promise((resolve) => setTimeout(resolve, Math.random() * ceilingMs));
      }
    }
  }

  /** The prepared-statement name of a statement text; texts come in a bounded number of shapes. */
  #statementName(text: string): string {
    let name = this.#names.get(text);
    if (name === undefined) {
      if (this.#names.size >= statementNamesMax) this.#names.clear();
      name = `tsr_${createHash("sha256").update(text).digest("hex").slice(0, 32)}`;
      this.#names.set(text, name);
    }
    return name;
  }

  /** One attempt; rejects only with AgentErrors. */
  async #attempt<T>(operation: string, transactional: boolean, work: (session: SqlSession) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw translateError(error, operation);
    }
    const session: SqlSession = {
      query: async (text, values) => {
        this.stats.statements += 1;
        // Parameterized statements are prepared once per connection under a name derived from
        // their text: parsing and planning the group-commit statements is most of their cost.
        const name = values === undefined ? undefined : this.#statementName(text);
        const result = await client.query({ text, values: values as unknown[] | undefined, name });
        return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 };
      },
    };
    let broken: Error | undefined;
    try {
      if (transactional) {
        this.stats.transactions += 1;
        await session.query("BEGIN ISOLATION LEVEL SERIALIZABLE");
      }
      const result = await work(session);
      if (transactional) await session.query("COMMIT");
      return result;
    } catch (error) {
      const translated = translateError(error, operation);
      if (translated.code === "ERR_STORE_UNAVAILABLE") broken = translated;
      else if (transactional) broken = await rollback(session);
      throw translated;
    } finally {
      // A connection that failed is destroyed rather than handed to the next caller.
      client.release(broken);
    }
  }
}

async function rollback(session: SqlSession): Promise<Error | undefined> {
  try {
    await session.query("ROLLBACK");
    return undefined;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}
