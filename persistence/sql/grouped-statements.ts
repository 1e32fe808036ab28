import { assert } from "../../core/assert.js";
import { BatchQueue } from "../../core/batch-queue.js";
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
 * The statements of a group must not depend on one another's outcome. If the database refused a
 * statement for what it holds (a unique violation, say), nothing of the group committed, and its
 * halves are written again in turn, down to statements alone, so that each caller gets its own
 * result or its own error, exactly as without grouping. Any other failure fails every caller of
 * the group: an unknown outcome (a broken connection, an unanswered COMMIT) may have committed,
 * and running the statements again could answer "exists" for what a call created itself; a
 * failure of the transaction as such (serialization failures that outlasted their retries, a
 * timeout) would only be multiplied. Statements later in a group see the writes of earlier ones,
 * as they would have, had those committed first.
 *
 * @internal
 */
export class GroupedStatements {
  readonly #executor: SqlExecutor;
  readonly #operation: string;
  readonly #queue = new BatchQueue<Waiter>(groupedStatementsMax, (group) => this.#writeGroup(group));
  /**
   * Groups taken from the queue, statements in them, and refused groups written again in halves
   * (transactions = groups + 2 × fallbacks), for tests and benchmarks.
   */
  readonly stats = { groups: 0, statements: 0, fallbacks: 0 };

  constructor(executor: SqlExecutor, operation: string) {
    this.#executor = executor;
    this.#operation = operation;
  }

  /** Runs `statement` in a transaction, maybe together with others; resolves with its rows once that committed. */
  run(statement: SqlStatement): Promise<Row[]> {
    return new Promise((resolve, reject) => this.#queue.push({ statement, resolve, reject }));
  }

  /** Writes one group taken from the queue; never rejects. */
  async #writeGroup(group: Waiter[]): Promise<void> {
    this.stats.groups += 1;
    this.stats.statements += group.length;
    try {
      await this.#write(group);
    } catch (error) {
      // Not expected (#write settles its waiters); never leave a caller waiting.
      for (const waiter of group) waiter.reject(error);
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
        assert(answered.length === group.length, "one result per statement of a group");
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
 * Whether the database refused one of the group's statements for what it holds: a constraint
 * violation (SQLSTATE class 23) or bad data (class 22). Nothing of the group committed, and the
 * statement alone would be refused the same way. Anything else (an unavailable store, an unknown
 * outcome, serialization failures that outlasted their retries, a timeout) concerns the group as a
 * whole: splitting it would only multiply the attempts, or could answer "exists" for what a call
 * created itself.
 */
function refusedByDatabase(error: unknown): boolean {
  const agentError = error as AgentError | undefined;
  const sqlState = (agentError?.details as { sqlState?: unknown } | undefined)?.sqlState;
  return agentError?.code !== "ERR_STORE_UNAVAILABLE" && typeof sqlState === "string" && /^2[23]/.test(sqlState);
}
