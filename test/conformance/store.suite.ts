import { describeDirectoryConformance } from "./store-directory.suite.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AgentError, LimitError, StoreError } from "../../core/errors.js";
import type { Store } from "../../core/ports/store.js";
import { describeChainsAndAudit } from "./store-chains.suite.js";
import { describeCommitSteps } from "./store-commit.suite.js";
import { describeEffectsAndTimers } from "./store-effects.suite.js";
import { describeGuardsAndClaims } from "./store-guards.suite.js";
import { commit, commitOk, createStarted, entry, message, newActor, outcomeError, type MakeStore } from "./store-fixtures.js";

/** What every test of the suite shares: the store made for it. */
export interface StoreContext {
  store: Store;
}

/**
 * The conformance suite of the `Store` port. Every adapter runs it; each test gets a fresh,
 * migrated store from `makeStore` and removes it with the `cleanup` it returned.
 *
 * @param name - the adapter, for test names
 * @param makeStore - makes an empty store (the suite calls `migrate()`)
 * @example
 * ```ts
 * describeStoreConformance("memory", async () => ({ store: createMemoryStore(), cleanup: async () => {} }));
 * ```
 */
export function describeStoreConformance(name: string, makeStore: MakeStore): void {
  describe(`Store conformance: ${name}`, () => {
    const ctx = {} as StoreContext;
    let cleanup: (() => Promise<void>) | undefined;
    beforeEach(async () => {
      const made = await makeStore();
      ctx.store = made.store;
      cleanup = made.cleanup;
      await ctx.store.migrate();
    });
    afterEach(async () => {
      await cleanup?.();
      cleanup = undefined;
    });

    describeLifecycle(ctx);
    describeActors(ctx);
    describeMailbox(ctx);
    describeCommitSteps(ctx);
    describeEffectsAndTimers(ctx);
    describeClaimsAndTenants(ctx);
    describeChainsAndAudit(ctx);
    describeGuardsAndClaims(ctx);
  });
  describeDirectoryConformance(name, makeStore);
}

function describeLifecycle(ctx: StoreContext): void {
  describe("lifecycle", () => {
    it("migrates again without effect and keeps the data", async () => {
      const { store } = ctx;
      const actor = newActor("acme");
      await store.createActor(actor);
      await store.migrate();
      await store.migrate();
      expect((await store.getActor("acme", actor.actorId))?.actorId).toBe(actor.actorId);
    });

    it("refuses every call after close, and close is idempotent", async () => {
      const { store } = ctx;
      await store.close();
      await store.close();
      await expect(store.getActor("acme", "act_1")).rejects.toMatchObject({ code: "ERR_STORE_UNAVAILABLE" });
      await expect(store.getActor("acme", "act_1")).rejects.toBeInstanceOf(StoreError);
    });
  });
}

