import { assert, InvariantError } from "../../core/assert.js";
import { AgentError, LimitError } from "../../core/errors.js";
import type { Json } from "../../core/json.js";
import type {
  KillSwitch,
  ActorQuery,
  ActorRecord,
  ClaimScope,
  CommitOutcome,
  DirectoryEntry,
  EffectGuard,
  EffectPatch,
  EffectRecord,
  EffectState,
  JournalEntry,
  MessageRecord,
  NewActor,
  NewDirectoryEntry,
  NewMessage,
  NodeLease,
  NodeRecord,
  PendingWork,
  StepCommit,
  Store,
  StoredChain,
  TimerRecord,
} from "../../core/ports/store.js";
import { validateChains } from "../internal/validate-commit.js";
import { commitStepsSql, type DialectCache } from "./commit-steps.js";
import { chainRows, chainsInsertCte, insertActorsSql } from "./commit-writes.js";
import { GroupedStatements } from "./grouped-statements.js";
import { runMigrations } from "./migrate.js";
import {
  claimActorsSql,
  findPendingWorkSql,
  handOffActorsSql,
  listNodesSql,
  registerNodeSql,
  renewNodeSql,
  setNodeStateSql,
} from "./node-leases.js";
import {
  actorFromRow,
  actorSelect,
  chainTokensFromRow,
  effectFromRow,
  effectSelect,
  int8,
  journalFromRow,
  journalSelect,
  jsonParam,
  messageFromRow,
  messageSelect,
  timerColumns,
  timerFromRow,
  optionalJson,
} from "./rows.js";
import { SqlParams } from "./sql-params.js";
import { StatisticsKeeper, type StatisticsKeeperStats } from "./statistics-keeper.js";
import { tablesFor, type Tables } from "./tables.js";
import { defaultSqlRetry, SqlExecutor, type SqlPool, type SqlRetryOptions, type SqlStoreStats } from "./transaction.js";

/** What {@link SqlStore} is built from. */
export interface SqlStoreOptions {
  /** A `pg.Pool`, or a pool over PGlite. */
  pool: SqlPool;
  /** The schema holding the tables; must match `/^[a-z_][a-z0-9_]{0,62}$/`. */
  schema: string;
  /** Whether `close()` ends the pool. */
  ownsPool: boolean;
  /** Retry of serialization failures. @defaultValue {@link defaultSqlRetry} */
  retry?: Partial<SqlRetryOptions>;
  /** The adapter name reported as `kind`. @defaultValue "pg" */
  kind?: string;
  /**
   * Whether other processes may use the database at the same time (reported as `shared`): true
   * for PostgreSQL and CockroachDB, false for PGlite, which one process opens.
   * @defaultValue true
   */
  shared?: boolean;
  /** Called once when the store closes, after the pool ended (PGlite closes its database here). */
  onClose?: () => Promise<void>;
  /**
   * Analyze the store's tables while they are young (PostgreSQL and PGlite; see
   * {@link SqlStore.statistics}). Turn it off when you run `ANALYZE` yourself.
   * @defaultValue true
   */
  keepStatistics?: boolean;
}

/**
 * The {@link Store} over SQL, shared by the PostgreSQL/CockroachDB and PGlite adapters. Every
 * table is qualified with the schema; every write runs in a SERIALIZABLE transaction, retried on
 * SQLSTATE 40001, 40003, 40P01 and 55P03, except the single statements of the node registry and of
 * orphan claims (see `node-leases.ts`), which run at the session's isolation so that nodes doing
 * them at once do not abort each other; driver errors leave as {@link StoreError}. A COMMIT that
 * went out and got no answer, or CockroachDB's 40003 for it (or for a statement outside a
 * transaction), is not retried: the work may have committed, and it leaves as
 * `ERR_STORE_UNAVAILABLE` with `details.outcome: "unknown"`.
 *
 * @example
 * ```ts
 * const store = new SqlStore({ pool, schema: "tessera", ownsPool: true });
 * await store.migrate();
 * ```
 */
