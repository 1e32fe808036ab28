import { assert, InvariantError } from "../../core/assert.js";
import type { AgentError } from "../../core/errors.js";
import { SnapshotConflictError } from "../../core/errors.js";
import type { CommitOutcome, StepCommit } from "../../core/ports/store.js";
import { validateCommit } from "../internal/validate-commit.js";
import { insertRowsStatement, openEffectStates } from "./commit-writes.js";
import { int8, jsonParam } from "./rows.js";
import { SqlParams } from "./sql-params.js";
import type { Tables } from "./tables.js";
import type { SqlExecutor, SqlSession } from "./transaction.js";

/** A commit with its position in the caller's batch. */
interface Indexed {
  index: number;
  commit: StepCommit;
}

/**
 * Group commit: every valid commit of the batch in one SERIALIZABLE transaction of a constant
 * number of statements (see {@link writeBatch}). When that transaction fails for a reason other
 * than a lost connection, each commit is retried in a transaction of its own, so that one bad
 * commit cannot take the others down.
 *
 * @internal
 * @param executor - runs transactions with retry
 * @param tables - the table names
 * @param commits - the batch
 * @returns one outcome per commit, in order; a store failure is an outcome, not a rejection
 * @throws InvariantError only for a bug in this module
 */
export async function commitStepsSql(executor: SqlExecutor, tables: Tables, commits: readonly StepCommit[]): Promise<CommitOutcome[]> {
  const outcomes: Array<CommitOutcome | undefined> = commits.map(() => undefined);
  const valid: Indexed[] = [];
  commits.forEach((commit, index) => {
    const invalid = validateCommit(commit);
    if (invalid === undefined) valid.push({ index, commit });
    else outcomes[index] = { ok: false, error: invalid };
  });
  if (valid.length > 0) await commitValid(executor, tables, valid, outcomes);
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
): Promise<void> {
  let failure: AgentError;
  try {
    const results = await executor.transaction("commitSteps", (session) => writeBatch(session, tables, valid));
    for (const [index, outcome] of results) outcomes[index] = outcome;
    return;
  } catch (error) {
    if (error instanceof InvariantError) throw error;
    failure = error as AgentError;
  }
  if (valid.length === 1 || failure.code === "ERR_STORE_UNAVAILABLE") {
    for (const { index } of valid) outcomes[index] = { ok: false, error: failure };
    return;
  }
  // In order, so that a later step of the same actor sees whether the earlier one landed.
  let unavailable: AgentError | undefined;
  for (const item of valid) {
    if (unavailable !== undefined) {
      // Once the database is unreachable, every further attempt would only wait for its timeout.
      outcomes[item.index] = { ok: false, error: unavailable };
      continue;
    }
    try {
      const results = await executor.transaction("commitSteps", (session) => writeBatch(session, tables, [item]));
      outcomes[item.index] = results.get(item.index);
    } catch (error) {
      if (error instanceof InvariantError) throw error;
      const failed = error as AgentError;
      if (failed.code === "ERR_STORE_UNAVAILABLE") unavailable = failed;
      outcomes[item.index] = { ok: false, error: failed };
    }
  }
}

/**
 * Writes a batch inside an open transaction. Commits are split into rounds so that each round
 * holds at most one commit per actor and none that depends on another of the same round (a later
 * step of the same actor, a step of a child created in the batch, or one applying a message sent
 * in the batch). Each round takes two statements: the guard, which also updates the actor rows,
 * marks applied messages, records effect outcomes, cancels effects and clears timers; and the
 * inserts. A batch of N independent commits thus costs BEGIN + 2 + COMMIT round trips.
 */
async function writeBatch(session: SqlSession, tables: Tables, items: readonly Indexed[]): Promise<Map<number, CommitOutcome>> {
  const outcomes = new Map<number, CommitOutcome>();
  for (const round of planRounds(items)) {
    const accepted = await guardRound(session, tables, round, outcomes);
    if (accepted.length === 0) continue;
    const statement = insertRowsStatement(tables, accepted);
    await session.query(statement.text, statement.values);
  }
  return outcomes;
}