function describeActors(ctx: StoreContext): void {
  describe("actors and runs", () => {
    it("creates an actor at revision 0 with every field as given", async () => {
      const { store } = ctx;
      const actor = newActor("acme", { name: "child-a", parentId: "act_parent", rootId: "act_root", depth: 2 });
      const { actor: created, created: isNew } = await store.createActor(actor);
      expect(isNew).toBe(true);
      const expected = {
        ...actor,
        status: "active",
        revision: 0,
        snapshot: undefined,
        snapshotSeq: 0,
        lastHash: "",
        output: undefined,
        error: undefined,
        childCount: 0,
        updatedAt: actor.createdAt,
      };
      expect(created).toStrictEqual(expected);
      expect(await store.getActor("acme", actor.actorId)).toStrictEqual(expected);
      expect(await store.getActor("acme", "act_missing")).toBeUndefined();
    });

    it("refuses a second actor with the same id", async () => {
      const { store } = ctx;
      const actor = newActor("acme");
      await store.createActor(actor);
      await expect(store.createActor({ ...actor, agentType: "other" })).rejects.toMatchObject({ code: "ERR_ACTOR_EXISTS" });
      expect((await store.getActor("acme", actor.actorId))?.agentType).toBe("support-desk");
    });

    it("records no run key when the actor id of a new run exists already", async () => {
      const { store } = ctx;
      const actor = newActor("acme");
      await store.createActor(actor);
      await expect(store.createActor({ ...actor, agentType: "other" }, { runKey: "ticket-7", inputHash: "ih" })).rejects.toMatchObject({
        code: "ERR_ACTOR_EXISTS",
      });
      expect(await store.findRun("acme", "ticket-7")).toBeUndefined();
      const fresh = newActor("acme");
      const made = await store.createActor(fresh, { runKey: "ticket-7", inputHash: "ih" });
      expect(made).toMatchObject({ created: true, actor: { actorId: fresh.actorId } });
    });

    it("creates a run once per run key and returns the same actor after", async () => {
      const { store } = ctx;
      const first = newActor("acme");
      const made = await store.createActor(first, { runKey: "ticket-42", inputHash: "ih-1" });
      expect(made.created).toBe(true);
      const again = await store.createActor(newActor("acme"), { runKey: "ticket-42", inputHash: "ih-1" });
      expect(again.created).toBe(false);
      expect(again.actor).toStrictEqual(made.actor);
      expect((await store.findRun("acme", "ticket-42"))?.actorId).toBe(first.actorId);
      expect(await store.findRun("acme", "ticket-43")).toBeUndefined();
      expect(await store.listActors("acme", { limit: 10 })).toHaveLength(1);
    });

    it("refuses a run key reused with different input, and creates nothing", async () => {
      const { store } = ctx;
      await store.createActor(newActor("acme"), { runKey: "ticket-42", inputHash: "ih-1" });
      const second = newActor("acme");
      const attempt = store.createActor(second, { runKey: "ticket-42", inputHash: "ih-2" });
      await expect(attempt).rejects.toBeInstanceOf(AgentError);
      await expect(store.createActor(second, { runKey: "ticket-42", inputHash: "ih-2" })).rejects.toMatchObject({
        code: "ERR_IDEMPOTENCY_MISMATCH",
      });
      await expect(store.createActor(second, { runKey: "ticket-42" })).rejects.toMatchObject({ code: "ERR_IDEMPOTENCY_MISMATCH" });
      expect(await store.getActor("acme", second.actorId)).toBeUndefined();
    });

    it("keeps run keys per tenant", async () => {
      const { store } = ctx;
      const a = await store.createActor(newActor("acme"), { runKey: "ticket-42", inputHash: "x" });
      const b = await store.createActor(newActor("globex"), { runKey: "ticket-42", inputHash: "y" });
      expect(b.created).toBe(true);
      expect((await store.findRun("acme", "ticket-42"))?.actorId).toBe(a.actor.actorId);
      expect((await store.findRun("globex", "ticket-42"))?.actorId).toBe(b.actor.actorId);
    });

    it("lists actors by parent and status, oldest first, at most limit", async () => {
      const { store } = ctx;
      const parent = newActor("acme", { createdAt: 100 });
      await store.createActor(parent);
      const children = [3, 1, 2].map((n) => newActor("acme", { actorId: `child_${n}`, parentId: parent.actorId, createdAt: 100 + n }));
      for (const child of children) await store.createActor(child);
      const byParent = await store.listActors("acme", { parentId: parent.actorId, limit: 10 });
      expect(byParent.map((a) => a.actorId)).toEqual(["child_1", "child_2", "child_3"]);
      expect((await store.listActors("acme", { parentId: parent.actorId, limit: 2 })).map((a) => a.actorId)).toEqual([
        "child_1",
        "child_2",
      ]);
      expect(await store.listActors("acme", { limit: 0 })).toEqual([]);
      expect(await store.listActors("acme", { limit: 10 })).toHaveLength(4);
      await commitOk(
        store,
        commit("acme", "child_2", 0, {
          actor: { status: "completed", output: 7, error: undefined, snapshot: undefined, childCount: 0, updatedAt: 5 },
          finalize: true,
        }),
      );
      expect((await store.listActors("acme", { status: "completed", limit: 10 })).map((a) => a.actorId)).toEqual(["child_2"]);
      expect((await store.listActors("acme", { status: "active", parentId: parent.actorId, limit: 10 })).map((a) => a.actorId)).toEqual([
        "child_1",
        "child_3",
      ]);
      expect(await store.listActors("globex", { limit: 10 })).toEqual([]);
    });

    it("stores JSON exactly, and keeps null apart from undefined", async () => {
      const { store } = ctx;
      const input = {
        text: 'naïve ☕ \u{1F600} "quoted" \\ back',
        big: 9007199254740991,
        neg: -0.125,
        empty: {},
        list: [[], {}, null, "null"],
      };
      const actor = await createStarted(store, "acme", { input });
      expect((await store.getActor("acme", actor.actorId))?.input).toStrictEqual(input);
      await commitOk(
        store,
        commit("acme", actor.actorId, 1, {
          actor: { status: "completed", output: null, error: undefined, snapshot: null, childCount: 0, updatedAt: 9 },
        }),
      );
      const done = await store.getActor("acme", actor.actorId);
      expect(done?.output).toBeNull();
      expect(done?.snapshot).toBeNull();
      expect(done?.error).toBeUndefined();
      const scalar = await createStarted(store, "acme", { input: "just a string" });
      expect((await store.getActor("acme", scalar.actorId))?.input).toBe("just a string");
    });

    it("deep-copies: mutating what went in or came out changes nothing stored", async () => {
      const { store } = ctx;
      const actor = newActor("acme", { input: { items: [1, 2] } });
      const { actor: created } = await store.createActor(actor);
      (actor.input as { items: number[] }).items.push(3);
      (created.input as { items: number[] }).items.push(4);
      const step = commit("acme", actor.actorId, 0, {
        actor: { status: "active", output: undefined, error: undefined, snapshot: { memory: ["x"] }, childCount: 0, updatedAt: 5 },
      });
      await commitOk(store, step);
      (step.actor.snapshot as { memory: string[] }).memory.push("y");
      (step.entry.event as { n: number }).n = 99;
      const read = await store.getActor("acme", actor.actorId);
      expect(read?.input).toStrictEqual({ items: [1, 2] });
      expect(read?.snapshot).toStrictEqual({ memory: ["x"] });
      (read?.snapshot as { memory: string[] }).memory.push("z");
      expect((await store.getActor("acme", actor.actorId))?.snapshot).toStrictEqual({ memory: ["x"] });
      expect((await store.readJournal("acme", actor.actorId, { limit: 5 }))[0]?.event).toStrictEqual({ type: "tessera.init", n: 1 });
    });

    it("reads the journal in order after a seq, at most limit", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      for (let revision = 1; revision < 6; revision += 1) await commitOk(store, commit("acme", actor.actorId, revision));
      const all = await store.readJournal("acme", actor.actorId, { limit: 100 });
      expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(all[2]).toStrictEqual(entry("acme", actor.actorId, 3));
      expect((await store.readJournal("acme", actor.actorId, { afterSeq: 2, limit: 2 })).map((e) => e.seq)).toEqual([3, 4]);
      expect(await store.readJournal("acme", actor.actorId, { afterSeq: 6, limit: 10 })).toEqual([]);
      expect(await store.readJournal("acme", actor.actorId, { limit: 0 })).toEqual([]);
      expect(await store.readJournal("acme", "act_missing", { limit: 10 })).toEqual([]);
    });
  });
}

