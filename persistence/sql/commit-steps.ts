import { assert, InvariantError } from "../../core/assert.js";
import type { AgentError } from "../../core/errors.js";
import { SnapshotConflictError } from "../../core/errors.js";
import type { CommitOutcome, StepCommit } from "../../core/ports/store.js";
import { validateCommit } from "../internal/validate-commit.js";
import type { Owned } from "./commit-writes.js";
import { int8 } from "./rows.js";
import { type MessageState, stepStatement } from "./step-statement.js";
import type { Tables } from "./tables.js";
import type { SqlExecutor, SqlSession, SqlStatement } from "./transaction.js";

/** A commit with its position in the caller's batch. */
type Indexed = Owned<StepCommit>;

/** The SQL spoken by the database: PostgreSQL (and PGlite), or CockroachDB. */
export type SqlDialect = "postgres" | "cockroach";

/** A store's dialect, learned from the database on its first commit. */
export interface DialectCache {
  dialect: SqlDialect | undefined;
}

/**
 * CockroachDB refuses a statement that modifies one table in two of its CTEs unless this is on
 * (from v22.1; `SET LOCAL` from v21.2), because a row modified twice could be corrupted. The step
 * statement modifies `actors`, `effects`, `mailbox` and `timers` twice each, but never one row
 * twice (see {@link stepStatement}). PostgreSQL has no such check.
 */
const cockroachMultipleModifications: SqlStatement = { text: "SET LOCAL enable_multiple_modifications_of_table = on" };

/**
 * Group commit: every valid commit of the batch in one SERIALIZABLE transaction. A batch of
 * independent commits is one statement, sent with the BEGIN, then the COMMIT: two round trips
 * on a pipelining connection, whatever the batch size (see {@link writeBatch}). When that
 * transaction fails for a reason other than a lost connection, each commit is retried in a
 * transaction of its own, so that one bad commit cannot take the others down.
 *
 * @internal
 * @param executor - runs transactions with retry
 * @param tables - the table names
 * @param commits - the batch
 * @param dialect - the database's dialect, filled in on first use
 * @returns one outcome per commit, in order; a store failure is an outcome, not a rejection
 * @throws InvariantError only for a bug in this module
 */
export async function commitStepsSql(
  executor: SqlExecutor,
  tables: Tables,
  commits: readonly StepCommit[],
  dialect: DialectCache,
): Promise<CommitOutcome[]> {
  const outcomes: Array<CommitOutcome | undefined> = commits.map(() => undefined);
  const valid: Indexed[] = [];
  commits.forEach((commit, index) => {
    const invalid = validateCommit(commit);
    if (invalid === undefined) valid.push({ idx: index, row: commit });
    else outcomes[index] = { ok: false, error: invalid };
  });
  if (valid.length > 0) await commitValid(executor, tables, valid, outcomes, dialect);
  return outcomes.map((outcome, index) => {
    assert(outcome !== undefined, `commit ${index} has an outcome`);
    return outcome;
  });
}

async function commitValid(
  executor: SqlExecutor,
  tables: Tables,
  valid: Indexed[],
  outcomes: Array<CommitOutcome | undefined>,
  dialect: DialectCache,
): Promise<void> {
  let failure: AgentError;
  try {
    const results = await executor.transaction("commitSteps", (session) => writeBatch(session, tables, valid, dialect));
    for (const [index, outcome] of results) outcomes[index] = outcome;
    return;
  } catch (error) {
    if (error instanceof InvariantError) throw error;
    failure = error as AgentError;
  }
  if (valid.length === 1 || failure.code === "ERR_STORE_UNAVAILABLE") {
    for (const { idx } of valid) outcomes[idx] = { ok: false, error: failure };
    return;
  }
  // In order, so that a later step of the same actor sees whether the earlier one landed.
  let unavailable: AgentError | undefined;
  for (const item of valid) {
    if (unavailable !== undefined) {
      // Once the database is unreachable, every further attempt would only wait for its timeout.
      outcomes[item.idx] = { ok: false, error: unavailable };
      continue;
    }
    try {
      const results = await executor.transaction("commitSteps", (session) => writeBatch(session, tables, [item], dialect));
      outcomes[item.idx] = results.get(item.idx);
    } catch (error) {
      if (error instanceof InvariantError) throw error;
      const failed = error as AgentError;
      if (failed.code === "ERR_STORE_UNAVAILABLE") unavailable = failed;
      outcomes[item.idx] = { ok: false, error: failed };
    }
  }
}

/**
 * Writes a batch inside an open transaction. Commits are split into rounds so that each round
 * holds at most one commit per actor and none that depends on another of the same round (a later
 * step of the same actor, a step of a child created in the batch, or one applying a message sent
 * in the batch). Each round is one statement ({@link stepStatement}) that guards its commits and
 * writes those that pass. The first goes out with the transaction's BEGIN (and, on CockroachDB,
 * the `SET LOCAL` it needs) in one round trip when the connection pipelines; a batch of N
 * independent commits thus costs two round trips: BEGIN + statement, and COMMIT.
 */
