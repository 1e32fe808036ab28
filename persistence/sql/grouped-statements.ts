import type { AgentError } from "../../core/errors.js";
import type { Row, SqlExecutor, SqlStatement } from "./transaction.js";

/** The most statements one grouped transaction carries. */
export const groupedStatementsMax = 64;

interface Waiter {
  statement: SqlStatement;
  resolve: (rows: Row[]) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for independent one-statement transactions (actor creation): while one group is
 * in flight, new statements queue, and the next group runs them in one SERIALIZABLE transaction,
 * sent back to back with the COMMIT behind them: one round trip and one WAL flush for the group,
 * where each would have had its own. Alone, a statement runs as it would have without grouping.
 *
 * The statements of a group must not depend on one another's outcome. If the database refused the
 * group's transaction (a statement's unique violation, say), nothing of it committed, and its
 * halves are written again in turn, down to statements alone, so that each caller gets its own
 * result or its own error, exactly as without grouping. If the outcome is unknown (the connection broke, a
 * COMMIT went unanswered), the group may have committed: running its statements again could
 * answer "exists" for what this very call created, so every caller gets the error instead, as
 * each would have alone. Statements later in a group see the writes of earlier ones, as they
 * would have, had those committed first.
 *
 * @internal
 */
export class GroupedStatements {
  readonly #executor: SqlExecutor;
  readonly #operation: string;
  #queue: Waiter[] = [];
  #flushing = false;
  /** Groups run and statements in them, for tests and benchmarks. */
  readonly stats = { groups: 0, statements: 0, fallbacks: 0 };

  constructor(executor: SqlExecutor, operation: string) {
    this.#executor = executor;
    this.#operation = operation;
  }

  /** Runs `statement` in a transaction, maybe together with others; resolves with its rows once that committed. */
  run(statement: SqlStatement): Promise<Row[]> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ statement, resolve, reject });
      if (!this.#flushing) void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length > 0) {
        const group = this.#queue.splice(0, groupedStatementsMax);
        this.stats.groups += 1;
        this.stats.statements += group.length;
        await this.#write(group);
      }
    } finally {
      this.#flushing = false;
    }
  }

  /**
   * Writes a group in one transaction. When the database refuses it, the two halves are written
   * in turn, each the same way, down to single statements: one refused statement among 64 costs
   * 13 transactions rather than 65, and its caller alone gets the error.
   */
  async #write(group: Waiter[]): Promise<void> {
    let results: Row[][];
    try {
      results = await this.#executor.transaction(this.#operation, async (session) => {
        const answered = await session.queryAll(
          group.map((waiter) => waiter.statement),
          { commit: true },
        );
        return answered.map((result) => result.rows);
      });
    } catch (error) {
      if (group.length === 1 || !refusedByDatabase(error)) {
        for (const waiter of group) waiter.reject(error);
        return;
      }
      // Nothing of the group committed: its halves again, in order, for their own answers.
      this.stats.fallbacks += 1;
      const half = Math.ceil(group.length / 2);
      await this.#write(group.slice(0, half));
      await this.#write(group.slice(half));
      return;
    }
    group.forEach((waiter, i) => waiter.resolve(results[i]!));
  }
}

/**
 * Whether the database refused the transaction, so that nothing of it committed: it answered with
 * an error of its own. Not when the store is unavailable (a broken connection, an unanswered
 * COMMIT, a server shutting down) nor after CockroachDB's "statement completion unknown" (40003):
 * those may have committed.
 */
function refusedByDatabase(error: unknown): boolean {
  const agentError = error as AgentError | undefined;
  const sqlState = (agentError?.details as { sqlState?: unknown } | undefined)?.sqlState;
  return typeof sqlState === "string" && agentError?.code !== "ERR_STORE_UNAVAILABLE" && sqlState !== "40003";
}
