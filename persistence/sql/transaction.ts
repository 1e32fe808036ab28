import { createHash } from "node:crypto";
import type pg from "pg";
import { assert } from "../../core/assert.js";
import type { AgentError } from "../../core/errors.js";
import { StoreError } from "../../core/errors.js";
import { translateError } from "./errors.js";

/** How every transaction starts (DESIGN.md §11). */
const beginSerializable = "BEGIN ISOLATION LEVEL SERIALIZABLE";
const beginReadCommitted = "BEGIN ISOLATION LEVEL READ COMMITTED";

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

/** Counters for benchmarks. */
export interface SqlStoreStats {
  /** Transactions started (each attempt counts). */
  transactions: number;
  /** Statements sent, `BEGIN`, `COMMIT` and `ROLLBACK` included. */
  statements: number;
  /**
   * Times the store waited for the database to answer. Statements sent back to back on a
   * pipelining connection (`pipeline: true`) count once; on any other connection every statement
   * is a round trip of its own.
   */
  roundTrips: number;
  /** Transactions run again after a serialization failure. */
  retries: number;
}

/** One statement and its parameters. */
export interface SqlStatement {
  text: string;
  values?: readonly unknown[];
}

/** The result of one statement. */
export interface SqlResult {
  rows: Row[];
  rowCount: number;
  /** The command tag the server answered (`INSERT`, `COMMIT`, `ROLLBACK`, …). */
  command?: string;
}

