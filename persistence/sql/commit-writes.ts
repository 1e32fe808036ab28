import type { EffectState, NewMessage, StepCommit, StoredChain } from "../../core/ports/store.js";
import { effectColumns, journalColumns, jsonParam } from "./rows.js";
import type { SqlParams } from "./sql-params.js";
import type { Tables } from "./tables.js";

/** The effect states that finalizing a step cancels. */
export const openEffectStates: readonly EffectState[] = ["planned", "running", "awaiting-approval"];

/** A row to write and the position, in its batch, of the commit it belongs to. */
export interface Owned<T> {
  /** The commit's index in the batch; 0 outside a batch. */
  idx: number;
  row: T;
}

/** A delegation chain to store, with its tenant and the time of the write that carried it. */
export interface ChainRow extends StoredChain {
  tenantId: string;
  createdAt: number;
}

/**
 * Common table expressions that append messages to mailboxes, in order: each recipient's
 * `mailbox_heads.next_ord` is advanced by the number of its messages in one upsert, and the
 * messages take the numbers from the head as the statement's snapshot saw it. Under SERIALIZABLE
 * that is the value the upsert advances: a concurrent advance fails one of the two transactions
 * with 40001. (`mm` reads the table, not `mh`'s output: the planner cannot estimate a
 * data-modifying CTE's rows and joins it by a nested loop, quadratic in the batch size.) A message
 * id already present is skipped, and so is a second message with the same key (the first one
 * wins). The last CTE, `mm`, returns the ids inserted.
 *
 * @internal
 * @param p - the statement's parameters
 * @param tables - the table names
 * @param messages - messages in the order they must be delivered, each with its commit's index
 * @param accepted - a condition on `mi0.idx` that keeps the messages of accepted commits only;
 *   `undefined` keeps all
 * @returns CTE definitions to put after `WITH`
 */
export function mailboxInsertCtes(p: SqlParams, tables: Tables, messages: ReadonlyArray<Owned<NewMessage>>, accepted?: string): string[] {
  const source = p.unnest("mi0", [
    ["n", "int8", messages.map((_, n) => n)],
    ["idx", "int8", messages.map((m) => m.idx)],
    ["tenant_id", "text", messages.map((m) => m.row.tenantId)],
    ["actor_id", "text", messages.map((m) => m.row.actorId)],
    ["message_id", "text", messages.map((m) => m.row.messageId)],
    ["event", "text", messages.map((m) => jsonParam(m.row.event))],
    ["sender", "text", messages.map((m) => m.row.sender)],
    ["created_at", "int8", messages.map((m) => m.row.createdAt)],
    ["chain_ref", "text", messages.map((m) => m.row.chainRef ?? null)],
  ]);
  const sameActor = (a: string, b: string) => `${a}.tenant_id = ${b}.tenant_id AND ${a}.actor_id = ${b}.actor_id`;
  return [
    // Keys are deduplicated here rather than by the caller, because which of two senders of one
    // key is accepted is known only inside the statement.
    `mi1 AS (SELECT DISTINCT ON (tenant_id, actor_id, message_id) * FROM ${source}
      ${accepted === undefined ? "" : `WHERE ${accepted}`} ORDER BY tenant_id, actor_id, message_id, n)`,
    `mi AS (SELECT mi1.*, row_number() OVER (PARTITION BY tenant_id, actor_id ORDER BY n) AS pos FROM mi1)`,
    `mc AS (SELECT tenant_id, actor_id, max(pos) AS n FROM mi GROUP BY tenant_id, actor_id)`,
    `mh AS (INSERT INTO ${tables.mailboxHeads} AS h (tenant_id, actor_id, next_ord)
      SELECT tenant_id, actor_id, n + 1 FROM mc
      ON CONFLICT (tenant_id, actor_id) DO UPDATE SET next_ord = h.next_ord + excluded.next_ord - 1
      RETURNING 1)`,
    `mm AS (INSERT INTO ${tables.mailbox} (tenant_id, actor_id, message_id, ord, event, sender, created_at, applied_seq, chain_ref)
      SELECT mi.tenant_id, mi.actor_id, mi.message_id, coalesce(h0.next_ord, 1) + mi.pos - 1, mi.event::jsonb, mi.sender, mi.created_at,
        NULL, mi.chain_ref
      FROM mi LEFT JOIN ${tables.mailboxHeads} h0 ON ${sameActor("h0", "mi")}
      ON CONFLICT (tenant_id, actor_id, message_id) DO NOTHING
      RETURNING message_id)`,
  ];
}

/**
 * The CTE `fch` that stores delegation chains not stored yet: per tenant and chain ref the first
 * one wins, and one already stored is kept as it is.
 *
 * @internal
 * @param p - the statement's parameters
 * @param tables - the table names
 * @param chains - the chains, each with its commit's index
 * @param accepted - a condition on `ch.idx` that keeps the chains of writes that happened
 * @returns the CTE definition
 */
