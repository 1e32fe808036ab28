import type { EffectState, NewMessage, StepCommit } from "../../core/ports/store.js";
import { effectColumns, journalColumns, jsonParam } from "./rows.js";
import { SqlParams } from "./sql-params.js";
import type { Tables } from "./tables.js";

/** The effect states that finalizing a step cancels. */
export const openEffectStates: readonly EffectState[] = ["planned", "running", "awaiting-approval"];

/**
 * Common table expressions that append messages to mailboxes, in order: each recipient's
 * `mailbox_heads.next_ord` is advanced by the number of its messages in one upsert, and the
 * messages take the numbers below it. A message id already present is skipped. The last CTE,
 * `mm`, returns the ids inserted.
 *
 * @internal
 * @param p - the statement's parameters
 * @param tables - the table names
 * @param messages - messages, each key at most once, in the order they must be delivered
 * @returns CTE definitions to put after `WITH`
 */
export function mailboxInsertCtes(p: SqlParams, tables: Tables, messages: readonly NewMessage[]): string[] {
  const positions = new Map<string, number>();
  const pos = messages.map((message) => {
    const key = JSON.stringify([message.tenantId, message.actorId]);
    const next = (positions.get(key) ?? 0) + 1;
    positions.set(key, next);
    return next;
  });
  const source = p.unnest("mi", [
    ["tenant_id", "text", messages.map((m) => m.tenantId)],
    ["actor_id", "text", messages.map((m) => m.actorId)],
    ["message_id", "text", messages.map((m) => m.messageId)],
    ["event", "text", messages.map((m) => jsonParam(m.event))],
    ["sender", "text", messages.map((m) => m.sender)],
    ["created_at", "int8", messages.map((m) => m.createdAt)],
    ["pos", "int8", pos],
  ]);
  const sameActor = (a: string, b: string) => `${a}.tenant_id = ${b}.tenant_id AND ${a}.actor_id = ${b}.actor_id`;
  return [
    `mi AS (SELECT * FROM ${source})`,
    `mc AS (SELECT tenant_id, actor_id, max(pos) AS n FROM mi GROUP BY tenant_id, actor_id)`,
    `mh AS (INSERT INTO ${tables.mailboxHeads} AS h (tenant_id, actor_id, next_ord)
      SELECT tenant_id, actor_id, n + 1 FROM mc
      ON CONFLICT (tenant_id, actor_id) DO UPDATE SET next_ord = h.next_ord + excluded.next_ord - 1
      RETURNING h.tenant_id, h.actor_id, h.next_ord)`,
    `mm AS (INSERT INTO ${tables.mailbox} (tenant_id, actor_id, message_id, ord, event, sender, created_at, applied_seq)
      SELECT mi.tenant_id, mi.actor_id, mi.message_id, mh.next_ord - mc.n + mi.pos - 1, mi.event::jsonb, mi.sender, mi.created_at, NULL
      FROM mi JOIN mc ON ${sameActor("mc", "mi")} JOIN mh ON ${sameActor("mh", "mi")}
      ON CONFLICT (tenant_id, actor_id, message_id) DO NOTHING
      RETURNING message_id)`,
  ];
}