/** Runs statements on one connection, counting them. */
export interface SqlSession {
  /** Runs one statement. */
  query(text: string, values?: readonly unknown[]): Promise<SqlResult>;
  /**
   * Runs statements in order, sent back to back in one round trip when the connection pipelines.
   * Each statement runs even when an earlier one failed (each has its own Sync), so only pass
   * statements that are harmless after a failure: inside a transaction, a failure aborts it and
   * every later statement fails too.
   *
   * With `commit`, the transaction's COMMIT goes out behind the statements in the same round trip
   * (the work must send nothing after): a client paused after sending them cannot leave the
   * transaction open holding its locks, and the step takes one round trip instead of two.
   *
   * @returns one result per statement
   * @throws the error of the first statement that failed, once every statement sent was answered
   */
  queryAll(statements: readonly SqlStatement[], options?: { commit?: boolean }): Promise<SqlResult[]>;
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
  readonly stats: SqlStoreStats = { transactions: 0, statements: 0, roundTrips: 0, retries: 0 };
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
    return this.#withRetry(operation, beginSerializable, work);
  }

  /**
   * Runs `work` in one READ COMMITTED transaction (retried like the others): for work that takes
   * row locks to serialize with its peers (`SELECT … FOR UPDATE`, an upsert), each statement then
   * reading what committed before it, rather than aborting on every overlap as SERIALIZABLE would.
   */
  lockingTransaction<T>(operation: string, work: (session: SqlSession) => Promise<T>): Promise<T> {
    return this.#withRetry(operation, beginReadCommitted, work);
  }

  /** Runs `work` (one statement, or reads that need no common snapshot) outside a transaction. */
  single<T>(operation: string, work: (session: SqlSession) => Promise<T>): Promise<T> {
    return this.#withRetry(operation, undefined, work);
  }

  async #withRetry<T>(operation: string, begin: string | undefined, work: (session: SqlSession) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt += 1) {
      if (this.#closed) throw new StoreError("ERR_STORE_UNAVAILABLE", `${operation}: the store is closed`, { details: { operation } });
      try {
        return await this.#attempt(operation, begin, work);
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
  async #attempt<T>(operation: string, begin: string | undefined, work: (session: SqlSession) => Promise<T>): Promise<T> {
    const transactional = begin !== undefined;
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw translateError(error, operation);
    }
    // A connection that ends while checked out (a network cut between or during statements) makes
    // the client emit 'error'; unheard, that would be an uncaught exception in the embedding process.
    // The statement under way fails on its own; the connection is destroyed on release.
    let lost: Error | undefined;
    const onLost = (error: Error): void => {
      lost ??= error;
    };
    client.on("error", onLost);
    // BEGIN is sent with the first statement of the work, in the same round trip when the
    // connection pipelines; a transaction that sends no statement sends neither BEGIN nor COMMIT.
    let beginPending = transactional;
    let committed = false;
    // Whether a COMMIT went out and got no answer: then the transaction may or may not have committed.
    let commitInDoubt = false;
    const session: SqlSession = {
      query: async (text, values) => {
        const [result] = await session.queryAll([{ text, values }]);
        assert(result !== undefined, "one statement has one result");
        return result;
      },
      queryAll: async (statements, options) => {
        assert(statements.length > 0, "queryAll needs a statement");
        assert(!committed, "nothing is sent after a pipelined COMMIT");
        const withBegin = beginPending;
        beginPending = false;
        if (withBegin) this.stats.transactions += 1;
        const commit = options?.commit === true && transactional;
        if (commit) committed = true;
        const last = { sent: false, answered: false };
        let results: SqlResult[];
        try {
          results = await this.#send(
            client,
            [...(withBegin ? [{ text: begin! }] : []), ...statements, ...(commit ? [{ text: "COMMIT" }] : [])],
            last,
          );
        } finally {
          // A COMMIT answered (even with ROLLBACK, after an earlier statement failed) leaves no doubt.
          if (commit) commitInDoubt = last.sent && !last.answered;
        }
        if (commit) {
          const tag = results.at(-1)?.command;
          // PostgreSQL answers the COMMIT of a failed transaction with ROLLBACK; that is no commit.
          if (tag !== "COMMIT")
            throw new StoreError("ERR_STORE", `COMMIT was answered with ${String(tag)}: the transaction did not commit`, {
              details: { command: tag ?? null },
            });
        }
        return results.slice(withBegin ? 1 : 0, commit ? -1 : undefined);
      },
    };
    let broken: Error | undefined;
    try {
      const result = await work(session);
      if (transactional && !beginPending && !committed) {
        commitInDoubt = true;
        await this.#commit(client);
      }
      return result;
    } catch (error) {
      let translated = translateError(error, operation);
      // A COMMIT that went out and got no answer, or CockroachDB's 40003 (statement completion
      // unknown) for it or for a statement outside a transaction (its own implicit commit): the
      // work may have committed, and running it again could apply it twice. It leaves as
      // unavailable with `outcome: "unknown"`, never retried here.
      const inDoubt = transactional ? commitInDoubt : true;
      const sqlState = (translated.details as { sqlState?: unknown } | undefined)?.sqlState;
      if (inDoubt && (sqlState === "40003" || (transactional && translated.code === "ERR_STORE_UNAVAILABLE"))) {
        translated = new StoreError("ERR_STORE_UNAVAILABLE", `${operation}: the outcome is unknown: ${translated.message}`, {
          cause: translated,
          retryable: true,
          details: { ...translated.details, outcome: "unknown" },
        });
      }
      if (translated.code === "ERR_STORE_UNAVAILABLE") broken = translated;
      // After a pipelined COMMIT the transaction may be over (then ROLLBACK only warns) or, on a
      // connection that does not pipeline, never sent: roll back either way.
      else if (transactional && !beginPending) broken = await this.#rollback(client);
      throw translated;
    } finally {
      client.off("error", onLost);
      // A connection that failed is destroyed rather than handed to the next caller.
      client.release(broken ?? lost);
    }
  }

  /**
   * Sends statements in order and waits for every answer. On a pipelining connection they all go
   * out before the first answer comes back: one round trip. Each carries its own Sync, so a
   * statement behind a BEGIN that failed would run on its own; BEGIN fails only when the
   * connection does, and then so does everything behind it. Parameterized statements are
   * prepared once per connection under a name derived from their text: parsing and planning the
   * group-commit statements is most of their cost. `last` learns whether the last statement went
   * out and whether it was answered (the caller's COMMIT, when it sent one).
   */
  async #send(
    client: pg.PoolClient,
    statements: readonly SqlStatement[],
    last: { sent: boolean; answered: boolean } = { sent: false, answered: false },
  ): Promise<SqlResult[]> {
    const submit = ({ text, values }: SqlStatement): Promise<pg.QueryResult> => {
      this.stats.statements += 1;
      const name = values === undefined ? undefined : this.#statementName(text);
      return client.query({ text, values: values as unknown[] | undefined, name });
    };
    let settled: Array<PromiseSettledResult<pg.QueryResult>>;
    if ((client as { pipeline?: boolean }).pipeline === true) {
      this.stats.roundTrips += 1;
      // A pipelining client writes each query as it is submitted; corked, they leave in one
      // write, so the server wakes once for the whole batch. On a virtualized host a loopback
      // write costs ~100 µs of the sender's CPU, most of a small step's budget.
      const stream = (client as unknown as { connection?: { stream?: { cork?: () => void; uncork?: () => void } } }).connection?.stream;
      stream?.cork?.();
      let submitted: Array<Promise<pg.QueryResult>>;
      try {
        submitted = statements.map(submit);
      } finally {
        stream?.uncork?.();
      }
      settled = await Promise.allSettled(submitted);
    } else {
      // One at a time, stopping at the first failure: after a failed BEGIN nothing may run outside
      // the transaction, and after any other failure the transaction is aborted anyway.
      settled = [];
      for (const statement of statements) {
        this.stats.roundTrips += 1;
        const [one] = await Promise.allSettled([submit(statement)]);
        settled.push(one!);
        if (one!.status === "rejected") break;
      }
    }
    last.sent = settled.length === statements.length;
    last.answered = last.sent && settled.at(-1)?.status === "fulfilled";
    const failed = settled.find((outcome) => outcome.status === "rejected");
    if (failed !== undefined) throw failed.reason;
    return settled.map((outcome) => {
      assert(outcome.status === "fulfilled", "every statement succeeded");
      return { rows: outcome.value.rows as Row[], rowCount: outcome.value.rowCount ?? 0, command: outcome.value.command };
    });
  }

  /**
   * Commits. PostgreSQL answers a COMMIT of a transaction that already failed with a successful
   * `ROLLBACK`; that must not pass for a commit.
   */
  async #commit(client: pg.PoolClient): Promise<void> {
    const { command } = await this.#sendRaw(client, "COMMIT");
    if (command !== "COMMIT") {
      throw new StoreError("ERR_STORE", `COMMIT was answered with ${String(command)}: the transaction did not commit`, {
        details: { command: command ?? null },
      });
    }
  }

  async #rollback(client: pg.PoolClient): Promise<Error | undefined> {
    try {
      await this.#sendRaw(client, "ROLLBACK");
      return undefined;
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
  }

  /** Sends a statement without parameters as a simple query, alone. */
  #sendRaw(client: pg.PoolClient, text: string): Promise<pg.QueryResult> {
    this.stats.statements += 1;
    this.stats.roundTrips += 1;
    return client.query(text);
  }
}
