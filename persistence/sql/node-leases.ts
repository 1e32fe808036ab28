import { assert } from "../../core/assert.js";
import type { Json } from "../../core/json.js";
import type { ClaimScope, NodeLease, NodeRecord, PendingWork } from "../../core/ports/store.js";
import { int8 } from "./rows.js";
import { SqlParams } from "./sql-params.js";
import type { Tables } from "./tables.js";
import type { Row, SqlExecutor } from "./transaction.js";

/**
 * The database's clock in milliseconds since the epoch. Every time that decides ownership comes
 * from here, never from a node (DESIGN.md §7); `now()` is the transaction's start, so every use in
 * one statement sees the same instant. Runs alike on PostgreSQL, PGlite and CockroachDB.
 */
const dbNowMs = "(extract(epoch FROM now()) * 1000)::bigint";

/** The longest node id accepted: the ceiling `idLengthMax` may be raised to. */
const nodeIdLengthMax = 1024;
/** The longest lease: a day, in milliseconds. */
const leaseTtlMsMax = 24 * 3600 * 1000;
/**
 * Distinct owners one orphan claim walks through (one index probe each). Owners are node lives
 * that still hold active actors, so a cluster has about as many as it has nodes; past this many an
 * orphan claim only sees the first ones, in id order.
 */
const claimOwnersScannedMax = 10_000;

/** A page cursor: the last actor key of the previous page. */
type ActorKey = { tenantId: string; actorId: string };
/** A claimed actor with its new epoch. */
type Claimed = ActorKey & { epoch: number };

/** @internal Refuses a node id that is not a non-empty string of at most {@link nodeIdLengthMax} characters. */
export function assertNodeId(nodeId: string, operation: string): void {
  assert(typeof nodeId === "string" && nodeId.length > 0, `${operation}: nodeId is a non-empty string`);
  assert(nodeId.length <= nodeIdLengthMax, `${operation}: nodeId has at most ${nodeIdLengthMax} characters`);
}

function assertLeaseTtl(leaseTtlMs: number, operation: string): void {
  assert(Number.isSafeInteger(leaseTtlMs) && leaseTtlMs > 0, `${operation}: leaseTtlMs is a positive integer`);
  assert(leaseTtlMs <= leaseTtlMsMax, `${operation}: leaseTtlMs is at most ${leaseTtlMsMax}`);
}

function assertLimit(limit: number, operation: string): void {
  assert(Number.isSafeInteger(limit) && limit >= 0, `${operation} limit is an integer >= 0`);
}

/** Code-point order, as the memory store sorts: node ids compare alike in every adapter. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The ids of the live nodes other than `self` as a JSON array, by the database clock. In a
 * statement that also writes `self`'s row this reads the rows as they were before it, so the
 * caller adds `self` when its write made it live.
 */
function otherLiveNodesSql(t: Tables, self: string): string {
  return `(SELECT coalesce(json_agg(json_build_array(n.node_id, n.state)), '[]') FROM ${t.nodes} n
    WHERE n.node_id <> ${self} AND n.state <> 'stopped' AND n.lease_expires_at > ${dbNowMs})::text`;
}

/** Builds a {@link NodeLease} from a row of `db_now`, `lease_expires_at` and `others`. */
function leaseFromRow(nodeId: string, row: Row): NodeLease {
  const pairs = JSON.parse(row.others as string) as Array<[string, string]>;
  assert(Array.isArray(pairs), "the live nodes are a JSON array");
  const others = pairs.map(([id]) => id);
  const draining = pairs.filter(([, state]) => state === "draining").map(([id]) => id);
  assert(!others.includes(nodeId), "the other live nodes exclude the node itself");
  const dbNow = int8(row.db_now, "db_now");
  const expiresAt = int8(row.lease_expires_at, "lease_expires_at");
  assert(expiresAt > dbNow, "a lease just granted has not expired");
  return { nodeId, dbNow, expiresAt, liveNodes: [...others, nodeId].sort(compareText), drainingNodes: draining.sort(compareText) };
}

/**
 * Registers a node: inserts or replaces its row (a new life of the id) with state `active` and a
 * lease of `leaseTtlMs` from the database clock. One statement, outside a SERIALIZABLE
 * transaction: it reads the whole (small) nodes table for the live list, and SERIALIZABLE would
 * make concurrent registrations and renewals of different nodes abort each other.
 *
 * @internal
 * @returns the lease and the live nodes, this one included
 * @throws InvariantError on a bad node id or TTL; StoreError when the database fails
 */