/** Keeps the first of each key, in order. */
function uniqueBy<T>(items: readonly T[], keyOf: (item: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const key = keyOf(item);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * The one statement that writes the rows of accepted commits: journal entries, new effects
 * (cancelled at once when their step finalizes), children, blobs, mailbox messages and armed
 * timers, each kind as one multi-row `INSERT … SELECT FROM unnest(…)`.
 *
 * @internal
 * @param tables - the table names
 * @param commits - commits whose guard passed, at most one per actor
 * @returns the statement text and its values
 */
export function insertRowsStatement(tables: Tables, commits: readonly StepCommit[]): { text: string; values: unknown[] } {
  const p = new SqlParams();
  const ctes = [journalCte(p, tables, commits)];
  const effects = commits.flatMap((commit) =>
    commit.effects.map((effect, ordinal) => {
      const cancelled = commit.finalize && openEffectStates.includes(effect.state);
      return {
        ...effect,
        ordinal,
        state: cancelled ? "cancelled" : effect.state,
        updatedAt: cancelled ? commit.actor.updatedAt : effect.updatedAt,
      };
    }),
  );
  if (effects.length > 0) {
    const source = p.unnest("u", [
      ["tenant_id", "text", effects.map((e) => e.tenantId)],
      ["actor_id", "text", effects.map((e) => e.actorId)],
      ["effect_id", "text", effects.map((e) => e.effectId)],
      ["ordinal", "int8", effects.map((e) => e.ordinal)],
      ["kind", "text", effects.map((e) => e.kind)],
      ["name", "text", effects.map((e) => e.name)],
      ["args", "text", effects.map((e) => jsonParam(e.args))],
      ["idempotency_key", "text", effects.map((e) => e.idempotencyKey)],
      ["idempotent", "bool", effects.map((e) => e.idempotent)],
      ["state", "text", effects.map((e) => e.state)],
      ["attempts", "int8", effects.map((e) => e.attempts)],
      ["next_attempt_at", "int8", effects.map((e) => e.nextAttemptAt ?? null)],
      ["result", "text", effects.map((e) => jsonParam(e.result))],
      ["result_ref", "text", effects.map((e) => e.resultRef ?? null)],
      ["error", "text", effects.map((e) => jsonParam(e.error))],
      ["usage", "text", effects.map((e) => jsonParam(e.usage))],
      ["created_seq", "int8", effects.map((e) => e.createdSeq)],
      ["completed_seq", "int8", effects.map((e) => e.completedSeq ?? null)],
      ["created_at", "int8", effects.map((e) => e.createdAt)],
      ["updated_at", "int8", effects.map((e) => e.updatedAt)],
    ]);
    ctes.push(`fe AS (INSERT INTO ${tables.effects} (${effectColumns}, ordinal)
      SELECT tenant_id, actor_id, effect_id, kind, name, args::jsonb, idempotency_key, idempotent, state, attempts, next_attempt_at,
        result::jsonb, result_ref, error::jsonb, usage::jsonb, created_seq, completed_seq, created_at, updated_at, ordinal
      FROM ${source} RETURNING 1)`);
  }
  const children = commits.flatMap((commit) => commit.children);
  if (children.length > 0) {
    const source = p.unnest("u", [
      ["tenant_id", "text", children.map((c) => c.tenantId)],
      ["actor_id", "text", children.map((c) => c.actorId)],
      ["agent_type", "text", children.map((c) => c.agentType)],
      ["agent_version", "int8", children.map((c) => c.agentVersion)],
      ["parent_id", "text", children.map((c) => c.parentId ?? null)],
      ["root_id", "text", children.map((c) => c.rootId)],
      ["name", "text", children.map((c) => c.name ?? null)],
      ["depth", "int8", children.map((c) => c.depth)],
      ["input", "text", children.map((c) => jsonParam(c.input))],
      ["epoch", "int8", children.map((c) => c.epoch)],
      ["owner_node", "text", children.map((c) => c.ownerNode ?? null)],
      ["created_at", "int8", children.map((c) => c.createdAt)],
    ]);
    ctes.push(`fc AS (${insertActorsSql(tables, source)} RETURNING 1)`);
  }
  const blobs = uniqueBy(
    commits.flatMap((commit) => commit.blobs.map((blob) => ({ tenantId: commit.tenantId, ...blob }))),
    (blob) => JSON.stringify([blob.tenantId, blob.blobId]),
  );
  if (blobs.length > 0) {
    const source = p.unnest("u", [
      ["tenant_id", "text", blobs.map((b) => b.tenantId)],
      ["blob_id", "text", blobs.map((b) => b.blobId)],
      ["data", "text", blobs.map((b) => b.data)],
    ]);
    ctes.push(`fb AS (INSERT INTO ${tables.blobs} (tenant_id, blob_id, data) SELECT tenant_id, blob_id, data FROM ${source}
      ON CONFLICT (tenant_id, blob_id) DO NOTHING RETURNING 1)`);
  }
  const messages = uniqueBy(
    commits.flatMap((commit) => commit.messages),
    (m) => JSON.stringify([m.tenantId, m.actorId, m.messageId]),
  );
  if (messages.length > 0) ctes.push(...mailboxInsertCtes(p, tables, messages));
  const timerCte = timersSetCte(p, tables, commits);
  if (timerCte !== undefined) ctes.push(timerCte);
  return { text: `WITH ${ctes.join(",\n")}\nSELECT 1`, values: p.values };
}

/**
 * `INSERT INTO actors` of new actors from a row source with the columns of {@link NewActor};
 * every new actor starts active at revision 0.
 *
 * @internal
 */
export function insertActorsSql(tables: Tables, source: string): string {
  return `INSERT INTO ${tables.actors} (tenant_id, actor_id, agent_type, agent_version, parent_id, root_id, name, depth, input, epoch,
      owner_node, status, revision, snapshot, snapshot_seq, last_hash, output, error, child_count, created_at, updated_at)
    SELECT tenant_id, actor_id, agent_type, agent_version, parent_id, root_id, name, depth, input::jsonb, epoch,
      owner_node, 'active', 0, NULL, 0, '', NULL, NULL, 0, created_at, created_at
    FROM ${source}`;
}

function journalCte(p: SqlParams, tables: Tables, commits: readonly StepCommit[]): string {
  const entries = commits.map((commit) => commit.entry);
  const source = p.unnest("u", [
    ["tenant_id", "text", entries.map((e) => e.tenantId)],
    ["actor_id", "text", entries.map((e) => e.actorId)],
    ["seq", "int8", entries.map((e) => e.seq)],
    ["kind", "text", entries.map((e) => e.kind)],
    ["event", "text", entries.map((e) => jsonParam(e.event))],
    ["event_ref", "text", entries.map((e) => e.eventRef ?? null)],
    ["message_id", "text", entries.map((e) => e.messageId ?? null)],
    ["planned", "text", entries.map((e) => jsonParam(e.planned))],
    ["state_value", "text", entries.map((e) => jsonParam(e.stateValue))],
    ["status", "text", entries.map((e) => e.status)],
    ["state_hash", "text", entries.map((e) => e.stateHash)],
    ["hash", "text", entries.map((e) => e.hash)],
    ["prev_hash", "text", entries.map((e) => e.prevHash)],
    ["epoch", "int8", entries.map((e) => e.epoch)],
    ["node_id", "text", entries.map((e) => e.nodeId)],
    ["created_at", "int8", entries.map((e) => e.createdAt)],
  ]);
  return `fj AS (INSERT INTO ${tables.journal} (${journalColumns})
    SELECT tenant_id, actor_id, seq, kind, event::jsonb, event_ref, message_id, planned::jsonb, state_value::jsonb, status,
      state_hash, hash, prev_hash, epoch, node_id, created_at
    FROM ${source} RETURNING 1)`;
}

/** Upserts armed timers. A finalizing step keeps none, so its timers are skipped. */
function timersSetCte(p: SqlParams, tables: Tables, commits: readonly StepCommit[]): string | undefined {
  const timers = commits.flatMap((commit) => {
    if (commit.finalize) return [];
    // Within one step the last setting of a timer id wins; ON CONFLICT cannot touch a row twice.
    return [...new Map(commit.timersSet.map((timer) => [timer.timerId, timer])).values()];
  });
  if (timers.length === 0) return undefined;
  const source = p.unnest("u", [
    ["tenant_id", "text", timers.map((t) => t.tenantId)],
    ["actor_id", "text", timers.map((t) => t.actorId)],
    ["timer_id", "text", timers.map((t) => t.timerId)],
    ["name", "text", timers.map((t) => t.name)],
    ["due_at", "int8", timers.map((t) => t.dueAt)],
    ["created_seq", "int8", timers.map((t) => t.createdSeq)],
  ]);
  return `ft AS (INSERT INTO ${tables.timers} (tenant_id, actor_id, timer_id, name, due_at, created_seq)
    SELECT tenant_id, actor_id, timer_id, name, due_at, created_seq FROM ${source}
    ON CONFLICT (tenant_id, actor_id, timer_id) DO UPDATE SET name = excluded.name, due_at = excluded.due_at, created_seq = excluded.created_seq
    RETURNING 1)`;
}
