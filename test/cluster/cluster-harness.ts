/**
 * The parent side of cluster tests: a test's schema, ledger and subject prefix; node worker
 * processes spawned, signalled (SIGKILL, SIGSTOP, SIGCONT) and commanded over IPC; and what the
 * database says about ownership and nodes. A worker process is a `ClusterWorker`
 * (`worker-process.ts`); checks of journals and of the ledger against the store are in
 * `cluster-checks.ts`.
 *
 * Cluster tests measure failover times on a small machine, so a {@link ClusterTest} first takes a
 * PostgreSQL advisory lock held by its own connection: the cluster test files that vitest runs in
 * parallel run their node processes one file at a time, and each file's measurements are its own.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import type { NodeRecord, Store } from "../../core/ports/store.js";
import { createPgStore } from "../../persistence/pg/index.js";
import { startLedger, type Ledger } from "../helpers/ledger-service.js";
import { databaseUrl } from "../helpers/services.js";
import { createTestPgPool, dropSchemas, uniqueSchema } from "../helpers/sql.js";
import type { CommandResults, NodeWorkerArgs, Retried } from "./protocol.js";
import { waitUntil, sleep } from "./wait.js";
import { ClusterWorker } from "./worker-process.js";

export { sleep, waitUntil } from "./wait.js";
export { ClusterWorker, type WorkerExit } from "./worker-process.js";

/** The advisory lock that runs cluster test files one at a time. */
const serialLockKey = 0x7e55e4a;

/** The node settings of a test, shared by its workers unless one overrides them. */
export type NodeSettings = Omit<NodeWorkerArgs, "schema" | "nodeId" | "subjectPrefix" | "ledgerUrl" | "tenantId">;

/** An actor's ownership as the database has it. */
export interface OwnerRow {
  actorId: string;
  ownerNode: string | null;
  epoch: number;
  status: string;
  revision: number;
}

/**
 * One cluster test: its own schema (migrated), ledger, subject prefix and node processes, and
 * direct reads of the database. {@link ClusterTest.dispose} kills every node and drops the schema.
 */
export class ClusterTest {
  readonly subjectPrefix = `cl_${randomBytes(6).toString("hex")}`;
  readonly tenantId = "acme";
  readonly workers = new Map<string, ClusterWorker>();
  /** Every worker this test started, replaced ones included, for failure messages. */
  readonly #allWorkers: ClusterWorker[] = [];
  readonly #settings: NodeSettings;
  readonly #cleanups: Array<() => Promise<void>> = [];
  #disposed = false;
  /** Time spent waiting for other cluster test files, in ms. */
  lockWaitMs = 0;
  /**
   * Retryable errors the workers' clients got from `startRun`/`sendEvent` and retried, by code,
   * over the whole test (none would be needed if the node never threw one).
   */
  readonly clientRetries: Record<string, number> = {};

  readonly schema: string;
  readonly ledger: Ledger;
  /** A small pool for the test's own reads. */
  readonly pool: pg.Pool;
  /** The test's own store on the schema (it migrated it; `listNodes` reads through it). */
  readonly store: Store;
  /** The connection holding the cluster tests' advisory lock. */
  readonly #lock: pg.Client;

  private constructor(parts: { schema: string; ledger: Ledger; pool: pg.Pool; store: Store; lock: pg.Client; settings: NodeSettings }) {
    this.schema = parts.schema;
    this.ledger = parts.ledger;
    this.pool = parts.pool;
    this.store = parts.store;
    this.#lock = parts.lock;
    this.#settings = parts.settings;
  }