export async function registerNodeSql(
  executor: SqlExecutor,
  t: Tables,
  registration: { nodeId: string; leaseTtlMs: number; info: Json },
): Promise<NodeLease> {
  const { nodeId, leaseTtlMs, info } = registration;
  assertNodeId(nodeId, "registerNode");
  assertLeaseTtl(leaseTtlMs, "registerNode");
  const infoText = JSON.stringify(info);
  assert(typeof infoText === "string", "registerNode: info is JSON");
  const text = `WITH up AS (
      INSERT INTO ${t.nodes} (node_id, state, registered_at, heartbeat_at, lease_expires_at, info)
      VALUES ($1::text, 'active', ${dbNowMs}, ${dbNowMs}, ${dbNowMs} + $2::int8, $3::text::jsonb)
      ON CONFLICT (node_id) DO UPDATE SET state = excluded.state, registered_at = excluded.registered_at,
        heartbeat_at = excluded.heartbeat_at, lease_expires_at = excluded.lease_expires_at, info = excluded.info
      RETURNING lease_expires_at)
    SELECT ${dbNowMs} AS db_now, up.lease_expires_at, ${otherLiveNodesSql(t, "$1::text")} AS others FROM up`;
  const rows = await executor.single("registerNode", async (session) => (await session.query(text, [nodeId, leaseTtlMs, infoText])).rows);
  assert(rows.length === 1, "a registration writes one node row");
  return leaseFromRow(nodeId, rows[0]!);
}

/**
 * Renews a live node's lease in one statement: the update applies only while the node is live by
 * the database clock (not stopped, lease not yet expired), so a node whose lease ran out can never
 * extend it and must register again. Outside a SERIALIZABLE transaction, as {@link registerNodeSql}.
 *
 * @internal
 * @returns the new lease, or `undefined` when the node was not live (expired, stopped or unknown)
 */
export async function renewNodeSql(
  executor: SqlExecutor,
  t: Tables,
  nodeId: string,
  leaseTtlMs: number,
  life?: string,
): Promise<NodeLease | undefined> {
  assertNodeId(nodeId, "renewNode");
  assertLeaseTtl(leaseTtlMs, "renewNode");
  // With a life, only the registration that carries it renews: a process restarted under the same
  // id registered a new life, and the old process's renewals fail from then on.
  const text = `WITH renewed AS (
      UPDATE ${t.nodes} SET heartbeat_at = ${dbNowMs}, lease_expires_at = ${dbNowMs} + $2::int8
      WHERE node_id = $1::text AND state <> 'stopped' AND lease_expires_at > ${dbNowMs}
        AND ($3::text IS NULL OR info->>'life' = $3::text)
      RETURNING lease_expires_at)
    SELECT ${dbNowMs} AS db_now, renewed.lease_expires_at, ${otherLiveNodesSql(t, "$1::text")} AS others FROM renewed`;
  const rows = await executor.single("renewNode", async (session) => (await session.query(text, [nodeId, leaseTtlMs, life ?? null])).rows);
  assert(rows.length <= 1, "a renewal writes at most one node row");
  return rows[0] === undefined ? undefined : leaseFromRow(nodeId, rows[0]);
}

/**
 * Marks a node `draining` or `stopped`. `stopped` is final for the node's life: a stopped node is
 * never made `draining` (that would make it live again after its actors became orphans); only a
 * new registration revives the id. An unknown node id changes nothing.
 *
 * @internal
 */
export async function setNodeStateSql(executor: SqlExecutor, t: Tables, nodeId: string, state: "draining" | "stopped"): Promise<void> {
  assertNodeId(nodeId, "setNodeState");
  assert(state === "draining" || state === "stopped", "setNodeState: state is draining or stopped");
  const from = state === "draining" ? "state = 'active'" : "state <> 'stopped'";
  const text = `UPDATE ${t.nodes} SET state = $2::text WHERE node_id = $1::text AND ${from}`;
  await executor.single("setNodeState", (session) => session.query(text, [nodeId, state]));
}

/**
 * Every registered node, in node id order (code points), with liveness by the database clock and
 * the number of active actors it owns (counted through the owner index).
 *
 * @internal
 */
