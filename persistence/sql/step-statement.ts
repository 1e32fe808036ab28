import type { StepCommit } from "../../core/ports/store.js";
import { type Owned, openEffectStates, writeCtes } from "./commit-writes.js";
import { jsonParam } from "./rows.js";
import { SqlParams } from "./sql-params.js";
import type { Tables } from "./tables.js";
import type { SqlStatement } from "./transaction.js";

/** The columns of an accepted commit that the writes after the guard read from `acc`. */
const accColumns = [
  "idx",
  "tenant_id",
  "actor_id",
  "seq",
  "updated_at",
  "message_id",
  "finalize",
  "o_effect_id",
  "o_state",
  "o_result",
  "o_result_ref",
  "o_error",
  "o_usage",
  "o_attempts",
  "o_audit",
] as const;

/** The largest round whose rows travel as one parameter per value (a `VALUES` list). */
const valuesRowsMax = 1;

/** The largest round whose rows travel as one JSON document rather than as arrays (PostgreSQL only). */
const jsonRowsMax = 16;

/** What the mailbox held, when the step was guarded, of the message a commit applies. */
export type MessageState = "none" | "pending" | "applied" | "missing";

/**
 * The one statement that commits a round of independent steps: their guards and every write,
 * as data-modifying CTEs over one snapshot.
 *
 * - `cur` reads each actor's revision and epoch and the state of the message the step applies.
 * - `ok` keeps the commits whose guard passed; `acc` updates their actor rows, again only
 *   where revision and epoch still match, and returns the commits whose row it updated.
 * - Everything else (`marked`, `outcomes`, `cancelled`, `cleared`, and the inserts of
 *   {@link writeCtes}) reads `acc`, so a refused commit writes nothing, and no client round trip
 *   sits between the guard and the writes.
 *
 * No row is modified twice: timers both cleared and set by one step are only upserted, each
 * effect is either updated (an earlier one) or inserted (a new one), a message is either marked
 * (pending before) or inserted (`ON CONFLICT DO NOTHING`), and children are new actor rows. This
 * is what PostgreSQL requires of data-modifying CTEs, and what makes CockroachDB's
 * `enable_multiple_modifications_of_table` safe to turn on for it.
 *
 * @internal
 * @param tables - the table names
 * @param round - commits with their batch indexes, at most one per actor, none depending on another
 * @param dialect - the database's: a small round's row sources are JSON on PostgreSQL, arrays otherwise
 * @returns the statement; its rows are one per commit: `idx`, `actual_revision`, `actual_epoch`,
 *   `message_state`, `applied` (the actor row was updated) and `marked` (the message was marked)
 */
export function stepStatement(tables: Tables, round: ReadonlyArray<Owned<StepCommit>>, dialect: "postgres" | "cockroach"): SqlStatement {
  // Measured on PostgreSQL 15: JSON rows make a small round ~5 % faster (one parse instead of one
  // array literal and one unnest per column) and a large one ~3 % slower (every row repeats the keys).
  // A one-commit round's one-row sources go as VALUES; its sources of more rows (messages, say) as
  // a small round's do.
  const many = dialect === "postgres" && round.length <= jsonRowsMax ? "json" : "arrays";
  const p = new SqlParams(round.length <= valuesRowsMax ? "values" : many, many);
  const c = round.map((item) => item.row);
  const outcome = c.map((commit) => commit.effectOutcome);
  const source = p.unnest("u", [
    ["idx", "int8", round.map((item) => item.idx)],
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
    ["agent_version", "int8", c.map((x) => x.actor.agentVersion ?? null)],
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
    ["o_audit", "text", outcome.map((o) => jsonParam(o?.audit))],
  ]);
  const same = (a: string, b: string) => `${a}.tenant_id = ${b}.tenant_id AND ${a}.actor_id = ${b}.actor_id`;
  const ctes = [
    `cur AS (SELECT u.*, a.revision AS actual_revision, a.epoch AS actual_epoch,
      CASE WHEN u.message_id IS NULL THEN 'none' ELSE coalesce((SELECT CASE WHEN m.applied_seq IS NULL THEN 'pending' ELSE 'applied' END
        FROM ${tables.mailbox} m WHERE ${same("m", "u")} AND m.message_id = u.message_id), 'missing') END AS message_state
      FROM ${source} LEFT JOIN ${tables.actors} a ON ${same("a", "u")})`,
    `ok AS (SELECT * FROM cur WHERE actual_revision = expected AND actual_epoch = epoch AND message_state IN ('none', 'pending'))`,
    // `acc` is the actor update itself, returning the columns of its commits that the other
    // parts need: joining a data-modifying CTE instead would be planned as a nested loop (its
    // rows cannot be estimated), quadratic in the batch size.
    `acc AS (UPDATE ${tables.actors} a SET revision = ok.seq, status = ok.status, output = ok.output::jsonb, error = ok.error::jsonb,
        child_count = ok.child_count, updated_at = ok.updated_at, last_hash = ok.last_hash,
        agent_version = coalesce(ok.agent_version, a.agent_version),
        snapshot = CASE WHEN ok.has_snapshot THEN ok.snapshot::jsonb ELSE a.snapshot END,
        snapshot_seq = CASE WHEN ok.has_snapshot THEN ok.seq ELSE a.snapshot_seq END
      FROM ok WHERE ${same("a", "ok")} AND a.revision = ok.expected AND a.epoch = ok.epoch
      RETURNING ${accColumns.map((column) => `ok.${column}`).join(", ")})`,
  ];
  // Parts that no commit of the round needs are left out: each costs executor work even on no rows.
  const marks = c.some((x) => x.appliedMessageId !== undefined);
  if (marks) {
    ctes.push(`marked AS (UPDATE ${tables.mailbox} m SET applied_seq = acc.seq
      FROM acc WHERE ${same("m", "acc")} AND m.message_id = acc.message_id AND m.applied_seq IS NULL
      RETURNING acc.idx)`);
  }
  if (c.some((x) => x.effectOutcome !== undefined)) ctes.push(outcomesCte(tables));
  if (c.some((x) => x.finalize)) ctes.push(cancelledCte(tables));
  const cleared = clearedTimersCte(p, tables, round);
  if (cleared !== undefined) ctes.push(cleared);
  ctes.push(...writeCtes(p, tables, round));
  const text = `WITH ${ctes.join(",\n")}
    SELECT cur.idx, cur.actual_revision, cur.actual_epoch, cur.message_state,
      cur.idx IN (SELECT idx FROM acc) AS applied, ${marks ? "cur.idx IN (SELECT idx FROM marked)" : "false"} AS marked
    FROM cur`;
  return { text, values: p.values };
}

