import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, SnapshotConflictError, StoreError } from "../../core/errors.js";
import type { NewActor } from "../../core/ports/store.js";
import { createPgStore, type SqlStore } from "../../persistence/pg/index.js";
import { migrations } from "../../persistence/sql/migrations.js";
import { createTestPgPool, dropSchemas, uniqueSchema } from "../helpers/sql.js";
import { databaseUrl } from "../helpers/services.js";
import {
  chain,
  commit,
  commitOk,
  createStarted,
  effect,
  message,
  newActor,
  outcomeError,
  timer,
  type MakeStore,
} from "./store-fixtures.js";
import { describeKillSwitchConformance } from "./store-kill-switches.suite.js";
import { describeNodesConformance } from "./store-nodes.suite.js";
import { describeStoreConformance } from "./store.suite.js";

const admin = createTestPgPool(6);
const schemas: string[] = [];
const stores: SqlStore[] = [];

afterAll(async () => {
  for (const store of stores) await store.close();
  await dropSchemas(admin, schemas);
  await admin.end();
});

/** A store on the test database with a fresh schema and its own small pool. */
function ownStore(schema = uniqueSchema(), options: Parameters<typeof createPgStore>[0] = {}): SqlStore {
  if (!schemas.includes(schema)) schemas.push(schema);
  const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 2, ...options });
  stores.push(store);
  return store;
}

const makeStore: MakeStore = async () => {
  const schema = uniqueSchema();
  schemas.push(schema);
  // The suite's stores share one pool (the `pool` option); the store must not end it.
  const store = createPgStore({ pool: admin, schema });
  return { store, cleanup: () => store.close() };
};

describeStoreConformance("pg", makeStore);
describeNodesConformance("pg", makeStore);
describeKillSwitchConformance("pg", makeStore);

/** Holds a row lock on an actor in a SERIALIZABLE transaction until `release` is called. */
async function lockActor(schema: string, actorId: string, set: string): Promise<{ release: () => Promise<void> }> {
  const client = await admin.connect();
  await client.query("BEGIN ISOLATION LEVEL SERIALIZABLE");
  await client.query(`UPDATE "${schema}".actors SET ${set} WHERE tenant_id = 'acme' AND actor_id = $1`, [actorId]);
  return {
    release: async () => {
      try {
        await client.query("COMMIT");
      } finally {
        client.release();
      }
    },
  };
}

/** Waits until a statement on `schema` waits for a lock, so that the test knows the race is set. */
async function waitForLockWait(schema: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    const { rows } = await admin.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 in query) > 0",
      [`"${schema}".actors`],
    );
    if ((rows[0] as { n: number }).n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error("no statement waited for the lock within 5 s");
}