function describeMailbox(ctx: StoreContext): void {
  describe("mailbox", () => {
    it("enqueues once per message id and returns pending messages in arrival order", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      // Same createdAt on purpose: order must not depend on the clock or on the ids.
      const ids = ["m_zz", "m_aa", "m_mm", "m_bb"];
      for (const messageId of ids)
        expect(await store.enqueueMessage(message("acme", actor.actorId, messageId), { mailboxDepthMax: 10 })).toEqual({ created: true });
      expect(
        await store.enqueueMessage(message("acme", actor.actorId, "m_aa", { event: { type: "other" } }), { mailboxDepthMax: 10 }),
      ).toEqual({ created: false });
      const pending = await store.pendingMessages("acme", actor.actorId, 10);
      expect(pending.map((m) => m.messageId)).toEqual(ids);
      expect(pending[1]).toStrictEqual({ ...message("acme", actor.actorId, "m_aa"), appliedSeq: undefined });
      expect((await store.pendingMessages("acme", actor.actorId, 2)).map((m) => m.messageId)).toEqual(["m_zz", "m_aa"]);
      expect(await store.getMessage("acme", actor.actorId, "m_mm")).toStrictEqual({
        ...message("acme", actor.actorId, "m_mm"),
        appliedSeq: undefined,
      });
      expect(await store.getMessage("acme", actor.actorId, "m_missing")).toBeUndefined();
    });

    it("refuses a message for an actor that does not exist or is finished", async () => {
      const { store } = ctx;
      await expect(store.enqueueMessage(message("acme", "act_missing", "m1"), { mailboxDepthMax: 10 })).rejects.toMatchObject({
        code: "ERR_ACTOR_NOT_FOUND",
      });
      const actor = await createStarted(store, "acme");
      await store.enqueueMessage(message("acme", actor.actorId, "m1"), { mailboxDepthMax: 10 });
      await commitOk(
        store,
        commit("acme", actor.actorId, 1, {
          actor: { status: "completed", output: "done", error: undefined, snapshot: undefined, childCount: 0, updatedAt: 9 },
          finalize: true,
        }),
      );
      await expect(store.enqueueMessage(message("acme", actor.actorId, "m2"), { mailboxDepthMax: 10 })).rejects.toMatchObject({
        code: "ERR_ACTOR_NOT_ACTIVE",
      });
      // A message seen before is reported as such even now.
      expect(await store.enqueueMessage(message("acme", actor.actorId, "m1"), { mailboxDepthMax: 10 })).toEqual({ created: false });
    });

    it("refuses a message beyond mailboxDepthMax pending, and takes it once one is applied", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      for (const messageId of ["m1", "m2", "m3"])
        await store.enqueueMessage(message("acme", actor.actorId, messageId), { mailboxDepthMax: 3 });
      const full = store.enqueueMessage(message("acme", actor.actorId, "m4"), { mailboxDepthMax: 3 });
      await expect(full).rejects.toBeInstanceOf(LimitError);
      await expect(store.enqueueMessage(message("acme", actor.actorId, "m4"), { mailboxDepthMax: 3 })).rejects.toMatchObject({
        code: "ERR_MAILBOX_FULL",
        details: { limit: "mailboxDepthMax", max: 3, actual: 3 },
      });
      expect(await store.enqueueMessage(message("acme", actor.actorId, "m2"), { mailboxDepthMax: 3 })).toEqual({ created: false });
      await commitOk(store, commit("acme", actor.actorId, 1, { appliedMessageId: "m1" }));
      expect(await store.enqueueMessage(message("acme", actor.actorId, "m4"), { mailboxDepthMax: 3 })).toEqual({ created: true });
      expect((await store.pendingMessages("acme", actor.actorId, 10)).map((m) => m.messageId)).toEqual(["m2", "m3", "m4"]);
    });

    it("marks the applied message with the step's seq, once", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      await store.enqueueMessage(message("acme", actor.actorId, "m1"), { mailboxDepthMax: 10 });
      await commitOk(store, commit("acme", actor.actorId, 1, { appliedMessageId: "m1" }));
      expect((await store.getMessage("acme", actor.actorId, "m1"))?.appliedSeq).toBe(2);
      expect(await store.pendingMessages("acme", actor.actorId, 10)).toEqual([]);
      const [again] = await store.commitSteps([commit("acme", actor.actorId, 2, { appliedMessageId: "m1" })]);
      expect(outcomeError(again)?.code).toBe("ERR_SNAPSHOT_CONFLICT");
      const [unknown] = await store.commitSteps([commit("acme", actor.actorId, 2, { appliedMessageId: "m_never_sent" })]);
      expect(outcomeError(unknown)?.code).toBe("ERR_SNAPSHOT_CONFLICT");
      const read = await store.getActor("acme", actor.actorId);
      expect(read?.revision).toBe(2);
      expect(await store.readJournal("acme", actor.actorId, { afterSeq: 2, limit: 10 })).toEqual([]);
    });
  });
}