  /**
   * Waits for the cluster tests' lock, then makes a schema (migrated), a ledger and a pool.
   *
   * @param settings - the node settings of the test's workers
   */
  static async create(settings: NodeSettings): Promise<ClusterTest> {
    const lock = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
    lock.on("error", () => {});
    await lock.connect();
    let ledger: Ledger | undefined;
    try {
      const waiting = performance.now();
      await lock.query("SELECT pg_advisory_lock($1)", [serialLockKey]);
      const lockWaitMs = Math.round(performance.now() - waiting);
      ledger = await startLedger({ port: 0 });
      const schema = uniqueSchema();
      const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 2 });
      const test = new ClusterTest({ schema, ledger, pool: createTestPgPool(4), store, lock, settings });
      test.lockWaitMs = lockWaitMs;
      try {
        // Migrated here once, so that node processes never race to create the schema.
        await store.migrate();
      } catch (error) {
        await test.dispose();
        throw error;
      }
      return test;
    } catch (error) {
      await ledger?.close();
      await lock.end().catch(() => undefined);
      throw error;
    }
  }

  /** Runs `cleanup` on dispose (before the schema is dropped), e.g. a private NATS server's disposal. */
  onDispose(cleanup: () => Promise<void>): void {
    this.#cleanups.push(cleanup);
  }

  /** The qualified name of one of the test's tables. */
  table(name: "actors" | "journal" | "effects" | "mailbox" | "nodes"): string {
    return `"${this.schema}".${name}`;
  }

  /** Starts a node process (without waiting for it to be ready). */
  spawn(nodeId: string, overrides: Partial<NodeSettings> = {}): ClusterWorker {
    if (this.#disposed) throw new Error("the cluster test is disposed");
    const worker = new ClusterWorker(
      nodeId,
      {
        ...this.#settings,
        ...overrides,
        schema: this.schema,
        nodeId,
        subjectPrefix: this.subjectPrefix,
        ledgerUrl: this.ledger.url,
        tenantId: this.tenantId,
      },
      (result) => {
        const codes = (result as Partial<Retried> | null)?.retriedCodes;
        if (codes === undefined) return;
        for (const [code, n] of Object.entries(codes)) this.clientRetries[code] = (this.clientRetries[code] ?? 0) + n;
      },
    );
    this.workers.set(nodeId, worker);
    this.#allWorkers.push(worker);
    return worker;
  }

  /**
   * Starts nodes, waits until each is ready and the database counts them all live, then waits one
   * renewal interval more so that every node's list of live nodes (read at its renewals) has them all.
   *
   * @returns the workers, in the order of `nodeIds`
   */
  async startNodes(nodeIds: readonly string[], overrides: Partial<NodeSettings> = {}): Promise<ClusterWorker[]> {
    const workers = nodeIds.map((nodeId) => this.spawn(nodeId, overrides));
    await Promise.all(workers.map((worker) => worker.ready));
    await waitUntil(
      `nodes ${nodeIds.join(", ")} live`,
      async () => {
        const live = new Set((await this.listNodes()).filter((n) => n.live).map((n) => n.nodeId));
        return nodeIds.every((id) => live.has(id));
      },
      { timeoutMs: 20_000, describe: async () => JSON.stringify(await this.listNodes()) },
    );
    await sleep((overrides.renewIntervalMs ?? this.#settings.renewIntervalMs) + 200);
    return workers;
  }

  /** The node registry, through the store. */
  listNodes(): Promise<NodeRecord[]> {
    return this.store.listNodes();
  }

  /** Active actors per owner, straight from the actors table. */
  async ownership(): Promise<Map<string, number>> {
    const { rows } = await this.pool.query<{ owner: string | null; n: string }>(
      `SELECT owner_node AS owner, count(*) AS n FROM ${this.table("actors")} WHERE status = 'active' GROUP BY 1 ORDER BY 1`,
    );
    return new Map(rows.map((row) => [row.owner ?? "(none)", Number(row.n)]));
  }

  /** Every actor's owner, epoch, status and revision (of `actorIds`, when given). */
  async owners(actorIds?: readonly string[]): Promise<Map<string, OwnerRow>> {
    const filter = actorIds === undefined ? "" : "AND actor_id = ANY($2::text[])";
    const params: unknown[] = actorIds === undefined ? [this.tenantId] : [this.tenantId, actorIds];
    const { rows } = await this.pool.query<{
      actor_id: string;
      owner_node: string | null;
      epoch: string;
      status: string;
      revision: string;
    }>(`SELECT actor_id, owner_node, epoch, status, revision FROM ${this.table("actors")} WHERE tenant_id = $1 ${filter}`, params);
    return new Map(
      rows.map((row) => [
        row.actor_id,
        { actorId: row.actor_id, ownerNode: row.owner_node, epoch: Number(row.epoch), status: row.status, revision: Number(row.revision) },
      ]),
    );
  }

  /** Counts of actors by status. */
  async statusCounts(actorIds?: readonly string[]): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const row of (await this.owners(actorIds)).values()) counts[row.status] = (counts[row.status] ?? 0) + 1;
    return counts;
  }

  /**
   * When each of `messageIds` was applied: the `created_at` of the journal row that applied it (the
   * applying node's wall clock, on this machine the same clock as the test's).
   */
  async appliedAt(messageIds: readonly string[]): Promise<Map<string, { actorId: string; at: number; nodeId: string; epoch: number }>> {
    const { rows } = await this.pool.query<{ message_id: string; actor_id: string; created_at: string; node_id: string; epoch: string }>(
      `SELECT message_id, actor_id, created_at, node_id, epoch FROM ${this.table("journal")} WHERE tenant_id = $1 AND message_id = ANY($2::text[])`,
      [this.tenantId, messageIds],
    );
    return new Map(
      rows.map((row) => [
        row.message_id,
        { actorId: row.actor_id, at: Number(row.created_at), nodeId: row.node_id, epoch: Number(row.epoch) },
      ]),
    );
  }

  /** Per actor, the wall-clock time of its first journal row under an epoch above the given one (its first step after a takeover). */
  async firstStepAfter(epochs: ReadonlyMap<string, number>): Promise<Map<string, number>> {
    const ids = [...epochs.keys()];
    const { rows } = await this.pool.query<{ actor_id: string; epoch: string; first_at: string }>(
      `SELECT actor_id, epoch, min(created_at) AS first_at FROM ${this.table("journal")}
        WHERE tenant_id = $1 AND actor_id = ANY($2::text[]) GROUP BY actor_id, epoch`,
      [this.tenantId, ids],
    );
    const first = new Map<string, number>();
    for (const row of rows) {
      if (Number(row.epoch) <= (epochs.get(row.actor_id) ?? Infinity)) continue;
      const at = Number(row.first_at);
      if (!first.has(row.actor_id) || at < first.get(row.actor_id)!) first.set(row.actor_id, at);
    }
    return first;
  }

  /** When each of `messageIds` was put in its mailbox (`created_at`: the sending node's wall clock when `sendEvent` was called). */
  async enqueuedAt(messageIds: readonly string[]): Promise<Map<string, number>> {
    const { rows } = await this.pool.query<{ message_id: string; created_at: string }>(
      `SELECT message_id, created_at FROM ${this.table("mailbox")} WHERE tenant_id = $1 AND message_id = ANY($2::text[])`,
      [this.tenantId, messageIds],
    );
    return new Map(rows.map((row) => [row.message_id, Number(row.created_at)]));
  }

  /** Actors among `actorIds` that have not reached `revision` yet (each step is one revision). */
  async belowRevision(actorIds: readonly string[], revision: number): Promise<string[]> {
    const { rows } = await this.pool.query<{ actor_id: string }>(
      `SELECT actor_id FROM ${this.table("actors")} WHERE tenant_id = $1 AND actor_id = ANY($2::text[]) AND revision < $3`,
      [this.tenantId, actorIds, revision],
    );
    return rows.map((row) => row.actor_id);
  }

  /** Actors among `actorIds` not completed yet. */
  async notCompleted(actorIds: readonly string[]): Promise<string[]> {
    const { rows } = await this.pool.query<{ actor_id: string }>(
      `SELECT actor_id FROM ${this.table("actors")} WHERE tenant_id = $1 AND actor_id = ANY($2::text[]) AND status <> 'completed'`,
      [this.tenantId, actorIds],
    );
    return rows.map((row) => row.actor_id);
  }

  /** Work left in the store for actors owned by `nodeId`: open effects and pending messages. */
  async workOf(nodeId: string): Promise<{ actors: number; openEffects: number; pendingMessages: number }> {
    const { rows } = await this.pool.query<{ actors: string; effects: string; messages: string }>(
      `SELECT
         (SELECT count(*) FROM ${this.table("actors")} WHERE status = 'active' AND owner_node = $1) AS actors,
         (SELECT count(*) FROM ${this.table("effects")} e JOIN ${this.table("actors")} a USING (tenant_id, actor_id)
            WHERE a.status = 'active' AND a.owner_node = $1 AND e.state IN ('planned', 'running')) AS effects,
         (SELECT count(*) FROM ${this.table("mailbox")} m JOIN ${this.table("actors")} a USING (tenant_id, actor_id)
            WHERE a.status = 'active' AND a.owner_node = $1 AND m.applied_seq IS NULL) AS messages`,
      [nodeId],
    );
    const row = rows[0]!;
    return { actors: Number(row.actors), openEffects: Number(row.effects), pendingMessages: Number(row.messages) };
  }

  /**
   * Sends one event type to each of `actorIds`, spreading the sends over `through` (round robin
   * in slices), with message ids `<prefix>-<actorId>`.
   *
   * @returns the workers' replies, summed
   */
  async sendToAll(
    through: readonly ClusterWorker[],
    actorIds: readonly string[],
    type: string,
    prefix: string,
  ): Promise<CommandResults["sendEvents"]> {
    const slices = splitEvenly(actorIds, through.length);
    const replies = await Promise.all(
      slices.map((slice, i) =>
        through[i]!.request(
          "sendEvents",
          { events: slice.map((actorId) => ({ actorId, type, messageId: `${prefix}-${actorId}` })) },
          120_000,
        ),
      ),
    );
    return sumReplies(replies);
  }

  /** Starts runs, spreading the starts over `through`. */
  async startRuns(through: readonly ClusterWorker[], runIds: readonly string[], pingsNeeded: number): Promise<CommandResults["startRuns"]> {
    const slices = splitEvenly(runIds, through.length);
    const replies = await Promise.all(
      slices.map((slice, i) => through[i]!.request("startRuns", { runs: slice.map((runId) => ({ runId, pingsNeeded })) }, 120_000)),
    );
    return {
      created: replies.reduce((sum, r) => sum + r.created, 0),
      existing: replies.reduce((sum, r) => sum + r.existing, 0),
      errors: replies.flatMap((r) => r.errors),
      ms: Math.max(...replies.map((r) => r.ms)),
      ...sumRetries(replies),
    };
  }

  /** What every worker printed and logged, for failure messages. */
  describe(): string {
    return this.#allWorkers.map((worker) => worker.describe()).join("\n");
  }

  /**
   * Runs a test body; a failure gets every worker's errors and stderr tail appended to its message.
   */
  async run(body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (error) {
      if (error instanceof Error) error.message += `\n\n${this.describe()}`;
      throw error;
    }
  }

  /** Kills every node (stopped ones too), runs the cleanups, drops the schema, closes the rest. Idempotent. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    await Promise.all(this.#allWorkers.map((worker) => worker.kill()));
    for (const cleanup of this.#cleanups.splice(0)) await cleanup().catch(() => undefined);
    await this.store.close().catch(() => undefined);
    await dropSchemas(this.pool, [this.schema]).catch(() => undefined);
    await this.ledger.close();
    await this.pool.end().catch(() => undefined);
    await this.#lock.end().catch(() => undefined);
  }
}

/** Splits `items` into `parts` slices of (nearly) equal length, in order. */
export function splitEvenly<T>(items: readonly T[], parts: number): T[][] {
  const slices: T[][] = Array.from({ length: parts }, () => []);
  items.forEach((item, i) => slices[i % parts]!.push(item));
  return slices;
}

function sumReplies(replies: ReadonlyArray<CommandResults["sendEvents"]>): CommandResults["sendEvents"] {
  return {
    accepted: replies.reduce((sum, r) => sum + r.accepted, 0),
    duplicate: replies.reduce((sum, r) => sum + r.duplicate, 0),
    errors: replies.flatMap((r) => r.errors),
    ms: Math.max(0, ...replies.map((r) => r.ms)),
    ...sumRetries(replies),
  };
}

function sumRetries(replies: readonly Retried[]): Retried {
  const retriedCodes: Record<string, number> = {};
  for (const reply of replies)
    for (const [code, n] of Object.entries(reply.retriedCodes)) retriedCodes[code] = (retriedCodes[code] ?? 0) + n;
  return { retries: replies.reduce((sum, r) => sum + r.retries, 0), retriedCodes };
}

/** p50, p95 and max of some durations, in ms. */
export function summarize(values: readonly number[]): { n: number; min: number; p50: number; p95: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return { n: sorted.length, min: sorted[0] ?? Number.NaN, p50: at(0.5), p95: at(0.95), max: sorted.at(-1) ?? Number.NaN };
}

/** Run ids `<prefix>-0000` … */
export function runIdsOf(prefix: string, count: number, from = 0): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${String(from + i).padStart(4, "0")}`);
}