export class SqlStore implements Store, AsyncDisposable {
  readonly kind: string;
  readonly shared: boolean;
  readonly #executor: SqlExecutor;
  readonly #tables: Tables;
  readonly #pool: SqlPool;
  readonly #ownsPool: boolean;
  readonly #onClose: (() => Promise<void>) | undefined;
  readonly #dialect: DialectCache = { dialect: undefined };
  readonly #statistics: StatisticsKeeper | undefined;
  readonly #creations: GroupedStatements;
  #closing: Promise<void> | undefined;

  /**
   * @param options - pool, schema and ownership
   * @throws ConfigError when the schema name is not a plain identifier
   */
  constructor(options: SqlStoreOptions) {
    this.#tables = tablesFor(options.schema);
    this.#pool = options.pool;
    this.#ownsPool = options.ownsPool;
    this.#onClose = options.onClose;
    this.kind = options.kind ?? "pg";
    // Shared unless told otherwise: a node on a shared store waits for leases to expire before
    // taking actors over, which is slower but never wrong; the opposite default would not be.
    this.shared = options.shared ?? true;
    this.#executor = new SqlExecutor(options.pool, { ...defaultSqlRetry, ...options.retry });
    this.#creations = new GroupedStatements(this.#executor, "createActor");
    if (options.keepStatistics ?? true)
      this.#statistics = new StatisticsKeeper(this.#executor, this.#tables, options.schema, this.#dialect);
  }

  /** Work so far: transactions, statements, round trips (statements pipelined together count once) and retries. Live counters. */
  get stats(): SqlStoreStats {
    return this.#executor.stats;
  }

  /**
   * What the store did to keep the planner's statistics current (undefined when `keepStatistics`
   * is off). Statements are planned once per connection; a table that grew quickly since its last
   * `ANALYZE` would be planned as if it were still small (a scan of every actor, or of every effect
   * of an actor, per step) until autovacuum got to it. So after 500 steps committed through the
   * store, and again each time that count doubles, the store analyzes the tables that at least
   * doubled in size since their statistics were taken. Live counters.
   */
  get statistics(): StatisticsKeeperStats | undefined {
    return this.#statistics?.stats;
  }

