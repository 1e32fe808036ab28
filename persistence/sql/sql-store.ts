import { assert, InvariantError } from "../../core/assert.js";
import { AgentError, LimitError } from "../../core/errors.js";
import type { Json } from "../../core/json.js";
import type {
  ActorQuery,
  ActorRecord,
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
  StepCommit,
  Store,
  StoredChain,
  TimerRecord,
} from "../../core/ports/store.js";
import { validateChains } from "../internal/validate-commit.js";
import { commitStepsSql, type DialectCache } from "./commit-steps.js";
import { chainRows, chainsInsertCte, insertActorsSql, mailboxInsertCtes } from "./commit-writes.js";
import { runMigrations } from "./migrate.js";
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
} from "./rows.js";
import { SqlParams } from "./sql-params.js";
import { tablesFor, type Tables } from "./tables.js";
import { defaultSqlRetry, SqlExecutor, type SqlPool, type SqlRetryOptions, type SqlSession, type SqlStoreStats } from "./transaction.js";

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
  /** Called once when the store closes, after the pool ended (PGlite closes its database here). */
  onClose?: () => Promise<void>;
}

/**
 * The {@link Store} over SQL, shared by the PostgreSQL/CockroachDB and PGlite adapters. Every
 * table is qualified with the schema; every write runs in a SERIALIZABLE transaction, retried on
 * SQLSTATE 40001, 40003, 40P01 and 55P03; driver errors leave as {@link StoreError}.
 *
 * @example
 * ```ts
 * const store = new SqlStore({ pool, schema: "tessera", ownsPool: true });
 * await store.migrate();
 * ```
 */