export function chainsInsertCte(p: SqlParams, tables: Tables, chains: ReadonlyArray<Owned<ChainRow>>, accepted: string): string {
  const source = p.unnest("ch", [
    ["n", "int8", chains.map((_, n) => n)],
    ["idx", "int8", chains.map((c) => c.idx)],
    ["tenant_id", "text", chains.map((c) => c.row.tenantId)],
    ["chain_ref", "text", chains.map((c) => c.row.chainRef)],
    ["tokens", "text", chains.map((c) => JSON.stringify(c.row.tokens))],
    ["created_at", "int8", chains.map((c) => c.row.createdAt)],
  ]);
  return `fch AS (INSERT INTO ${tables.chains} (tenant_id, chain_ref, tokens, created_at)
    SELECT DISTINCT ON (tenant_id, chain_ref) tenant_id, chain_ref, tokens::jsonb, created_at FROM ${source}
    WHERE ${accepted} ORDER BY tenant_id, chain_ref, n
    ON CONFLICT (tenant_id, chain_ref) DO NOTHING RETURNING 1)`;
}

/**
 * `INSERT INTO actors` of new actors from a row source with the columns of {@link NewActor};
 * every new actor starts active at revision 0.
 *
 * @internal
 */
export function insertActorsSql(tables: Tables, source: string, where = ""): string {
  return `INSERT INTO ${tables.actors} (tenant_id, actor_id, agent_type, agent_version, parent_id, root_id, name, depth, input, epoch,
      owner_node, status, revision, snapshot, snapshot_seq, last_hash, output, error, child_count, created_at, updated_at, chain_ref)
    SELECT tenant_id, actor_id, agent_type, agent_version, parent_id, root_id, name, depth, input::jsonb, epoch,
      owner_node, 'active', 0, NULL, 0, '', NULL, NULL, 0, created_at, created_at, chain_ref
    FROM ${source} ${where}`;
}

/**
 * The CTEs that write the rows of the commits of one round that pass their guard: journal
 * entries, new effects (cancelled at once when their step finalizes), children, blobs, mailbox
 * messages, armed timers and delegation chains, each kind as one multi-row `INSERT … SELECT FROM
 * unnest(…)` that keeps only the rows of commits whose index `acc` returns. A refused commit thus
 * writes nothing, decided inside the statement.
 *
 * @internal
 * @param p - the statement's parameters
 * @param tables - the table names
 * @param items - the round's commits with their indexes, at most one per actor
 * @returns CTE definitions to put after the guard's
 */
export function writeCtes(p: SqlParams, tables: Tables, items: ReadonlyArray<Owned<StepCommit>>): string[] {
  const accepted = (alias: string) => `${alias}.idx IN (SELECT idx FROM acc)`;
  const ctes = [journalCte(p, tables, items, accepted("u"))];
  const effects = effectRows(items);
  if (effects.length > 0) ctes.push(effectsInsertCte(p, tables, effects, accepted("u")));
  const children = items.flatMap(({ idx, row }) => row.children.map((child) => ({ idx, child })));
  if (children.length > 0) {
    const source = p.unnest("u", [
      ["idx", "int8", children.map((c) => c.idx)],
      ["tenant_id", "text", children.map((c) => c.child.tenantId)],
      ["actor_id", "text", children.map((c) => c.child.actorId)],
      ["agent_type", "text", children.map((c) => c.child.agentType)],
      ["agent_version", "int8", children.map((c) => c.child.agentVersion)],
      ["parent_id", "text", children.map((c) => c.child.parentId ?? null)],
      ["root_id", "text", children.map((c) => c.child.rootId)],
      ["name", "text", children.map((c) => c.child.name ?? null)],
      ["depth", "int8", children.map((c) => c.child.depth)],
      ["input", "text", children.map((c) => jsonParam(c.child.input))],
      ["epoch", "int8", children.map((c) => c.child.epoch)],
      ["owner_node", "text", children.map((c) => c.child.ownerNode ?? null)],
      ["created_at", "int8", children.map((c) => c.child.createdAt)],
      ["chain_ref", "text", children.map((c) => c.child.chainRef ?? null)],
    ]);
    ctes.push(`fc AS (${insertActorsSql(tables, source, `WHERE ${accepted("u")}`)} RETURNING 1)`);
  }
  const blobs = items.flatMap(({ idx, row }) => row.blobs.map((blob) => ({ idx, tenantId: row.tenantId, ...blob })));
  if (blobs.length > 0) {
    const source = p.unnest("u", [
      ["n", "int8", blobs.map((_, n) => n)],
      ["idx", "int8", blobs.map((b) => b.idx)],
      ["tenant_id", "text", blobs.map((b) => b.tenantId)],
      ["blob_id", "text", blobs.map((b) => b.blobId)],
      ["data", "text", blobs.map((b) => b.data)],
    ]);
    ctes.push(`fb AS (INSERT INTO ${tables.blobs} (tenant_id, blob_id, data)
      SELECT DISTINCT ON (tenant_id, blob_id) tenant_id, blob_id, data FROM ${source} WHERE ${accepted("u")} ORDER BY tenant_id, blob_id, n
      ON CONFLICT (tenant_id, blob_id) DO NOTHING RETURNING 1)`);
  }
  const messages = items.flatMap(({ idx, row }) => row.messages.map((message) => ({ idx, row: message })));
  if (messages.length > 0) ctes.push(...mailboxInsertCtes(p, tables, messages, accepted("mi0")));
  const timerCte = timersSetCte(p, tables, items, accepted("u"));
  if (timerCte !== undefined) ctes.push(timerCte);
  const chains = items.flatMap(({ idx, row }) =>
    (row.chains ?? []).map((chain) => ({ idx, row: { ...chain, tenantId: row.tenantId, createdAt: row.entry.createdAt } })),
  );
  if (chains.length > 0) ctes.push(chainsInsertCte(p, tables, chains, accepted("ch")));
  return ctes;
}