  migrate(): Promise<void> {
    return runMigrations(this.#executor, this.#tables);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#statistics?.close();
      this.#executor.close();
      if (this.#ownsPool) await this.#pool.end();
      await this.#onClose?.();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * Creates an actor, and stores the delegation chains given in `options.chains` in the same
   * transaction when (and only when) the actor is created. One statement, its COMMIT pipelined
   * behind it: one round trip. With a run key, the run row and the actor row are inserted
   * together or not at all; when the key is taken, nothing is written and the statement returns
   * the run's actor instead. An actor id that exists already fails the insert (unique
   * violation), which rolls the run row back with it. Creations that arrive while one is being
   * written are written together, in one transaction (see `GroupedStatements`).
   */
  async createActor(
    actor: NewActor,
    options: { runKey?: string; inputHash?: string; chains?: StoredChain[] } = {},
  ): Promise<{ actor: ActorRecord; created: boolean }> {
    const t = this.#tables;
    const { runKey, inputHash } = options;
    assertChains(options.chains);
    const p = new SqlParams();
    const tenant = p.add(actor.tenantId, "text");
    const actorId = p.add(actor.actorId, "text");
    const source = `(SELECT ${tenant} AS tenant_id, ${actorId} AS actor_id,
        ${p.add(actor.agentType, "text")} AS agent_type, ${p.add(actor.agentVersion, "int8")} AS agent_version,
        ${p.add(actor.parentId ?? null, "text")} AS parent_id, ${p.add(actor.rootId, "text")} AS root_id, ${p.add(actor.name ?? null, "text")} AS name,
        ${p.add(actor.depth, "int8")} AS depth, ${p.add(jsonParam(actor.input), "text")} AS input, ${p.add(actor.epoch, "int8")} AS epoch,
        ${p.add(actor.ownerNode ?? null, "text")} AS owner_node, ${p.add(actor.createdAt, "int8")} AS created_at,
        ${p.add(actor.chainRef ?? null, "text")} AS chain_ref) AS u`;
    const ctes: string[] = [];
    let existing = "";
    if (runKey !== undefined) {
      const key = p.add(runKey, "text");
      ctes.push(`run AS (INSERT INTO ${t.runs} (tenant_id, run_key, actor_id, input_hash)
        VALUES (${tenant}, ${key}, ${actorId}, ${p.add(inputHash ?? null, "text")})
        ON CONFLICT (tenant_id, run_key) DO NOTHING RETURNING actor_id)`);
      ctes.push(`ins AS (${insertActorsSql(t, source, "WHERE EXISTS (SELECT 1 FROM run)")} RETURNING ${actorSelect()})`);
      existing = `UNION ALL SELECT false, r.input_hash, ${actorSelect("a")} FROM ${t.runs} r
        JOIN ${t.actors} a ON a.tenant_id = r.tenant_id AND a.actor_id = r.actor_id
        WHERE r.tenant_id = ${tenant} AND r.run_key = ${key} AND NOT EXISTS (SELECT 1 FROM run)`;
    } else {
      ctes.push(`ins AS (${insertActorsSql(t, source)} RETURNING ${actorSelect()})`);
    }
    const chains = chainRows(actor.tenantId, actor.createdAt, options.chains);
    if (chains.length > 0) ctes.push(chainsInsertCte(p, t, chains, "EXISTS (SELECT 1 FROM ins)"));
    const text = `WITH ${ctes.join(",\n")} SELECT true AS created, NULL::text AS run_input_hash, ins.* FROM ins ${existing}`;
    let rows: Array<Record<string, unknown>>;
    try {
      rows = await this.#creations.run({ text, values: p.values });
    } catch (error) {
      // The run and chain inserts skip conflicts: a unique violation can only be the actor's id.
      if (((error as AgentError).details as { sqlState?: string } | undefined)?.sqlState === "23505") {
        throw new AgentError("ERR_ACTOR_EXISTS", `actor ${actor.actorId} already exists`, {
          details: { tenantId: actor.tenantId, actorId: actor.actorId },
        });
      }
      throw error;
    }
    const row = rows[0];
    assert(row !== undefined, "a run key that is taken points at an existing actor");
    if (row.created === true) return { actor: actorFromRow(row), created: true };
    if ((row.run_input_hash ?? undefined) !== inputHash) {
      throw new AgentError("ERR_IDEMPOTENCY_MISMATCH", `run ${runKey} was started with different input`, {
        details: { tenantId: actor.tenantId, runKey: runKey ?? null, actorId: row.actor_id },
      });
    }
    return { actor: actorFromRow(row), created: false };
  }

  getActor(tenantId: string, actorId: string): Promise<ActorRecord | undefined> {
    return this.#one(
      "getActor",
      `SELECT ${actorSelect()} FROM ${this.#tables.actors} WHERE tenant_id = $1::text AND actor_id = $2::text`,
      [tenantId, actorId],
      actorFromRow,
    );
  }

  getActorState(tenantId: string, actorId: string): Promise<{ actor: ActorRecord; stateValue: Json } | undefined> {
    const t = this.#tables;
    return this.#one(
      "getActorState",
      `SELECT ${actorSelect("a")}, (SELECT j.state_value::text FROM ${t.journal} j
         WHERE j.tenant_id = a.tenant_id AND j.actor_id = a.actor_id AND j.seq = a.revision) AS current_state_value
       FROM ${t.actors} a WHERE a.tenant_id = $1::text AND a.actor_id = $2::text`,
      [tenantId, actorId],
      (row) => ({ actor: actorFromRow(row), stateValue: optionalJson(row, "current_state_value") ?? null }),
    );
  }

