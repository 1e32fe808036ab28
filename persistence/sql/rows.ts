import { assert } from "../../core/assert.js";
import type { SerializedError } from "../../core/errors.js";
import type { Json } from "../../core/json.js";
import type {
  ActorRecord,
  ActorStatus,
  EffectRecord,
  EffectState,
  JournalEntry,
  JournalKind,
  MessageRecord,
  PlannedItems,
  TimerRecord,
} from "../../core/ports/store.js";
import type { Row } from "./transaction.js";

/**
 * Makes the SELECT list of a table: JSON columns are read as text (`::text`) and parsed here, so
 * that a JSON `null` stays apart from SQL `NULL` (which stands for `undefined`) whatever type
 * parsers the pool has. Per-query type parsers are not an option: the PGlite adapter takes a
 * query's `types` for the parameter types of its Parse message.
 */
function selectFor(columns: string, jsonColumns: readonly string[]): (alias?: string) => string {
  const names = columns.split(",").map((name) => name.trim());
  return (alias) =>
    names
      .map((name) => {
        const qualified = alias === undefined ? name : `${alias}.${name}`;
        return jsonColumns.includes(name) ? `${qualified}::text AS ${name}` : qualified;
      })
      .join(", ");
}

/**
 * A bigint column (milliseconds, seq, epoch, count) as a number. The driver returns int8 as a
 * string unless the pool parses it; both are accepted.
 *
 * @internal
 */
export function int8(value: unknown, column: string): number {
  assert(typeof value === "string" || typeof value === "number", `column ${column} holds a number`);
  const parsed = Number(value);
  assert(Number.isSafeInteger(parsed), `column ${column} holds ${String(value)}, not a safe integer`);
  return parsed;
}

/** JSON text for a jsonb parameter (cast `::jsonb` in SQL); `undefined` becomes SQL `NULL`. */
export function jsonParam(value: unknown): string | null {
  return value === undefined ? null : JSON.stringify(value);
}

/** A nullable JSON column read as text: SQL `NULL` is `undefined`, JSON `null` is `null`. */
export function optionalJson<T = Json>(row: Row, column: string): T | undefined {
  const value = row[column];
  if (value === null || value === undefined) return undefined;
  assert(typeof value === "string", `column ${column} is read as text`);
  return JSON.parse(value) as T;
}

function requiredJson<T = Json>(row: Row, column: string): T {
  assert(row[column] !== null && row[column] !== undefined, `column ${column} is NOT NULL`);
  return optionalJson<T>(row, column) as T;
}

function text(row: Row, column: string): string {
  const value = row[column];
  assert(typeof value === "string", `column ${column} holds a string`);
  return value;
}

function optionalText(row: Row, column: string): string | undefined {
  const value = row[column];
  return value === null || value === undefined ? undefined : text(row, column);
}

function num(row: Row, column: string): number {
  return int8(row[column], column);
}

function optionalNum(row: Row, column: string): number | undefined {
  const value = row[column];
  return value === null || value === undefined ? undefined : num(row, column);
}

/**
 * The optional `chainRef` of a record (`chain_ref`): absent, not `undefined`, when the column is
 * SQL `NULL`, so that a record written without one reads back equal to what was written.
 */
function chainRefOf(row: Row): { chainRef?: string } {
  const chainRef = optionalText(row, "chain_ref");
  return chainRef === undefined ? {} : { chainRef };
}

/** Columns of `actors`, in the order {@link actorFromRow} reads them. */
export const actorColumns =
  "tenant_id, actor_id, agent_type, agent_version, parent_id, root_id, name, depth, input, epoch, owner_node, status, " +
  "revision, snapshot, snapshot_seq, last_hash, output, error, child_count, created_at, updated_at, chain_ref";

/** The SELECT list of `actors`, optionally qualified with a table alias. */
export const actorSelect = selectFor(actorColumns, ["input", "snapshot", "output", "error"]);

/** Maps an `actors` row. */
export function actorFromRow(row: Row): ActorRecord {
  return {
    tenantId: text(row, "tenant_id"),
    actorId: text(row, "actor_id"),
    agentType: text(row, "agent_type"),
    agentVersion: num(row, "agent_version"),
    parentId: optionalText(row, "parent_id"),
    rootId: text(row, "root_id"),
    name: optionalText(row, "name"),
    depth: num(row, "depth"),
    input: requiredJson(row, "input"),
    epoch: num(row, "epoch"),
    ownerNode: optionalText(row, "owner_node"),
    createdAt: num(row, "created_at"),
    status: text(row, "status") as ActorStatus,
    revision: num(row, "revision"),
    snapshot: optionalJson(row, "snapshot"),
    snapshotSeq: num(row, "snapshot_seq"),
    lastHash: text(row, "last_hash"),
    output: optionalJson(row, "output"),
    error: optionalJson<SerializedError>(row, "error"),
    childCount: num(row, "child_count"),
    updatedAt: num(row, "updated_at"),
    ...chainRefOf(row),
  };
}