export async function listNodesSql(executor: SqlExecutor, t: Tables): Promise<NodeRecord[]> {
  const text = `SELECT n.node_id, n.state, n.registered_at, n.heartbeat_at, n.lease_expires_at, n.info::text AS info,
      (n.state <> 'stopped' AND n.lease_expires_at > ${dbNowMs}) AS live,
      (SELECT count(*) FROM ${t.actors} a WHERE a.status = 'active' AND a.owner_node = n.node_id) AS owned_actors
    FROM ${t.nodes} n`;
  const rows = await executor.single("listNodes", async (session) => (await session.query(text)).rows);
  const nodes = rows.map((row): NodeRecord => ({
    nodeId: row.node_id as string,
    state: row.state as NodeRecord["state"],
    live: row.live === true,
    registeredAt: int8(row.registered_at, "registered_at"),
    heartbeatAt: int8(row.heartbeat_at, "heartbeat_at"),
    leaseExpiresAt: int8(row.lease_expires_at, "lease_expires_at"),
    info: JSON.parse(row.info as string) as Json,
    ownedActors: int8(row.owned_actors, "owned_actors"),
  }));
  return nodes.sort((a, b) => compareText(a.nodeId, b.nodeId));
}

/**
 * Whether the actor row `a` has no live owner other than `self`: no owner, or an owner that is
 * stopped, expired or unregistered (by the database clock). The orphan claim's compare-and-set.
 */
function orphanedSql(t: Tables, self: string): string {
  return `(a.owner_node IS NULL OR (a.owner_node <> ${self} AND NOT EXISTS (SELECT 1 FROM ${t.nodes} n
    WHERE n.node_id = a.owner_node AND n.state <> 'stopped' AND n.lease_expires_at > ${dbNowMs})))`;
}

/**
 * The claim statement of one scope. `any` is the embedded store's take-over of every active actor.
 * `own` reads the node's actors through the owner index. `orphaned` first walks the distinct owners
 * of active actors through the owner index (a loose index scan: one probe per owner, however many
 * actors each owns), keeps the owners that are not live, reads at most `limit` actors of each (and
 * of no owner) through the owner index, then locks the first `limit` in key order with
 * `FOR UPDATE SKIP LOCKED` (an actor another node is claiming is skipped, not waited for) and
 * updates them only if they are still orphaned.
 */
function claimSql(t: Tables, p: SqlParams, nodeId: string, limit: number, after: ActorKey | undefined, only: ClaimScope): string {
  const owner = p.add(nodeId, "text");
  const afterKey = after === undefined ? undefined : [p.add(after.tenantId, "text"), p.add(after.actorId, "text")];
  const page = (alias: string): string =>
    afterKey === undefined ? "" : `AND (${alias}tenant_id, ${alias}actor_id) > (${afterKey[0]}, ${afterKey[1]})`;
  // The page size goes into the text as a literal, not a parameter: under generic plans (the pg
  // adapter's default) PostgreSQL guesses that `LIMIT $n` keeps a tenth of the rows, and would then
  // join the page to actors by a full scan instead of by key. Callers use a few fixed page sizes.
  assert(Number.isSafeInteger(limit) && limit > 0, "a claim page holds at least one actor");
  const n = only === "any" ? p.add(limit, "int8") : String(limit);
  const update = (where: string): string => `claimed AS (UPDATE ${t.actors} a SET epoch = a.epoch + 1, owner_node = ${owner}
      FROM c WHERE a.tenant_id = c.tenant_id AND a.actor_id = c.actor_id AND a.status = 'active' ${where}
      RETURNING a.tenant_id, a.actor_id, a.epoch)
    SELECT tenant_id, actor_id, epoch FROM claimed ORDER BY tenant_id, actor_id`;
  if (only === "any") {
    // The page is read through the partial index of active actors, in its order; the cursor
    // compares in the same collation as ORDER BY, so pages neither overlap nor skip.
    return `WITH c AS (SELECT tenant_id, actor_id FROM ${t.actors} WHERE status = 'active' ${page("")}
        ORDER BY tenant_id, actor_id LIMIT ${n}),
      ${update("")}`;
  }
  if (only === "own") {
    return `WITH c AS (SELECT a.tenant_id, a.actor_id FROM ${t.actors} a WHERE a.status = 'active' AND a.owner_node = ${owner} ${page("a.")}
        ORDER BY a.tenant_id, a.actor_id LIMIT ${n}),
      ${update(`AND a.owner_node = ${owner}`)}`;
  }
  return `WITH RECURSIVE owners (owner_node, depth) AS (
        SELECT min(owner_node), 1 FROM ${t.actors} WHERE status = 'active'
      UNION ALL
        SELECT (SELECT min(a.owner_node) FROM ${t.actors} a WHERE a.status = 'active' AND a.owner_node > o.owner_node), o.depth + 1
        FROM owners o WHERE o.owner_node IS NOT NULL AND o.depth < ${p.add(claimOwnersScannedMax, "int8")}),
    dead AS (SELECT o.owner_node FROM owners o WHERE o.owner_node IS NOT NULL AND o.owner_node <> ${owner}
        AND NOT EXISTS (SELECT 1 FROM ${t.nodes} n WHERE n.node_id = o.owner_node AND n.state <> 'stopped' AND n.lease_expires_at > ${dbNowMs})),
    candidates AS (
        SELECT x.tenant_id, x.actor_id FROM dead d CROSS JOIN LATERAL (SELECT a.tenant_id, a.actor_id FROM ${t.actors} a
          WHERE a.status = 'active' AND a.owner_node = d.owner_node ${page("a.")} ORDER BY a.tenant_id, a.actor_id LIMIT ${n}) x
      UNION ALL
        (SELECT a.tenant_id, a.actor_id FROM ${t.actors} a WHERE a.status = 'active' AND a.owner_node IS NULL ${page("a.")}
          ORDER BY a.tenant_id, a.actor_id LIMIT ${n})),
    c AS (SELECT l.tenant_id, l.actor_id FROM (SELECT tenant_id, actor_id FROM candidates ORDER BY tenant_id, actor_id) k
        CROSS JOIN LATERAL (SELECT a.tenant_id, a.actor_id FROM ${t.actors} a
          WHERE a.tenant_id = k.tenant_id AND a.actor_id = k.actor_id AND a.status = 'active' AND ${orphanedSql(t, owner)}
          FOR UPDATE OF a SKIP LOCKED) l
        ORDER BY k.tenant_id, k.actor_id LIMIT ${n}),
    ${update(`AND ${orphanedSql(t, owner)}`)}`;
}