async function writeBatch(
  session: SqlSession,
  tables: Tables,
  items: readonly Indexed[],
  dialect: DialectCache,
): Promise<Map<number, CommitOutcome>> {
  const outcomes = new Map<number, CommitOutcome>();
  // Once per store: the first commit asks the database what it is (one more round trip).
  dialect.dialect ??= /cockroachdb/i.test(String((await session.query("SELECT version() AS version")).rows[0]?.version))
    ? "cockroach"
    : "postgres";
  let prelude = dialect.dialect === "cockroach" ? [cockroachMultipleModifications] : [];
  const rounds = planRounds(items);
  for (const [r, round] of rounds.entries()) {
    // The last round carries the COMMIT: one round trip for the whole group commit.
    const results = await session.queryAll([...prelude, stepStatement(tables, round, dialect.dialect)], {
      commit: r === rounds.length - 1,
    });
    prelude = [];
    const last = results[results.length - 1];
    assert(last !== undefined, "the step statement has a result");
    readGuard(last.rows, round, outcomes);
  }
  return outcomes;
}

function planRounds(items: readonly Indexed[]): Indexed[][] {
  const rounds: Indexed[][] = [];
  const actorRound = new Map<string, number>();
  const createdRound = new Map<string, number>();
  const sentRound = new Map<string, number>();
  for (const item of items) {
    const { tenantId, actorId, appliedMessageId, children, messages } = item.row;
    const actorKey = JSON.stringify([tenantId, actorId]);
    let after = Math.max(actorRound.get(actorKey) ?? -1, createdRound.get(actorKey) ?? -1);
    if (appliedMessageId !== undefined) after = Math.max(after, sentRound.get(JSON.stringify([tenantId, actorId, appliedMessageId])) ?? -1);
    const round = after + 1;
    (rounds[round] ??= []).push(item);
    actorRound.set(actorKey, round);
    for (const child of children) {
      const key = JSON.stringify([child.tenantId, child.actorId]);
      if (!createdRound.has(key)) createdRound.set(key, round);
    }
    for (const message of messages) {
      const key = JSON.stringify([message.tenantId, message.actorId, message.messageId]);
      if (!sentRound.has(key)) sentRound.set(key, round);
    }
  }
  assert(
    rounds.every((round) => round.length > 0),
    "rounds have no gaps",
  );
  return rounds;
}

/** Reads the step statement's rows: records each commit's outcome and checks that the statement did what its guard decided. */
function readGuard(rows: ReadonlyArray<Record<string, unknown>>, round: readonly Indexed[], outcomes: Map<number, CommitOutcome>): void {
  assert(rows.length === round.length, "the step statement returns one row per commit");
  const byIndex = new Map(rows.map((row) => [int8(row.idx, "idx"), row]));
  for (const { idx, row: commit } of round) {
    const row = byIndex.get(idx);
    assert(row !== undefined, `the step statement returned commit ${idx}`);
    const actual = row.actual_revision === null ? undefined : int8(row.actual_revision, "actual_revision");
    const actualEpoch = row.actual_epoch === null ? undefined : int8(row.actual_epoch, "actual_epoch");
    const messageState = row.message_state as MessageState;
    const conflict = conflictOf(commit, actual, actualEpoch, messageState);
    assert(row.applied === (conflict === undefined), `the guard of commit ${idx} updated the actor exactly when it passed`);
    const shouldMark = conflict === undefined && commit.appliedMessageId !== undefined;
    assert(row.marked === shouldMark, `the guard of commit ${idx} marked its message exactly when it applied one`);
    outcomes.set(idx, conflict === undefined ? { ok: true } : { ok: false, error: conflict });
  }
}

/**
 * Why a commit is refused, or `undefined`. The first reason that holds is given, in this order,
 * as `details.reason` (stable strings, see the memory store, which gives the same):
 * `actor-not-found`, `stale-revision`, `stale-epoch`, `message-already-applied`, `message-not-found`.
 */
function conflictOf(
  commit: StepCommit,
  actual: number | undefined,
  actualEpoch: number | undefined,
  messageState: MessageState,
): SnapshotConflictError | undefined {
  const { actorId, expectedRevision } = commit;
  if (actual === undefined)
    return new SnapshotConflictError(actorId, expectedRevision, undefined, { details: { reason: "actor-not-found" } });
  if (actual !== expectedRevision)
    return new SnapshotConflictError(actorId, expectedRevision, actual, { details: { reason: "stale-revision" } });
  if (actualEpoch !== commit.epoch) {
    return new SnapshotConflictError(actorId, expectedRevision, actual, {
      details: { reason: "stale-epoch", expectedEpoch: commit.epoch, actualEpoch },
    });
  }
  assert(messageState !== "none" || commit.appliedMessageId === undefined, "a commit applying a message has a message state");
  if (messageState === "applied" || messageState === "missing") {
    return new SnapshotConflictError(actorId, expectedRevision, actual, {
      details: {
        reason: messageState === "applied" ? "message-already-applied" : "message-not-found",
        messageId: commit.appliedMessageId ?? null,
      },
    });
  }
  return undefined;
}