/** Columns of `journal`. */
export const journalColumns =
  "tenant_id, actor_id, seq, kind, event, event_ref, message_id, planned, state_value, status, state_hash, hash, prev_hash, epoch, node_id, " +
  "created_at, chain_ref";

/** The SELECT list of `journal`. */
export const journalSelect = selectFor(journalColumns, ["event", "planned", "state_value"]);

/** Maps a `journal` row. */
export function journalFromRow(row: Row): JournalEntry {
  return {
    tenantId: text(row, "tenant_id"),
    actorId: text(row, "actor_id"),
    seq: num(row, "seq"),
    kind: text(row, "kind") as JournalKind,
    event: requiredJson(row, "event"),
    eventRef: optionalText(row, "event_ref"),
    messageId: optionalText(row, "message_id"),
    planned: requiredJson<PlannedItems>(row, "planned"),
    stateValue: requiredJson(row, "state_value"),
    status: text(row, "status") as ActorStatus,
    stateHash: text(row, "state_hash"),
    hash: text(row, "hash"),
    prevHash: text(row, "prev_hash"),
    epoch: num(row, "epoch"),
    nodeId: text(row, "node_id"),
    createdAt: num(row, "created_at"),
    ...chainRefOf(row),
  };
}

/** Columns of `effects`. */
export const effectColumns =
  "tenant_id, actor_id, effect_id, kind, name, args, idempotency_key, idempotent, state, attempts, next_attempt_at, " +
  "result, result_ref, error, usage, created_seq, completed_seq, created_at, updated_at, chain_ref, audit";

/** The SELECT list of `effects`. */
export const effectSelect = selectFor(effectColumns, ["args", "result", "error", "usage", "audit"]);

/** Maps an `effects` row. */
export function effectFromRow(row: Row): EffectRecord {
  const idempotent = row.idempotent;
  assert(typeof idempotent === "boolean", "column idempotent holds a boolean");
  const audit = optionalJson(row, "audit");
  return {
    tenantId: text(row, "tenant_id"),
    actorId: text(row, "actor_id"),
    effectId: text(row, "effect_id"),
    kind: text(row, "kind") as EffectRecord["kind"],
    name: text(row, "name"),
    args: requiredJson(row, "args"),
    idempotencyKey: text(row, "idempotency_key"),
    idempotent,
    state: text(row, "state") as EffectState,
    attempts: num(row, "attempts"),
    nextAttemptAt: optionalNum(row, "next_attempt_at"),
    result: optionalJson(row, "result"),
    resultRef: optionalText(row, "result_ref"),
    error: optionalJson<SerializedError>(row, "error"),
    usage: optionalJson<EffectRecord["usage"]>(row, "usage"),
    createdSeq: num(row, "created_seq"),
    completedSeq: optionalNum(row, "completed_seq"),
    createdAt: num(row, "created_at"),
    updatedAt: num(row, "updated_at"),
    ...chainRefOf(row),
    ...(audit === undefined ? {} : { audit }),
  };
}

/** Columns of `mailbox`. */
export const messageColumns = "tenant_id, actor_id, message_id, event, sender, created_at, applied_seq, chain_ref";

/** The SELECT list of `mailbox`. */
export const messageSelect = selectFor(messageColumns, ["event"]);

/** Maps a `mailbox` row. */
export function messageFromRow(row: Row): MessageRecord {
  return {
    tenantId: text(row, "tenant_id"),
    actorId: text(row, "actor_id"),
    messageId: text(row, "message_id"),
    event: requiredJson(row, "event"),
    sender: text(row, "sender"),
    createdAt: num(row, "created_at"),
    appliedSeq: optionalNum(row, "applied_seq"),
    ...chainRefOf(row),
  };
}

/** Columns of `timers`. */
export const timerColumns = "tenant_id, actor_id, timer_id, name, due_at, created_seq, chain_ref";

/** Maps a `timers` row. */
export function timerFromRow(row: Row): TimerRecord {
  return {
    tenantId: text(row, "tenant_id"),
    actorId: text(row, "actor_id"),
    timerId: text(row, "timer_id"),
    name: text(row, "name"),
    dueAt: num(row, "due_at"),
    createdSeq: num(row, "created_seq"),
    ...chainRefOf(row),
  };
}

/**
 * Reads the `tokens` of a `chains` row (read as text): the compact JWS links, root first.
 *
 * @internal
 */
export function chainTokensFromRow(row: Row): string[] {
  const tokens = requiredJson<unknown>(row, "tokens");
  assert(Array.isArray(tokens), "column tokens holds a JSON array");
  for (const token of tokens) assert(typeof token === "string", "column tokens holds strings");
  return tokens as string[];
}