/**
 * Claims active actors for `nodeId` in one transaction (SERIALIZABLE, except an orphan claim: see
 * below): at most `limit`, in key order after `afterKey`, each with epoch + 1 and `nodeId` as owner.
 *
 * @internal
 * @returns the claimed actors with their new epochs, in key order
 * @throws InvariantError on a bad node id, limit or scope
 */
export async function claimActorsSql(
  executor: SqlExecutor,
  t: Tables,
  nodeId: string,
  limit: number,
  options: { afterKey?: ActorKey; only?: ClaimScope },
): Promise<Claimed[]> {
  const only = options.only ?? "any";
  assertNodeId(nodeId, "claimActiveActors");
  assertLimit(limit, "claimActiveActors");
  assert(only === "any" || only === "own" || only === "orphaned", "claimActiveActors: only is any, own or orphaned");
  if (limit === 0) return [];
  const p = new SqlParams();
  const text = claimSql(t, p, nodeId, limit, options.afterKey, only);
  // An orphan claim is one statement at the session's isolation (READ COMMITTED on PostgreSQL):
  // its row locks with SKIP LOCKED and its compare-and-set keep two nodes from claiming one actor,
  // and, unlike SERIALIZABLE, it does not abort when nodes claim at once (they read the same owner
  // index ranges that they move actors out of). The other scopes keep their SERIALIZABLE transaction.
  const run = only === "orphaned" ? executor.single.bind(executor) : executor.transaction.bind(executor);
  const rows = await run("claimActiveActors", async (session) => (await session.query(text, p.values)).rows);
  assert(rows.length <= limit, "a claim takes at most limit actors");
  return rows.map((row) => ({ tenantId: row.tenant_id as string, actorId: row.actor_id as string, epoch: int8(row.epoch, "epoch") }));
}

/**
 * Hands active actors of `fromNodeId` over to the nodes `assign` picks, in one SERIALIZABLE
 * transaction: reads at most `limit` of them in key order, asks `assign` for each, and moves each
 * by compare-and-set on its owner (still `fromNodeId`, still active) with epoch + 1. An actor
 * `assign` gives back to `fromNodeId` stays where it is. `assign` must be pure: a transaction
 * that is retried calls it again.
 *
 * @internal
 * @returns the moved actors with their new owners and epochs, in the order they were read
 */