describe("pg store: serialization failures", () => {
  it("retries a 40001 from a concurrent update and then commits", async () => {
    const schema = uniqueSchema();
    const store = ownStore(schema);
    await store.migrate();
    const actor = await createStarted(store, "acme");
    const lock = await lockActor(schema, actor.actorId, "updated_at = updated_at");
    const pending = store.commitSteps([commit("acme", actor.actorId, 1)]);
    await waitForLockWait(schema);
    const retriesBefore = store.stats.retries;
    await lock.release();
    expect(await pending).toEqual([{ ok: true }]);
    expect(store.stats.retries).toBeGreaterThan(retriesBefore);
    expect((await store.getActor("acme", actor.actorId))?.revision).toBe(2);
  });

  it("turns a lost race into a clean SnapshotConflictError after the retry", async () => {
    const schema = uniqueSchema();
    const store = ownStore(schema);
    await store.migrate();
    const actor = await createStarted(store, "acme");
    const lock = await lockActor(schema, actor.actorId, "revision = revision + 1");
    const pending = store.commitSteps([commit("acme", actor.actorId, 1)]);
    await waitForLockWait(schema);
    await lock.release();
    const [outcome] = await pending;
    expect(outcomeError(outcome)).toBeInstanceOf(SnapshotConflictError);
    expect(outcomeError(outcome)).toMatchObject({ expectedRevision: 1, actualRevision: 2 });
    expect(store.stats.retries).toBeGreaterThan(0);
  });

  it("reports ERR_STORE_RETRYABLE when retries run out, and the fallback still lands the batch", async () => {
    const schema = uniqueSchema();
    const store = ownStore(schema, { retry: { attemptsMax: 1 } });
    await store.migrate();
    const actor = await createStarted(store, "acme");
    const other = await createStarted(store, "acme");
    let lock = await lockActor(schema, actor.actorId, "updated_at = updated_at");
    let pending = store.commitSteps([commit("acme", actor.actorId, 1)]);
    await waitForLockWait(schema);
    await lock.release();
    const [single] = await pending;
    const error = outcomeError(single);
    expect(error).toBeInstanceOf(StoreError);
    expect(error).toMatchObject({ code: "ERR_STORE_RETRYABLE", retryable: true, details: { sqlState: "40001" } });
    expect((error as StoreError).cause).toBeDefined();
    lock = await lockActor(schema, actor.actorId, "updated_at = updated_at");
    pending = store.commitSteps([commit("acme", actor.actorId, 1), commit("acme", other.actorId, 1)]);
    await waitForLockWait(schema);
    await lock.release();
    expect(await pending).toEqual([{ ok: true }, { ok: true }]);
  });

  it("two nodes racing on the same actors: each step lands exactly once, the loser gets a conflict", async () => {
    const schema = uniqueSchema();
    const [one, two] = [ownStore(schema, { poolSize: 4 }), ownStore(schema, { poolSize: 4 })];
    await Promise.all([one.migrate(), two.migrate()]);
    const actors: NewActor[] = [];
    for (let i = 0; i < 20; i += 1) actors.push(await createStarted(one, "acme"));
    const results = await Promise.all(
      actors.flatMap((actor) => [one.commitSteps([commit("acme", actor.actorId, 1)]), two.commitSteps([commit("acme", actor.actorId, 1)])]),
    );
    for (let i = 0; i < actors.length; i += 1) {
      const pair = [results[2 * i]![0], results[2 * i + 1]![0]];
      expect(pair.filter((o) => o?.ok)).toHaveLength(1);
      expect(outcomeError(pair.find((o) => !o?.ok))).toBeInstanceOf(SnapshotConflictError);
    }
  });

  it("never exceeds mailboxDepthMax under concurrent senders (write skew is refused)", async () => {
    const schema = uniqueSchema();
    const [one, two] = [ownStore(schema, { poolSize: 4 }), ownStore(schema, { poolSize: 4 })];
    await one.migrate();
    for (let i = 0; i < 10; i += 1) {
      const actor = await createStarted(one, "acme");
      const settled = await Promise.allSettled([
        one.enqueueMessage(message("acme", actor.actorId, "m_one"), { mailboxDepthMax: 1 }),
        two.enqueueMessage(message("acme", actor.actorId, "m_two"), { mailboxDepthMax: 1 }),
      ]);
      expect(settled.filter((s) => s.status === "fulfilled")).toHaveLength(1);
      const rejected = settled.find((s) => s.status === "rejected");
      expect(rejected?.status === "rejected" && rejected.reason).toMatchObject({ code: "ERR_MAILBOX_FULL" });
      expect(await one.pendingMessages("acme", actor.actorId, 10)).toHaveLength(1);
    }
  });

  it("a hand-off does not move an actor another node claimed while the hand-off waited for it", async () => {
    const schema = uniqueSchema();
    const store = ownStore(schema);
    await store.migrate();
    for (const actorId of ["act_1", "act_2", "act_3"]) await store.createActor(newActor("acme", { actorId, ownerNode: "node-1" }));
    // Another node's claim of act_2 is under way: its row is locked when the hand-off reaches it.
    const lock = await lockActor(schema, "act_2", "owner_node = 'node-x', epoch = epoch + 1");
    const assigned: string[] = [];
    const pending = store.handOffActors(
      "node-1",
      (_tenantId, actorId) => {
        assigned.push(actorId);
        return "node-2";
      },
      10,
    );
    await waitForLockWait(schema);
    await lock.release();
    const moved = await pending;
    expect(moved.map((m) => [m.actorId, m.ownerNode, m.epoch])).toEqual([
      ["act_1", "node-2", 2],
      ["act_3", "node-2", 2],
    ]);
    // The first attempt saw act_2 as node-1's; the retry after the conflict no longer did.
    expect(assigned).toContain("act_2");
    expect(store.stats.retries).toBeGreaterThan(0);
    const actor = await store.getActor("acme", "act_2");
    expect([actor?.ownerNode, actor?.epoch]).toEqual(["node-x", 2]);
  });

  it("cancels a statement at statementTimeoutMs and reports it as a StoreError", async () => {
    const schema = uniqueSchema();
    const store = ownStore(schema, { statementTimeoutMs: 200 });
    await store.migrate();
    const actor = await createStarted(store, "acme");
    const lock = await lockActor(schema, actor.actorId, "updated_at = updated_at");
    try {
      const [outcome] = await store.commitSteps([commit("acme", actor.actorId, 1)]);
      expect(outcomeError(outcome)).toMatchObject({ code: "ERR_STORE", retryable: true, details: { sqlState: "57014" } });
    } finally {
      await lock.release();
    }
  });
});