function planRounds(items: readonly Indexed[]): Indexed[][] {
  const rounds: Indexed[][] = [];
  const actorRound = new Map<string, number>();
  const createdRound = new Map<string, number>();
  const sentRound = new Map<string, number>();
  for (const item of items) {
    const { tenantId, actorId, appliedMessageId, children, messages } = item.commit;
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

/** Runs the guard statement of one round, records refusals, and returns the accepted commits. */
async function guardRound(
  session: SqlSession,
  tables: Tables,
  round: readonly Indexed[],
  outcomes: Map<number, CommitOutcome>,
): Promise<StepCommit[]> {
  const statement = guardStatement(tables, round);
  const { rows } = await session.query(statement.text, statement.values);
  assert(rows.length === round.length, "the guard returns one row per commit");
  const byIndex = new Map(rows.map((row) => [int8(row.idx, "idx"), row]));
  const accepted: StepCommit[] = [];
  for (const { index, commit } of round) {
    const row = byIndex.get(index);
    assert(row !== undefined, `the guard returned commit ${index}`);
    const actual = row.actual_revision === null ? undefined : int8(row.actual_revision, "actual_revision");
    const actualEpoch = row.actual_epoch === null ? undefined : int8(row.actual_epoch, "actual_epoch");
    const conflict = conflictOf(commit, actual, actualEpoch, row.message_pending === true);
    assert(row.applied === (conflict === undefined), `the guard of commit ${index} updated the actor exactly when it passed`);
    const shouldMark = conflict === undefined && commit.appliedMessageId !== undefined;
    assert(row.marked === shouldMark, `the guard of commit ${index} marked its message exactly when it applied one`);
    if (conflict !== undefined) {
      outcomes.set(index, { ok: false, error: conflict });
    } else {
      outcomes.set(index, { ok: true });
      accepted.push(commit);
    }
  }
  return accepted;
}

function conflictOf(
  commit: StepCommit,
  actual: number | undefined,
  actualEpoch: number | undefined,
  messagePending: boolean,
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
  if (!messagePending) {
    return new SnapshotConflictError(actorId, expectedRevision, actual, {
      details: { reason: "message-not-pending", messageId: commit.appliedMessageId ?? null },
    });
  }
  return undefined;
}

/**
 * The guard of one round as one statement. `cur` reads each actor's revision and epoch and
 * whether the applied message is still pending; `ok` keeps the commits whose guard passed; the
 * data-modifying CTEs then update only those. All parts see the same snapshot, and SERIALIZABLE
 * isolation turns any concurrent change to the rows read into a retryable 40001.
 */
function guardStatement(tables: Tables, round: readonly Indexed[]): { text: string; values: unknown[] } {
  const p = new SqlParams();
  const c = round.map((item) => item.commit);
  const outcome = c.map((commit) => commit.effectOutcome);
  const source = p.unnest("u", [
    ["idx", "int8", round.map((item) => item.index)],
    ["tenant_id", "text", c.map((x) => x.tenantId)],
    ["actor_id", "text", c.map((x) => x.actorId)],
    ["expected", "int8", c.map((x) => x.expectedRevision)],
    ["epoch", "int8", c.map((x) => x.epoch)],
    ["seq", "int8", c.map((x) => x.entry.seq)],
    ["last_hash", "text", c.map((x) => x.entry.hash)],
    ["status", "text", c.map((x) => x.actor.status)],
    ["output", "text", c.map((x) => jsonParam(x.actor.output))],
    ["error", "text", c.map((x) => jsonParam(x.actor.error))],
    ["child_count", "int8", c.map((x) => x.actor.childCount)],
    ["updated_at", "int8", c.map((x) => x.actor.updatedAt)],
    ["has_snapshot", "bool", c.map((x) => x.actor.snapshot !== undefined)],
    ["snapshot", "text", c.map((x) => jsonParam(x.actor.snapshot))],
    ["message_id", "text", c.map((x) => x.appliedMessageId ?? null)],
    ["finalize", "bool", c.map((x) => x.finalize)],
    ["o_effect_id", "text", outcome.map((o) => o?.effectId ?? null)],
    ["o_state", "text", outcome.map((o) => o?.state ?? null)],
    ["o_result", "text", outcome.map((o) => jsonParam(o?.result))],
    ["o_result_ref", "text", outcome.map((o) => o?.resultRef ?? null)],
    ["o_error", "text", outcome.map((o) => jsonParam(o?.error))],
    ["o_usage", "text", outcome.map((o) => jsonParam(o?.usage))],
    ["o_attempts", "int8", outcome.map((o) => o?.attempts ?? null)],
  ]);
  const same = (a: string, b: string) => `${a}.tenant_id = ${b}.tenant_id AND ${a}.actor_id = ${b}.actor_id`;
  const ctes = [
    `cur AS (SELECT u.*, a.revision AS actual_revision, a.epoch AS actual_epoch,
      (u.message_id IS NULL OR EXISTS (SELECT 1 FROM ${tables.mailbox} m
        WHERE ${same("m", "u")} AND m.message_id = u.message_id AND m.applied_seq IS NULL)) AS message_pending
      FROM ${source} LEFT JOIN ${tables.actors} a ON ${same("a", "u")})`,
    `ok AS (SELECT * FROM cur WHERE actual_revision = expected AND actual_epoch = epoch AND message_pending)`,
    `applied AS (UPDATE ${tables.actors} a SET revision = ok.seq, status = ok.status, output = ok.output::jsonb, error = ok.error::jsonb,
        child_count = ok.child_count, updated_at = ok.updated_at, last_hash = ok.last_hash,
        snapshot = CASE WHEN ok.has_snapshot THEN ok.snapshot::jsonb ELSE a.snapshot END,
        snapshot_seq = CASE WHEN ok.has_snapshot THEN ok.seq ELSE a.snapshot_seq END
      FROM ok WHERE ${same("a", "ok")} AND a.revision = ok.expected AND a.epoch = ok.epoch
      RETURNING a.tenant_id, a.actor_id)`,
    `marked AS (UPDATE ${tables.mailbox} m SET applied_seq = ok.seq
      FROM ok WHERE ${same("m", "ok")} AND m.message_id = ok.message_id AND m.applied_seq IS NULL
      RETURNING m.tenant_id, m.actor_id)`,
  ];
  if (c.some((x) => x.effectOutcome !== undefined || x.finalize)) ctes.push(effectsCte(tables));
  const cleared = c.flatMap((x) => (x.finalize ? [] : x.timersCleared.map((timerId) => [x.tenantId, x.actorId, timerId] as const)));
  const finalized = c.filter((x) => x.finalize).map((x) => [x.tenantId, x.actorId, null] as const);
  const timerRows = [...cleared, ...finalized];
  if (timerRows.length > 0) {
    // A row without a timer id stands for every timer of its actor (a finalizing step).
    const timers = p.unnest("tc", [
      ["tenant_id", "text", timerRows.map((r) => r[0])],
      ["actor_id", "text", timerRows.map((r) => r[1])],
      ["timer_id", "text", timerRows.map((r) => r[2])],
    ]);
    ctes.push(`cleared AS (DELETE FROM ${tables.timers} t USING ${timers}, ok
      WHERE ${same("ok", "tc")} AND ${same("t", "tc")} AND (tc.timer_id IS NULL OR t.timer_id = tc.timer_id)
      RETURNING 1)`);
  }
  const text = `WITH ${ctes.join(",\n")}
    SELECT cur.idx, cur.actual_revision, cur.actual_epoch, cur.message_pending,
      ap.actor_id IS NOT NULL AS applied, mk.actor_id IS NOT NULL AS marked
    FROM cur LEFT JOIN applied ap ON ${same("ap", "cur")} LEFT JOIN marked mk ON ${same("mk", "cur")}`;
  return { text, values: p.values };
}

/** Records each accepted commit's effect outcome and, when it finalizes, cancels its open effects. */
function effectsCte(tables: Tables): string {
  const open = openEffectStates.map((state) => `'${state}'`).join(", ");
  const isOutcome = "e.effect_id = ok.o_effect_id";
  return `outcomes AS (UPDATE ${tables.effects} e SET
      state = CASE WHEN ${isOutcome} THEN ok.o_state ELSE 'cancelled' END,
      result = CASE WHEN ${isOutcome} THEN ok.o_result::jsonb ELSE e.result END,
      result_ref = CASE WHEN ${isOutcome} THEN ok.o_result_ref ELSE e.result_ref END,
      error = CASE WHEN ${isOutcome} THEN ok.o_error::jsonb ELSE e.error END,
      usage = CASE WHEN ${isOutcome} THEN ok.o_usage::jsonb ELSE e.usage END,
      attempts = CASE WHEN ${isOutcome} THEN ok.o_attempts ELSE e.attempts END,
      completed_seq = CASE WHEN ${isOutcome} THEN ok.seq ELSE e.completed_seq END,
      updated_at = ok.updated_at
    FROM ok WHERE e.tenant_id = ok.tenant_id AND e.actor_id = ok.actor_id
      AND (${isOutcome} OR (ok.finalize AND e.state IN (${open})))
    RETURNING 1)`;
}