export async function handOffActorsSql(
  executor: SqlExecutor,
  t: Tables,
  fromNodeId: string,
  assign: (tenantId: string, actorId: string) => string,
  limit: number,
): Promise<Array<Claimed & { ownerNode: string }>> {
  assertNodeId(fromNodeId, "handOffActors");
  assertLimit(limit, "handOffActors");
  assert(typeof assign === "function", "handOffActors: assign is a function");
  if (limit === 0) return [];
  const read = `SELECT tenant_id, actor_id FROM ${t.actors} WHERE status = 'active' AND owner_node = $1::text
    ORDER BY tenant_id, actor_id LIMIT $2::int8`;
  return executor.transaction("handOffActors", async (session) => {
    const owned = (await session.query(read, [fromNodeId, limit])).rows;
    assert(owned.length <= limit, "a hand-off reads at most limit actors");
    const moves = { tenantIds: [] as string[], actorIds: [] as string[], targets: [] as string[] };
    for (const row of owned) {
      const target = assign(row.tenant_id as string, row.actor_id as string);
      assertNodeId(target, "handOffActors assign");
      if (target === fromNodeId) continue;
      moves.tenantIds.push(row.tenant_id as string);
      moves.actorIds.push(row.actor_id as string);
      moves.targets.push(target);
    }
    if (moves.actorIds.length === 0) return [];
    const p = new SqlParams();
    const source = p.unnest("u", [
      ["tenant_id", "text", moves.tenantIds],
      ["actor_id", "text", moves.actorIds],
      ["target", "text", moves.targets],
    ]);
    const text = `UPDATE ${t.actors} a SET owner_node = u.target, epoch = a.epoch + 1 FROM ${source}
      WHERE a.tenant_id = u.tenant_id AND a.actor_id = u.actor_id AND a.status = 'active' AND a.owner_node = ${p.add(fromNodeId, "text")}
      RETURNING a.tenant_id, a.actor_id, a.epoch, a.owner_node`;
    const moved = new Map<string, Claimed & { ownerNode: string }>();
    for (const row of (await session.query(text, p.values)).rows) {
      const tenantId = row.tenant_id as string;
      const actorId = row.actor_id as string;
      moved.set(JSON.stringify([tenantId, actorId]), {
        tenantId,
        actorId,
        epoch: int8(row.epoch, "epoch"),
        ownerNode: row.owner_node as string,
      });
    }
    assert(moved.size <= moves.actorIds.length, "a hand-off moves only the actors it read");
    return owned.flatMap((row) => moved.get(JSON.stringify([row.tenant_id, row.actor_id])) ?? []);
  });
}

/**
 * Active actors of `nodeId` with work in the store, in key order, at most `limit`. One statement:
 * the actors are read through the owner index and each is checked by index probes only (the
 * mailbox's pending index, the timers' and the open effects' keys); the journal is never read.
 *
 * @internal
 */
export async function findPendingWorkSql(
  executor: SqlExecutor,
  t: Tables,
  nodeId: string,
  dueBefore: number,
  limit: number,
  afterKey?: { tenantId: string; actorId: string },
): Promise<PendingWork[]> {
  assertNodeId(nodeId, "findPendingWork");
  assert(Number.isSafeInteger(dueBefore), "findPendingWork: dueBefore is an integer (ms)");
  assertLimit(limit, "findPendingWork");
  if (limit === 0) return [];
  const pending = `EXISTS (SELECT 1 FROM ${t.mailbox} m WHERE m.tenant_id = a.tenant_id AND m.actor_id = a.actor_id AND m.applied_seq IS NULL)`;
  const text = `SELECT a.tenant_id, a.actor_id, ${pending} AS pending_messages FROM ${t.actors} a
    WHERE a.status = 'active' AND a.owner_node = $1::text
      AND ($4::text IS NULL OR (a.tenant_id, a.actor_id) > ($4::text, $5::text))
      AND (a.revision = 0 OR ${pending}
      OR EXISTS (SELECT 1 FROM ${t.timers} tm WHERE tm.tenant_id = a.tenant_id AND tm.actor_id = a.actor_id AND tm.due_at <= $2::int8)
      OR EXISTS (SELECT 1 FROM ${t.effects} e WHERE e.tenant_id = a.tenant_id AND e.actor_id = a.actor_id AND e.state IN ('planned', 'running')))
    ORDER BY a.tenant_id, a.actor_id LIMIT $3::int8`;
  const rows = await executor.single(
    "findPendingWork",
    async (session) => (await session.query(text, [nodeId, dueBefore, limit, afterKey?.tenantId ?? null, afterKey?.actorId ?? null])).rows,
  );
  assert(rows.length <= limit, "findPendingWork returns at most limit actors");
  return rows.map((row) => ({
    tenantId: row.tenant_id as string,
    actorId: row.actor_id as string,
    pendingMessages: row.pending_messages === true,
  }));
}