  findRun(tenantId: string, runKey: string): Promise<ActorRecord | undefined> {
    const t = this.#tables;
    return this.#one(
      "findRun",
      `SELECT ${actorSelect("a")} FROM ${t.runs} r JOIN ${t.actors} a ON a.tenant_id = r.tenant_id AND a.actor_id = r.actor_id
       WHERE r.tenant_id = $1::text AND r.run_key = $2::text`,
      [tenantId, runKey],
      actorFromRow,
    );
  }

  async listActors(tenantId: string, query: ActorQuery): Promise<ActorRecord[]> {
    assertLimit(query.limit, "listActors");
    const p = new SqlParams();
    const where = [`tenant_id = ${p.add(tenantId, "text")}`];
    if (query.parentId !== undefined) where.push(`parent_id = ${p.add(query.parentId, "text")}`);
    if (query.status !== undefined) where.push(`status = ${p.add(query.status, "text")}`);
    if (query.agentType !== undefined) where.push(`agent_type = ${p.add(query.agentType, "text")}`);
    if (query.after !== undefined)
      where.push(`(created_at, actor_id) > (${p.add(query.after.createdAt, "int8")}, ${p.add(query.after.actorId, "text")})`);
    const text = `SELECT ${actorSelect()} FROM ${this.#tables.actors} WHERE ${where.join(" AND ")}
      ORDER BY created_at, actor_id LIMIT ${p.add(query.limit, "int8")}`;
    return this.#many("listActors", text, p.values, actorFromRow);
  }

  async commitSteps(commits: readonly StepCommit[]): Promise<CommitOutcome[]> {
    const outcomes = await commitStepsSql(this.#executor, this.#tables, commits, this.#dialect);
    this.#statistics?.noteSteps(outcomes.reduce((n, outcome) => n + (outcome.ok ? 1 : 0), 0));
    return outcomes;
  }

  async readJournal(tenantId: string, actorId: string, query: { afterSeq?: number; limit: number }): Promise<JournalEntry[]> {
    assertLimit(query.limit, "readJournal");
    return this.#many(
      "readJournal",
      `SELECT ${journalSelect()} FROM ${this.#tables.journal} WHERE tenant_id = $1::text AND actor_id = $2::text AND seq > $3::int8
       ORDER BY seq LIMIT $4::int8`,
      [tenantId, actorId, query.afterSeq ?? 0, query.limit],
      journalFromRow,
    );
  }

  listEffects(tenantId: string, actorId: string, query: { states?: readonly EffectState[] } = {}): Promise<EffectRecord[]> {
    const p = new SqlParams();
    const where = [`tenant_id = ${p.add(tenantId, "text")}`, `actor_id = ${p.add(actorId, "text")}`];
    if (query.states !== undefined) where.push(`state = ANY(${p.add([...query.states], "text[]")})`);
    const text = `SELECT ${effectSelect()} FROM ${this.#tables.effects} WHERE ${where.join(" AND ")} ORDER BY created_seq, ordinal`;
    return this.#many("listEffects", text, p.values, effectFromRow);
  }

  getEffect(tenantId: string, actorId: string, effectId: string): Promise<EffectRecord | undefined> {
    return this.#one(
      "getEffect",
      `SELECT ${effectSelect()} FROM ${this.#tables.effects} WHERE tenant_id = $1::text AND actor_id = $2::text AND effect_id = $3::text`,
      [tenantId, actorId, effectId],
      effectFromRow,
    );
  }

  updateEffect(tenantId: string, actorId: string, effectId: string, patch: EffectPatch, guard: EffectGuard): Promise<boolean> {
    const p = new SqlParams();
    const set = [`updated_at = ${p.add(patch.updatedAt, "int8")}`];
    if (patch.state !== undefined) set.push(`state = ${p.add(patch.state, "text")}`);
    if (patch.attempts !== undefined) set.push(`attempts = ${p.add(patch.attempts, "int8")}`);
    if ("nextAttemptAt" in patch) set.push(`next_attempt_at = ${p.add(patch.nextAttemptAt ?? null, "int8")}`);
    if ("error" in patch) set.push(`error = ${p.add(jsonParam(patch.error), "text")}::jsonb`);
    const tenant = p.add(tenantId, "text");
    const actor = p.add(actorId, "text");
    const where = [
      `tenant_id = ${tenant}`,
      `actor_id = ${actor}`,
      `effect_id = ${p.add(effectId, "text")}`,
      `state = ANY(${p.add([...guard.fromStates], "text[]")})`,
    ];
    if (guard.epoch !== undefined) {
      where.push(
        `EXISTS (SELECT 1 FROM ${this.#tables.actors} a WHERE a.tenant_id = ${tenant} AND a.actor_id = ${actor} AND a.epoch = ${p.add(guard.epoch, "int8")})`,
      );
    }
    const text = `UPDATE ${this.#tables.effects} SET ${set.join(", ")} WHERE ${where.join(" AND ")}`;
    return this.#executor.transaction("updateEffect", async (session) => (await session.query(text, p.values)).rowCount === 1);
  }

  /**
   * Enqueues a message, and stores the delegation chains given in `options.chains` in the same
   * transaction when (and only when) the message is added.
   */
  async enqueueMessage(message: NewMessage, options: { mailboxDepthMax: number; chains?: StoredChain[] }): Promise<{ created: boolean }> {
    const max = options.mailboxDepthMax;
    assert(Number.isSafeInteger(max) && max > 0, "mailboxDepthMax is a positive integer");
    assertChains(options.chains);
    const t = this.#tables;
    const { tenantId, actorId, messageId } = message;
    // A READ COMMITTED transaction that serializes on the actor's mailbox head row rather than a
    // SERIALIZABLE one: concurrent enqueues to one actor, and the steps applying its mailbox, read
    // and write the same index pages, and SERIALIZABLE transactions abort each other there under
    // load (a burst of a thousand events to one actor ran out of retries). Here enqueues to one
    // actor queue on the head row's lock; the depth is counted after the lock is held, so it sees
    // every enqueue that went before (steps only lower it): the limit holds exactly. The message id
    // is the key, so a duplicate does nothing. An actor that finishes meanwhile keeps the message
    // pending, as it keeps any message it had not applied.
    const tenantText = tenantId;
    return this.#executor.lockingTransaction("enqueueMessage", async (session) => {
      const { rows } = await session.query(
        `SELECT a.status,
           EXISTS (SELECT 1 FROM ${t.mailbox} m WHERE m.tenant_id = a.tenant_id AND m.actor_id = a.actor_id AND m.message_id = $3::text) AS duplicate
         FROM ${t.actors} a WHERE a.tenant_id = $1::text AND a.actor_id = $2::text`,
        [tenantText, actorId, messageId],
      );
      const row = rows[0];
      if (row === undefined)
        throw new AgentError("ERR_ACTOR_NOT_FOUND", `actor ${actorId} does not exist`, { details: { tenantId, actorId } });
      if (row.duplicate === true) return { created: false };
      if (row.status !== "active") {
        throw new AgentError("ERR_ACTOR_NOT_ACTIVE", `actor ${actorId} is ${String(row.status)}`, {
          details: { tenantId, actorId, status: row.status },
        });
      }
      // Takes the head row's lock (creating the row if needed) and reads its latest value.
      const head = await session.query(
        `INSERT INTO ${t.mailboxHeads} AS h (tenant_id, actor_id, next_ord) VALUES ($1::text, $2::text, 1)
         ON CONFLICT (tenant_id, actor_id) DO UPDATE SET next_ord = h.next_ord RETURNING next_ord`,
        [tenantText, actorId],
      );
      const ord = int8(head.rows[0]?.next_ord, "next_ord");
      const p = new SqlParams();
      const tenant = p.add(tenantId, "text");
      const actor = p.add(actorId, "text");
      const ctes = [
        `pc AS (SELECT count(*) AS pending FROM (SELECT 1 FROM ${t.mailbox} m WHERE m.tenant_id = ${tenant} AND m.actor_id = ${actor}
           AND m.applied_seq IS NULL LIMIT ${p.add(max, "int8")}) p)`,
        `mm AS (INSERT INTO ${t.mailbox} (tenant_id, actor_id, message_id, ord, event, sender, created_at, applied_seq, chain_ref)
           SELECT ${tenant}, ${actor}, ${p.add(messageId, "text")}, ${p.add(ord, "int8")}, ${p.add(jsonParam(message.event), "text")}::jsonb,
             ${p.add(message.sender, "text")}, ${p.add(message.createdAt, "int8")}, NULL, ${p.add(message.chainRef ?? null, "text")}
           FROM pc WHERE pc.pending < ${p.add(max, "int8")}
           ON CONFLICT (tenant_id, actor_id, message_id) DO NOTHING RETURNING message_id)`,
        `mh AS (UPDATE ${t.mailboxHeads} SET next_ord = next_ord + 1 WHERE tenant_id = ${tenant} AND actor_id = ${actor}
           AND EXISTS (SELECT 1 FROM mm) RETURNING 1)`,
      ];
      const chains = chainRows(tenantId, message.createdAt, options.chains);
      if (chains.length > 0) ctes.push(chainsInsertCte(p, t, chains, "EXISTS (SELECT 1 FROM mm)"));
      const inserted = await session.query(
        `WITH ${ctes.join(",\n")} SELECT (SELECT pending FROM pc) AS pending, (SELECT count(*) FROM mm) AS inserted`,
        p.values,
      );
      const result = inserted.rows[0];
      if (int8(result?.inserted, "inserted") === 1) return { created: true };
      const pending = int8(result?.pending, "pending");
      if (pending >= max) {
        throw new LimitError("ERR_MAILBOX_FULL", `the mailbox of actor ${actorId} holds ${pending} pending messages, the limit is ${max}`, {
          retryable: true,
          details: { limit: "mailboxDepthMax", max, actual: pending, tenantId, actorId },
        });
      }
      // Inserted by a concurrent sender of the same id after this transaction's first read.
      return { created: false };
    });
  }

  async pendingMessages(tenantId: string, actorId: string, limit: number): Promise<MessageRecord[]> {
    assertLimit(limit, "pendingMessages");
    return this.#many(
      "pendingMessages",
      `SELECT ${messageSelect()} FROM ${this.#tables.mailbox} WHERE tenant_id = $1::text AND actor_id = $2::text AND applied_seq IS NULL
       ORDER BY ord LIMIT $3::int8`,
      [tenantId, actorId, limit],
      messageFromRow,
    );
  }

  getMessage(tenantId: string, actorId: string, messageId: string): Promise<MessageRecord | undefined> {
    return this.#one(
      "getMessage",
      `SELECT ${messageSelect()} FROM ${this.#tables.mailbox} WHERE tenant_id = $1::text AND actor_id = $2::text AND message_id = $3::text`,
      [tenantId, actorId, messageId],
      messageFromRow,
    );
  }

  listTimers(tenantId: string, actorId: string): Promise<TimerRecord[]> {
    return this.#many(
      "listTimers",
      `SELECT ${timerColumns} FROM ${this.#tables.timers} WHERE tenant_id = $1::text AND actor_id = $2::text ORDER BY due_at, timer_id`,
      [tenantId, actorId],
      timerFromRow,
    );
  }

  /**
   * Claims active actors for `nodeId`, a page at a time: each call is one transaction that takes
   * at most `limit` active actors, in key order (tenant, then actor id, in the database's
   * collation), after `options.afterKey` when given, and increments their lease epoch. Page by
   * passing the last actor of the previous page as `afterKey` until a page comes back shorter
   * than `limit`. Every claim bumps the epoch, even of an actor that `nodeId` already owns, so a
   * node restarted under the same id still fences off its previous incarnation.
   *
   * `options.only` picks which actors: `any` (every active actor), `own` (those `nodeId` owns),
   * or `orphaned` (no owner, or an owner that is not live by the database clock; never those of
   * `nodeId`). Orphans are locked with `FOR UPDATE SKIP LOCKED` and updated by compare-and-set, so
   * nodes claiming at once take disjoint sets without waiting for each other; a page may then come
   * back short while another node claims the rest.
   *
   * @param nodeId - the new owner
   * @param limit - the largest page; bounds the transaction
   * @param options - `afterKey`, the cursor; `only`, the scope (default `any`)
   * @returns the claimed actors with their new epochs, in key order
   * @throws InvariantError on a bad node id, limit or scope
   */
  claimActiveActors(
    nodeId: string,
    limit: number,
    options: { afterKey?: { tenantId: string; actorId: string }; only?: ClaimScope } = {},
  ): Promise<Array<{ tenantId: string; actorId: string; epoch: number }>> {
    return claimActorsSql(this.#executor, this.#tables, nodeId, limit, options);
  }

  /**
   * Registers a node with a lease from the database clock, replacing an earlier row of its id.
   *
   * @param registration - the node id, the lease's length in ms, and what the node says about itself
   * @returns the lease (by the database clock) and the sorted ids of the live nodes, this one included
   * @throws InvariantError on an empty node id or a TTL that is not a positive integer of at most a day
   */
  registerNode(registration: { nodeId: string; leaseTtlMs: number; info: Json }): Promise<NodeLease> {
    return registerNodeSql(this.#executor, this.#tables, registration);
  }

  /**
   * Renews a live node's lease in one statement.
   *
   * @returns the new lease, or `undefined` when the node was not live (its lease had expired, it
   *   was stopped, or it never registered): it must register again
   */
  renewNode(nodeId: string, leaseTtlMs: number, life?: string): Promise<NodeLease | undefined> {
    return renewNodeSql(this.#executor, this.#tables, nodeId, leaseTtlMs, life);
  }

  /** Marks a node draining or stopped; a stopped node stays stopped until it registers again. */
  setNodeState(nodeId: string, state: "draining" | "stopped"): Promise<void> {
    return setNodeStateSql(this.#executor, this.#tables, nodeId, state);
  }

  /** Every registered node, sorted by id, with liveness by the database clock and its active actors counted. */
  listNodes(): Promise<NodeRecord[]> {
    return listNodesSql(this.#executor, this.#tables);
  }

  /**
   * Moves up to `limit` active actors of `fromNodeId` to the nodes `assign` picks, by
   * compare-and-set on the owner with epoch + 1, in one transaction. `assign` must be pure: a
   * retried transaction calls it again. Actors it assigns to `fromNodeId` itself stay.
   *
   * @returns the moved actors with their new owners and epochs
   */
  handOffActors(
    fromNodeId: string,
    assign: (tenantId: string, actorId: string) => string,
    limit: number,
  ): Promise<Array<{ tenantId: string; actorId: string; epoch: number; ownerNode: string }>> {
    return handOffActorsSql(this.#executor, this.#tables, fromNodeId, assign, limit);
  }

  /**
   * Active actors of `nodeId` with work in the store (no step yet, a pending message, a timer due
   * at or before `dueBefore`, a planned or running effect), in key order, at most `limit`.
   */
  findPendingWork(
    nodeId: string,
    dueBefore: number,
    limit: number,
    afterKey?: { tenantId: string; actorId: string },
  ): Promise<PendingWork[]> {
    return findPendingWorkSql(this.#executor, this.#tables, nodeId, dueBefore, limit, afterKey);
  }

  async engageKillSwitch(entry: KillSwitch): Promise<{ created: boolean }> {
    const rows = await this.#executor.single(
      "engageKillSwitch",
      async (session) =>
        (
          await session.query(
            `INSERT INTO ${this.#tables.killSwitches} (tenant_id, agent_type, reason, engaged_at) VALUES ($1::text, $2::text, $3::text, $4::int8)
           ON CONFLICT (tenant_id, agent_type) DO NOTHING RETURNING 1`,
            [entry.tenantId, entry.agentType, entry.reason, entry.engagedAt],
          )
        ).rows,
    );
    return { created: rows.length === 1 };
  }

  listKillSwitches(): Promise<KillSwitch[]> {
    return this.#many(
      "listKillSwitches",
      `SELECT tenant_id, agent_type, reason, engaged_at FROM ${this.#tables.killSwitches} ORDER BY tenant_id, agent_type LIMIT 100000`,
      [],
      (row) => ({
        tenantId: row.tenant_id as string,
        agentType: row.agent_type as string,
        reason: row.reason as string,
        engagedAt: int8(row.engaged_at, "engaged_at"),
      }),
    );
  }

  async getBlob(tenantId: string, blobId: string): Promise<string | undefined> {
    return this.#one(
      "getBlob",
      `SELECT data FROM ${this.#tables.blobs} WHERE tenant_id = $1::text AND blob_id = $2::text`,
      [tenantId, blobId],
      (row) => row.data as string,
    );
  }

  /**
   * Reads a delegation chain stored with an actor, message or step of the tenant.
   *
   * @returns the compact JWS links, root first, or `undefined` when the tenant has no such chain
   */
  getChain(tenantId: string, chainRef: string): Promise<string[] | undefined> {
    return this.#one(
      "getChain",
      `SELECT tokens::text AS tokens FROM ${this.#tables.chains} WHERE tenant_id = $1::text AND chain_ref = $2::text`,
      [tenantId, chainRef],
      chainTokensFromRow,
    );
  }

  /**
   * Appends a change to a tenant's key directory at the next position. Concurrent appends of one
   * tenant serialize (a conflict is retried), so positions are gap-free and each is taken once.
   *
   * @returns the entry's position: the tenant's directory epoch after it
   */
  async appendDirectory(entry: NewDirectoryEntry): Promise<number> {
    const t = this.#tables;
    const text = `INSERT INTO ${t.keyDirectory} (tenant_id, position, kind, kid, body, created_at)
      SELECT $1::text, coalesce(max(position), 0) + 1, $2::text, $3::text, $4::text::jsonb, $5::int8
      FROM ${t.keyDirectory} WHERE tenant_id = $1::text
      RETURNING position`;
    const values = [entry.tenantId, entry.kind, entry.kid, JSON.stringify(entry.body), entry.createdAt];
    const rows = await this.#executor.transaction("appendDirectory", async (session) => (await session.query(text, values)).rows);
    assert(rows.length === 1, "an append inserts one directory row");
    return int8(rows[0]!.position, "position");
  }

  /** Reads a tenant's key directory changes after `afterPosition`, in order. */
  readDirectory(tenantId: string, afterPosition: number, limit: number): Promise<DirectoryEntry[]> {
    assertLimit(limit, "readDirectory");
    return this.#many(
      "readDirectory",
      `SELECT tenant_id, position, kind, kid, body::text AS body, created_at FROM ${this.#tables.keyDirectory}
        WHERE tenant_id = $1::text AND position > $2::int8 ORDER BY position LIMIT $3::int8`,
      [tenantId, afterPosition, limit],
      (row) => ({
        tenantId: row.tenant_id as string,
        position: int8(row.position, "position"),
        kind: row.kind as DirectoryEntry["kind"],
        kid: row.kid as string,
        body: JSON.parse(row.body as string) as Json,
        createdAt: int8(row.created_at, "created_at"),
      }),
    );
  }

  async #one<T>(operation: string, text: string, values: unknown[], map: (row: Record<string, unknown>) => T): Promise<T | undefined> {
    const rows = await this.#many(operation, text, values, map);
    assert(rows.length <= 1, `${operation} reads at most one row`);
    return rows[0];
  }

  #many<T>(operation: string, text: string, values: unknown[], map: (row: Record<string, unknown>) => T): Promise<T[]> {
    return this.#executor.single(operation, async (session) => (await session.query(text, values)).rows.map(map));
  }
}

function assertLimit(limit: number, operation: string): void {
  assert(Number.isSafeInteger(limit) && limit >= 0, `${operation} limit is an integer >= 0`);
}

/** Refuses malformed chains (a programmer bug) before anything is written. */
function assertChains(chains: readonly StoredChain[] | undefined): void {
  const problem = validateChains(chains);
  if (problem !== undefined) throw new InvariantError(problem);
}