export class SqlStore implements Store, AsyncDisposable {
  readonly kind: string;
  readonly #executor: SqlExecutor;
  readonly #tables: Tables;
  readonly #pool: SqlPool;
  readonly #ownsPool: boolean;
  readonly #onClose: (() => Promise<void>) | undefined;
  readonly #dialect: DialectCache = { dialect: undefined };
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
    this.#executor = new SqlExecutor(options.pool, { ...defaultSqlRetry, ...options.retry });
  }

  /** Work so far: transactions, statements, round trips (statements pipelined together count once) and retries. Live counters. */
  get stats(): SqlStoreStats {
    return this.#executor.stats;
  }

  migrate(): Promise<void> {
    return runMigrations(this.#executor, this.#tables);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
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
   * transaction when (and only when) the actor is created.
   */
  async createActor(
    actor: NewActor,
    options: { runKey?: string; inputHash?: string; chains?: StoredChain[] } = {},
  ): Promise<{ actor: ActorRecord; created: boolean }> {
    const t = this.#tables;
    const { runKey, inputHash } = options;
    assertChains(options.chains);
    return this.#executor.transaction("createActor", async (session) => {
      if (runKey !== undefined) {
        const run = await session.query(
          `INSERT INTO ${t.runs} (tenant_id, run_key, actor_id, input_hash) VALUES ($1::text, $2::text, $3::text, $4::text)
           ON CONFLICT (tenant_id, run_key) DO NOTHING RETURNING actor_id`,
          [actor.tenantId, runKey, actor.actorId, inputHash ?? null],
        );
        if (run.rowCount === 0) return { actor: await this.#existingRun(session, actor.tenantId, runKey, inputHash), created: false };
      }
      const p = new SqlParams();
      const source = `(SELECT ${p.add(actor.tenantId, "text")} AS tenant_id, ${p.add(actor.actorId, "text")} AS actor_id,
        ${p.add(actor.agentType, "text")} AS agent_type, ${p.add(actor.agentVersion, "int8")} AS agent_version,
        ${p.add(actor.parentId ?? null, "text")} AS parent_id, ${p.add(actor.rootId, "text")} AS root_id, ${p.add(actor.name ?? null, "text")} AS name,
        ${p.add(actor.depth, "int8")} AS depth, ${p.add(jsonParam(actor.input), "text")} AS input, ${p.add(actor.epoch, "int8")} AS epoch,
        ${p.add(actor.ownerNode ?? null, "text")} AS owner_node, ${p.add(actor.createdAt, "int8")} AS created_at,
        ${p.add(actor.chainRef ?? null, "text")} AS chain_ref) AS u`;
      const ctes = [`ins AS (${insertActorsSql(t, source)} ON CONFLICT (tenant_id, actor_id) DO NOTHING RETURNING ${actorSelect()})`];
      const chains = chainRows(actor.tenantId, actor.createdAt, options.chains);
      if (chains.length > 0) ctes.push(chainsInsertCte(p, t, chains, "EXISTS (SELECT 1 FROM ins)"));
      const inserted = await session.query(`WITH ${ctes.join(",\n")} SELECT * FROM ins`, p.values);
      const row = inserted.rows[0];
      if (row === undefined) {
        throw new AgentError("ERR_ACTOR_EXISTS", `actor ${actor.actorId} already exists`, {
          details: { tenantId: actor.tenantId, actorId: actor.actorId },
        });
      }
      return { actor: actorFromRow(row), created: true };
    });
  }

  async #existingRun(session: SqlSession, tenantId: string, runKey: string, inputHash: string | undefined): Promise<ActorRecord> {
    const { rows } = await session.query(
      `SELECT r.input_hash AS run_input_hash, ${actorSelect("a")} FROM ${this.#tables.runs} r
       JOIN ${this.#tables.actors} a ON a.tenant_id = r.tenant_id AND a.actor_id = r.actor_id
       WHERE r.tenant_id = $1::text AND r.run_key = $2::text`,
      [tenantId, runKey],
    );
    const row = rows[0];
    assert(row !== undefined, "a run points at an existing actor");
    if ((row.run_input_hash ?? undefined) !== inputHash) {
      throw new AgentError("ERR_IDEMPOTENCY_MISMATCH", `run ${runKey} was started with different input`, {
        details: { tenantId, runKey, actorId: row.actor_id },
      });
    }
    return actorFromRow(row);
  }

  getActor(tenantId: string, actorId: string): Promise<ActorRecord | undefined> {
    return this.#one(
      "getActor",
      `SELECT ${actorSelect()} FROM ${this.#tables.actors} WHERE tenant_id = $1::text AND actor_id = $2::text`,
      [tenantId, actorId],
      actorFromRow,
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
    const text = `SELECT ${actorSelect()} FROM ${this.#tables.actors} WHERE ${where.join(" AND ")}
      ORDER BY created_at, actor_id LIMIT ${p.add(query.limit, "int8")}`;
    return this.#many("listActors", text, p.values, actorFromRow);
  }

  commitSteps(commits: readonly StepCommit[]): Promise<CommitOutcome[]> {
    return commitStepsSql(this.#executor, this.#tables, commits, this.#dialect);
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
    return this.#executor.transaction("enqueueMessage", async (session) => {
      // The pending count stops at the limit, so the check reads at most mailboxDepthMax index entries.
      const { rows } = await session.query(
        `SELECT a.status,
           EXISTS (SELECT 1 FROM ${t.mailbox} m WHERE m.tenant_id = a.tenant_id AND m.actor_id = a.actor_id AND m.message_id = $3::text) AS duplicate,
           (SELECT count(*) FROM (SELECT 1 FROM ${t.mailbox} m WHERE m.tenant_id = a.tenant_id AND m.actor_id = a.actor_id
              AND m.applied_seq IS NULL LIMIT $4::int8) p) AS pending
         FROM ${t.actors} a WHERE a.tenant_id = $1::text AND a.actor_id = $2::text`,
        [tenantId, actorId, messageId, max],
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
      const pending = int8(row.pending, "pending");
      if (pending >= max) {
        throw new LimitError("ERR_MAILBOX_FULL", `the mailbox of actor ${actorId} holds ${pending} pending messages, the limit is ${max}`, {
          retryable: true,
          details: { limit: "mailboxDepthMax", max, actual: pending, tenantId, actorId },
        });
      }
      const p = new SqlParams();
      const ctes = mailboxInsertCtes(p, t, [{ idx: 0, row: message }]);
      const chains = chainRows(tenantId, message.createdAt, options.chains);
      if (chains.length > 0) ctes.push(chainsInsertCte(p, t, chains, "EXISTS (SELECT 1 FROM mm)"));
      const inserted = await session.query(`WITH ${ctes.join(",\n")} SELECT count(*) AS n FROM mm`, p.values);
      assert(int8(inserted.rows[0]?.n, "n") === 1, "the checked message was inserted");
      return { created: true };
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
   * @param nodeId - the new owner
   * @param limit - the largest page; bounds the transaction
   * @param options - `afterKey`, the cursor
   * @returns the claimed actors with their new epochs, in key order
   */
  async claimActiveActors(
    nodeId: string,
    limit: number,
    options: { afterKey?: { tenantId: string; actorId: string } } = {},
  ): Promise<Array<{ tenantId: string; actorId: string; epoch: number }>> {
    assertLimit(limit, "claimActiveActors");
    if (limit === 0) return [];
    const t = this.#tables;
    const p = new SqlParams();
    const owner = p.add(nodeId, "text");
    const after = options.afterKey;
    const page =
      after === undefined ? "" : `AND (tenant_id, actor_id) > (${p.add(after.tenantId, "text")}, ${p.add(after.actorId, "text")})`;
    // The page is read through the partial index of active actors, in its order; the cursor
    // compares in the same collation as ORDER BY, so pages neither overlap nor skip.
    const text = `WITH c AS (SELECT tenant_id, actor_id FROM ${t.actors} WHERE status = 'active' ${page}
        ORDER BY tenant_id, actor_id LIMIT ${p.add(limit, "int8")}),
      claimed AS (UPDATE ${t.actors} a SET epoch = a.epoch + 1, owner_node = ${owner}
        FROM c WHERE a.tenant_id = c.tenant_id AND a.actor_id = c.actor_id AND a.status = 'active'
        RETURNING a.tenant_id, a.actor_id, a.epoch)
      SELECT tenant_id, actor_id, epoch FROM claimed ORDER BY tenant_id, actor_id`;
    const rows = await this.#executor.transaction("claimActiveActors", async (session) => (await session.query(text, p.values)).rows);
    assert(rows.length <= limit, "a claim takes at most limit actors");
    return rows.map((row) => ({
      tenantId: row.tenant_id as string,
      actorId: row.actor_id as string,
      epoch: int8(row.epoch, "epoch"),
    }));
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