/**
 * Records each accepted commit's effect outcome (its audit record too, when it has one). The
 * effect is found by its primary key: a filter on the actor alone would read every effect the
 * actor ever had, on every step.
 */
function outcomesCte(tables: Tables): string {
  return `outcomes AS (UPDATE ${tables.effects} e SET state = acc.o_state, result = acc.o_result::jsonb, result_ref = acc.o_result_ref,
      error = acc.o_error::jsonb, usage = acc.o_usage::jsonb, attempts = acc.o_attempts, completed_seq = acc.seq,
      audit = coalesce(acc.o_audit::jsonb, e.audit), updated_at = acc.updated_at
    FROM acc WHERE e.tenant_id = acc.tenant_id AND e.actor_id = acc.actor_id AND e.effect_id = acc.o_effect_id
    RETURNING 1)`;
}

/**
 * Cancels the open effects of each accepted commit that finalizes its actor, except the one whose
 * outcome the commit records: the two CTEs never touch the same row.
 */
function cancelledCte(tables: Tables): string {
  const open = openEffectStates.map((state) => `'${state}'`).join(", ");
  return `cancelled AS (UPDATE ${tables.effects} e SET state = 'cancelled', updated_at = acc.updated_at
    FROM acc WHERE acc.finalize AND e.tenant_id = acc.tenant_id AND e.actor_id = acc.actor_id AND e.state IN (${open})
      AND e.effect_id IS DISTINCT FROM acc.o_effect_id
    RETURNING 1)`;
}

/**
 * Deletes the timers the accepted commits clear. A timer that the same step sets again is left
 * to the upsert instead, so that no statement touches its row twice; a finalizing step clears
 * every timer of its actor (a row without a timer id).
 */
function clearedTimersCte(p: SqlParams, tables: Tables, round: ReadonlyArray<Owned<StepCommit>>): string | undefined {
  const rows = round.flatMap(({ idx, row: commit }): Array<{ idx: number; tenantId: string; actorId: string; timerId: string | null }> => {
    if (commit.finalize) return [{ idx, tenantId: commit.tenantId, actorId: commit.actorId, timerId: null }];
    const reset = new Set(commit.timersSet.map((timer) => timer.timerId));
    return [...new Set(commit.timersCleared)]
      .filter((timerId) => !reset.has(timerId))
      .map((timerId) => ({ idx, tenantId: commit.tenantId, actorId: commit.actorId, timerId }));
  });
  if (rows.length === 0) return undefined;
  const timers = p.unnest("tc", [
    ["idx", "int8", rows.map((r) => r.idx)],
    ["tenant_id", "text", rows.map((r) => r.tenantId)],
    ["actor_id", "text", rows.map((r) => r.actorId)],
    ["timer_id", "text", rows.map((r) => r.timerId)],
  ]);
  return `cleared AS (DELETE FROM ${tables.timers} t USING ${timers}, acc
    WHERE acc.idx = tc.idx AND t.tenant_id = tc.tenant_id AND t.actor_id = tc.actor_id AND (tc.timer_id IS NULL OR t.timer_id = tc.timer_id)
    RETURNING 1)`;
}