function describeClaimsAndTenants(ctx: StoreContext): void {
  describe("claims and tenants", () => {
    it("claims every active actor with epoch + 1, and a stale epoch can no longer commit", async () => {
      const { store } = ctx;
      const a = await createStarted(store, "acme", { actorId: "act_a" });
      const b = await createStarted(store, "globex", { actorId: "act_b" });
      const done = await createStarted(store, "acme", { actorId: "act_c" });
      await commitOk(
        store,
        commit("acme", done.actorId, 1, {
          actor: {
            status: "failed",
            output: undefined,
            error: { code: "ERR_X", message: "boom" },
            snapshot: undefined,
            childCount: 0,
            updatedAt: 9,
          },
          finalize: true,
        }),
      );
      const claimed = await store.claimActiveActors("node-2", 100);
      expect(claimed).toEqual([
        { tenantId: "acme", actorId: "act_a", epoch: 2 },
        { tenantId: "globex", actorId: "act_b", epoch: 2 },
      ]);
      expect((await store.getActor("acme", a.actorId))?.ownerNode).toBe("node-2");
      expect((await store.getActor("acme", done.actorId))?.epoch).toBe(1);
      expect((await store.getActor("acme", done.actorId))?.error).toStrictEqual({ code: "ERR_X", message: "boom" });
      const [stale] = await store.commitSteps([commit("acme", a.actorId, 1, { epoch: 1 })]);
      const error = outcomeError(stale);
      expect(error?.code).toBe("ERR_SNAPSHOT_CONFLICT");
      expect(error).toMatchObject({ agentId: a.actorId, expectedRevision: 1, actualRevision: 1 });
      expect(await store.readJournal("acme", a.actorId, { afterSeq: 1, limit: 10 })).toEqual([]);
      await commitOk(store, commit("acme", a.actorId, 1, { epoch: 2 }));
      const again = await store.claimActiveActors("node-3", 1);
      expect(again).toEqual([{ tenantId: "acme", actorId: "act_a", epoch: 3 }]);
      expect((await store.getActor("globex", b.actorId))?.epoch).toBe(2);
      expect(await store.claimActiveActors("node-3", 0)).toEqual([]);
    });

    it("keeps two tenants apart even for the same actor id", async () => {
      const { store } = ctx;
      const shared = "act_same";
      await createStarted(store, "acme", { actorId: shared, input: { who: "acme" } });
      await createStarted(store, "globex", { actorId: shared, input: { who: "globex" } });
      await store.enqueueMessage(message("acme", shared, "m1"), { mailboxDepthMax: 10 });
      await commitOk(store, commit("acme", shared, 1, { blobs: [{ blobId: "b1", data: "acme-secret" }] }));
      expect((await store.getActor("acme", shared))?.revision).toBe(2);
      expect((await store.getActor("globex", shared))?.revision).toBe(1);
      expect((await store.getActor("globex", shared))?.input).toStrictEqual({ who: "globex" });
      expect(await store.readJournal("globex", shared, { afterSeq: 1, limit: 10 })).toEqual([]);
      expect(await store.pendingMessages("globex", shared, 10)).toEqual([]);
      expect(await store.getMessage("globex", shared, "m1")).toBeUndefined();
      expect(await store.getBlob("globex", "b1")).toBeUndefined();
      expect(await store.getBlob("acme", "b1")).toBe("acme-secret");
      // A commit guarded by the other tenant's revision is refused.
      const [cross] = await store.commitSteps([commit("globex", shared, 2)]);
      expect(outcomeError(cross)?.code).toBe("ERR_SNAPSHOT_CONFLICT");
      const [crossMessage] = await store.commitSteps([commit("globex", shared, 1, { appliedMessageId: "m1" })]);
      expect(outcomeError(crossMessage)?.code).toBe("ERR_SNAPSHOT_CONFLICT");
      expect((await store.listActors("globex", { limit: 10 })).map((a) => a.input)).toEqual([{ who: "globex" }]);
    });
  });
}
