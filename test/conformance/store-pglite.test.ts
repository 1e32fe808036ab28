import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../core/errors.js";
import type { NewActor } from "../../core/ports/store.js";
import { createPgliteStore } from "../../persistence/pglite/index.js";
import { SqlStore } from "../../persistence/sql/sql-store.js";
import { openSharedPglite, uniqueSchema } from "../helpers/sql.js";
import { commit, commitOk, createStarted, message, type MakeStore } from "./store-fixtures.js";
import { describeKillSwitchConformance } from "./store-kill-switches.suite.js";
import { describeNodesConformance } from "./store-nodes.suite.js";
import { describeStoreConformance } from "./store.suite.js";

// One PGlite database for the suite (initdb takes seconds); each test gets a schema of its own.
let shared: Awaited<ReturnType<typeof openSharedPglite>> | undefined;
beforeAll(async () => {
  shared = await openSharedPglite();
});
afterAll(async () => {
  await shared?.close();
});

const makeStore: MakeStore = async () => {
  if (shared === undefined) throw new Error("the shared PGlite database is not open");
  const pool = shared.pool;
  const schema = uniqueSchema();
  const store = new SqlStore({ pool, schema, ownsPool: false, kind: "pglite", shared: false });
  return {
    store,
    cleanup: async () => {
      await store.close();
      const client = await pool.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        client.release();
      }
    },
  };
};

describeStoreConformance("pglite", makeStore);
describeNodesConformance("pglite", makeStore);
describeKillSwitchConformance("pglite", makeStore);

describe("pglite store: round trips", () => {
  it("group commit costs one round trip (BEGIN, the statement and COMMIT pipelined), as on PostgreSQL", async () => {
    if (shared === undefined) throw new Error("the shared PGlite database is not open");
    const schema = uniqueSchema();
    const store = new SqlStore({ pool: shared.pool, schema, ownsPool: false, kind: "pglite" });
    try {
      await store.migrate();
      const actors: NewActor[] = [];
      for (let i = 0; i < 20; i += 1) actors.push(await createStarted(store, "acme"));
      const before = { ...store.stats };
      const outcomes = await store.commitSteps(
        actors.map((actor, i) =>
          commit("acme", actor.actorId, 1, { messages: [message("acme", actors[(i + 1) % 20]!.actorId, `m_${i}`)] }),
        ),
      );
      expect(outcomes.every((o) => o.ok)).toBe(true);
      expect(store.stats.roundTrips - before.roundTrips).toBe(1);
      expect(store.stats.statements - before.statements).toBe(3);
    } finally {
      await store.close();
      const client = await shared.pool.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        client.release();
      }
    }
  });
});

describe("createPgliteStore", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "tessera-pglite-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("creates missing parent directories and keeps the data across close and reopen", async () => {
    const dataDir = path.join(dir, "nested", "deeper", "db");
    const first = await createPgliteStore({ dataDir, schema: "tessera" });
    expect(first.kind).toBe("pglite");
    expect(first.shared).toBe(false);
    await first.migrate();
    const actor = await createStarted(first, "acme", { input: { keep: "me" } });
    await first.enqueueMessage(message("acme", actor.actorId, "m1"), { mailboxDepthMax: 4 });
    await commitOk(first, commit("acme", actor.actorId, 1, { appliedMessageId: "m1", blobs: [{ blobId: "b1", data: "payload" }] }));
    expect(first.stats.statements).toBeGreaterThan(0);
    await first.close();
    await first.close();
    await expect(first.getActor("acme", actor.actorId)).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });

    const second = await createPgliteStore({ dataDir });
    try {
      await second.migrate();
      expect(await second.getActor("acme", actor.actorId)).toMatchObject({ revision: 2, input: { keep: "me" }, snapshot: { v: 1 } });
      expect((await second.getMessage("acme", actor.actorId, "m1"))?.appliedSeq).toBe(2);
      expect(await second.getBlob("acme", "b1")).toBe("payload");
      expect((await second.readJournal("acme", actor.actorId, { limit: 10 })).map((e) => e.seq)).toEqual([1, 2]);
    } finally {
      await second.close();
    }
  });

  it("runs in memory with memory://", async () => {
    const store = await createPgliteStore({ dataDir: "memory://", schema: "other_schema" });
    try {
      await store.migrate();
      const actor = await createStarted(store, "acme");
      expect((await store.getActor("acme", actor.actorId))?.revision).toBe(1);
    } finally {
      await store.close();
    }
  });

  it("refuses bad options with ConfigError", async () => {
    await expect(createPgliteStore({ dataDir: "" })).rejects.toBeInstanceOf(ConfigError);
    await expect(createPgliteStore({ dataDir: "idb://x" })).rejects.toMatchObject({ code: "ERR_CONFIG" });
    await expect(createPgliteStore({ dataDir: "memory://", schema: "Bad-Name" })).rejects.toBeInstanceOf(ConfigError);
    await expect(createPgliteStore({ dataDir: "memory://", extra: 1 } as never)).rejects.toBeInstanceOf(ConfigError);
  });
});