/** The new effects of the commits, with their ordinal in their step; those of a finalizing step are cancelled at once. */
function effectRows(items: ReadonlyArray<Owned<StepCommit>>) {
  return items.flatMap(({ idx, row: commit }) =>
    commit.effects.map((effect, ordinal) => {
      const cancelled = commit.finalize && openEffectStates.includes(effect.state);
      return {
        ...effect,
        idx,
        ordinal,
        state: cancelled ? "cancelled" : effect.state,
        updatedAt: cancelled ? commit.actor.updatedAt : effect.updatedAt,
      };
    }),
  );
}

function effectsInsertCte(p: SqlParams, tables: Tables, effects: ReturnType<typeof effectRows>, accepted: string): string {
  const source = p.unnest("u", [
    ["idx", "int8", effects.map((e) => e.idx)],
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
    ["chain_ref", "text", effects.map((e) => e.chainRef ?? null)],
    ["audit", "text", effects.map((e) => jsonParam(e.audit))],
  ]);
  return `fe AS (INSERT INTO ${tables.effects} (${effectColumns}, ordinal)
    SELECT tenant_id, actor_id, effect_id, kind, name, args::jsonb, idempotency_key, idempotent, state, attempts, next_attempt_at,
      result::jsonb, result_ref, error::jsonb, usage::jsonb, created_seq, completed_seq, created_at, updated_at, chain_ref, audit::jsonb, ordinal
    FROM ${source} WHERE ${accepted} RETURNING 1)`;
}

function journalCte(p: SqlParams, tables: Tables, items: ReadonlyArray<Owned<StepCommit>>, accepted: string): string {
  const entries = items.map(({ row }) => row.entry);
  const source = p.unnest("u", [
    ["idx", "int8", items.map(({ idx }) => idx)],
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
    ["chain_ref", "text", entries.map((e) => e.chainRef ?? null)],
  ]);
  return `fj AS (INSERT INTO ${tables.journal} (${journalColumns})
    SELECT tenant_id, actor_id, seq, kind, event::jsonb, event_ref, message_id, planned::jsonb, state_value::jsonb, status,
      state_hash, hash, prev_hash, epoch, node_id, created_at, chain_ref
    FROM ${source} WHERE ${accepted} RETURNING 1)`;
}

/**
 * Upserts armed timers. A finalizing step keeps none, so its timers are skipped. Within one step
 * the last setting of a timer id wins: `ON CONFLICT` cannot touch a row twice.
 */
function timersSetCte(p: SqlParams, tables: Tables, items: ReadonlyArray<Owned<StepCommit>>, accepted: string): string | undefined {
  const timers = items.flatMap(({ idx, row: commit }) => {
    if (commit.finalize) return [];
    return [...new Map(commit.timersSet.map((timer) => [timer.timerId, timer])).values()].map((timer) => ({ idx, ...timer }));
  });
  if (timers.length === 0) return undefined;
  const source = p.unnest("u", [
    ["idx", "int8", timers.map((t) => t.idx)],
    ["tenant_id", "text", timers.map((t) => t.tenantId)],
    ["actor_id", "text", timers.map((t) => t.actorId)],
    ["timer_id", "text", timers.map((t) => t.timerId)],
    ["name", "text", timers.map((t) => t.name)],
    ["due_at", "int8", timers.map((t) => t.dueAt)],
    ["created_seq", "int8", timers.map((t) => t.createdSeq)],
    ["chain_ref", "text", timers.map((t) => t.chainRef ?? null)],
  ]);
  return `ft AS (INSERT INTO ${tables.timers} (tenant_id, actor_id, timer_id, name, due_at, created_seq, chain_ref)
    SELECT tenant_id, actor_id, timer_id, name, due_at, created_seq, chain_ref FROM ${source} WHERE ${accepted}
    ON CONFLICT (tenant_id, actor_id, timer_id) DO UPDATE SET name = excluded.name, due_at = excluded.due_at,
      created_seq = excluded.created_seq, chain_ref = excluded.chain_ref
    RETURNING 1)`;
}

/**
 * A chain row for each of `chains`, under one tenant and time.
 *
 * @internal
 */
export function chainRows(tenantId: string, createdAt: number, chains: readonly StoredChain[] | undefined): Array<Owned<ChainRow>> {
  return (chains ?? []).map((chain) => ({ idx: 0, row: { chainRef: chain.chainRef, tokens: chain.tokens, tenantId, createdAt } }));
}