describe("pg store: setup and failures", () => {
  it("migrates concurrently from two processes without error, recording each step once", async () => {
    const schema = uniqueSchema();
    const [one, two, three] = [ownStore(schema), ownStore(schema), ownStore(schema)];
    await Promise.all([one.migrate(), two.migrate(), three.migrate()]);
    const { rows } = await admin.query(`SELECT name FROM "${schema}".tsr_migrations ORDER BY name`);
    expect(rows.map((r) => (r as { name: string }).name)).toEqual(migrations.map((m) => m.name));
  });

  it("group commit costs one round trip (BEGIN, the statement and COMMIT pipelined), whatever the batch size", async () => {
    const store = ownStore();
    await store.migrate();
    const actors: NewActor[] = [];
    for (let i = 0; i < 50; i += 1) actors.push(await createStarted(store, "acme"));
    await store.enqueueMessage(message("acme", actors[0]!.actorId, "m1"), { mailboxDepthMax: 5 });
    const before = { ...store.stats };
    const outcomes = await store.commitSteps(
      actors.map((actor, i) =>
        commit("acme", actor.actorId, 1, {
          appliedMessageId: i === 0 ? "m1" : undefined,
          entry: { ...commit("acme", actor.actorId, 1).entry, messageId: i === 0 ? "m1" : undefined, chainRef: "ch_1" },
          children: [newActor("acme", { parentId: actor.actorId, chainRef: "ch_1" })],
          messages: [message("acme", actors[(i + 1) % 50]!.actorId, `m_${i}`, { chainRef: "ch_1" })],
          effects: [effect("acme", actor.actorId, `e_${i}`, 2, { chainRef: "ch_1", audit: { i } })],
          timersSet: [timer("acme", actor.actorId, "t1", 2, 9_000, { chainRef: "ch_1" })],
          blobs: [{ blobId: `b_${i}`, data: "x" }],
          chains: [chain("ch_1"), chain(`ch_own_${i}`)],
          timersCleared: ["t0"],
          finalize: i % 2 === 0,
        }),
      ),
    );
    expect(outcomes.every((o) => o.ok)).toBe(true);
    expect(store.stats.roundTrips - before.roundTrips).toBe(1);
    expect(store.stats.statements - before.statements).toBe(3);
    expect(store.stats.transactions - before.transactions).toBe(1);
    expect(await store.getChain("acme", "ch_own_49")).toEqual(chain("ch_own_49").tokens);
  });

  it("keeps an actor's row on its page while its steps update it, even with the page's neighbours written and an old snapshot open", async () => {
    const schema = uniqueSchema();
    const store = ownStore(schema);
    await store.migrate();
    const actor = await createStarted(store, "acme");
    // Neighbours inserted after it: with full pages, they would leave no room beside it.
    for (let i = 0; i < 60; i += 1) await store.createActor(newActor("acme"));
    const blockOf = async (): Promise<string> => {
      const { rows } = await admin.query(`SELECT (ctid::text::point)[0]::text AS block FROM "${schema}".actors WHERE actor_id = $1`, [
        actor.actorId,
      ]);
      return (rows[0] as { block: string }).block;
    };
    const before = await blockOf();
    // A reader's open snapshot keeps every version written after it from being pruned, as
    // concurrent steps do under load: each update needs room of its own.
    const reader = await admin.connect();
    try {
      await reader.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
      await reader.query(`SELECT count(*) FROM "${schema}".actors`);
      for (let revision = 1; revision <= 3; revision += 1) await commitOk(store, commit("acme", actor.actorId, revision));
      expect(await blockOf()).toBe(before);
    } finally {
      await reader.query("ROLLBACK");
      reader.release();
    }
  });

  it("costs one more round trip per round when a batch holds steps that depend on each other", async () => {
    const store = ownStore();
    await store.migrate();
    const actor = await createStarted(store, "acme");
    const before = { ...store.stats };
    const outcomes = await store.commitSteps([
      commit("acme", actor.actorId, 1),
      commit("acme", actor.actorId, 2),
      commit("acme", actor.actorId, 3),
    ]);
    expect(outcomes).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
    // Three rounds, the last with the COMMIT.
    expect(store.stats.roundTrips - before.roundTrips).toBe(3);
    expect(store.stats.transactions - before.transactions).toBe(1);
  });

  it("takes three round trips on a pool that does not pipeline, with the same results", async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const pool = createTestPgPool(2, { pipeline: false });
    const store = createPgStore({ pool, schema });
    try {
      await store.migrate();
      const a = await createStarted(store, "acme");
      const b = await createStarted(store, "acme");
      const before = { ...store.stats };
      const outcomes = await store.commitSteps([
        commit("acme", a.actorId, 1, { chains: [chain("ch_a")] }),
        commit("acme", b.actorId, 0, { chains: [chain("ch_b")] }),
      ]);
      expect(outcomes[0]).toEqual({ ok: true });
      expect(outcomeError(outcomes[1])?.details?.reason).toBe("stale-revision");
      expect(store.stats.roundTrips - before.roundTrips).toBe(3);
      expect(store.stats.statements - before.statements).toBe(3);
      expect(await store.getChain("acme", "ch_a")).toEqual(chain("ch_a").tokens);
      expect(await store.getChain("acme", "ch_b")).toBeUndefined();
    } finally {
      await store.close();
      await pool.end();
    }
  });

  it("upgrades a schema created by 0001_initial: old rows read back without a chain, new ones keep theirs", async () => {
    const schema = uniqueSchema();
    schemas.push(schema);
    const quoted = `"${schema}"`;
    const initial = migrations.find((m) => m.name === "0001_initial");
    expect(initial).toBeDefined();
    await admin.query(`CREATE SCHEMA ${quoted}`);
    await admin.query(`CREATE TABLE ${quoted}.tsr_migrations (name text PRIMARY KEY, applied_at bigint NOT NULL)`);
    for (const statement of initial!.sql(quoted)) await admin.query(statement);
    await admin.query(`INSERT INTO ${quoted}.tsr_migrations (name, applied_at) VALUES ('0001_initial', 1)`);
    await admin.query(
      `INSERT INTO ${quoted}.actors (tenant_id, actor_id, agent_type, agent_version, parent_id, root_id, name, depth, input, epoch, owner_node,
         status, revision, snapshot, snapshot_seq, last_hash, output, error, child_count, created_at, updated_at)
       VALUES ('acme', 'act_old', 'desk', 1, NULL, 'act_old', NULL, 0, '{"old":true}', 1, 'node-1', 'active', 0, NULL, 0, '', NULL, NULL, 0, 5, 5)`,
    );
    const store = ownStore(schema);
    await store.migrate();
    const { rows } = await admin.query(`SELECT name FROM ${quoted}.tsr_migrations ORDER BY name`);
    expect(rows.map((r) => (r as { name: string }).name)).toEqual(migrations.map((m) => m.name));
    const old = await store.getActor("acme", "act_old");
    expect(old).toMatchObject({ input: { old: true }, revision: 0 });
    expect(old).not.toHaveProperty("chainRef");
    await commitOk(
      store,
      commit("acme", "act_old", 0, { entry: { ...commit("acme", "act_old", 0).entry, chainRef: "ch_new" }, chains: [chain("ch_new")] }),
    );
    expect((await store.readJournal("acme", "act_old", { limit: 5 }))[0]?.chainRef).toBe("ch_new");
    expect(await store.getChain("acme", "ch_new")).toEqual(chain("ch_new").tokens);
  });

  it("reports an unreachable database as ERR_STORE_UNAVAILABLE, never a raw driver error", async () => {
    const store = createPgStore({ connectionString: "postgresql://root@127.0.0.1:1/test", connectionTimeoutMs: 1_000, schema: "nowhere" });
    stores.push(store);
    const read = store.getActor("acme", "act_1");
    await expect(read).rejects.toBeInstanceOf(StoreError);
    await expect(store.migrate()).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE", retryable: true });
    const [outcome] = await store.commitSteps([commit("acme", "act_1", 0)]);
    expect(outcomeError(outcome)).toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
    expect((outcomeError(outcome) as StoreError).cause).toBeDefined();
  });

  it("refuses bad options with ConfigError", () => {
    expect(() => createPgStore({})).toThrow(ConfigError);
    expect(() => createPgStore({ connectionString: databaseUrl, pool: admin })).toThrow(ConfigError);
    expect(() => createPgStore({ connectionString: databaseUrl, schema: "drop table x;" })).toThrow(ConfigError);
    expect(() => createPgStore({ connectionString: databaseUrl, poolSize: 0 })).toThrow(ConfigError);
    expect(() => createPgStore({ connectionString: databaseUrl, retry: { attemptsMax: 0 } })).toThrow(ConfigError);
    expect(() => createPgStore({ connectionString: databaseUrl, bogus: true } as never)).toThrow(ConfigError);
  });
});
