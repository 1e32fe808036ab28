import { describe, expect, it } from "vitest";
import { InvariantError } from "../../core/assert.js";
import { SnapshotConflictError, StoreError } from "../../core/errors.js";
import type { NewActor, StepCommit } from "../../core/ports/store.js";
import type { StoreContext } from "./store.suite.js";
import {
  chain,
  commit,
  commitOk,
  createStarted,
  effect,
  entry,
  getChainOf,
  message,
  newActor,
  outcomeError,
  timer,
} from "./store-fixtures.js";

/** Everything a step may write besides the actor row, for "nothing was written" checks. */
function fullCommit(
  tenantId: string,
  actorId: string,
  expectedRevision: number,
  tag: string,
  overrides: Partial<StepCommit> = {},
): StepCommit {
  const seq = expectedRevision + 1;
  return commit(tenantId, actorId, expectedRevision, {
    effects: [effect(tenantId, actorId, `e_${tag}`, seq)],
    timersSet: [timer(tenantId, actorId, `t_${tag}`, seq, 50_000)],
    messages: [message(tenantId, `inbox_${tag}`, `m_${tag}`, { sender: actorId })],
    children: [newActor(tenantId, { actorId: `child_${tag}`, parentId: actorId, rootId: actorId, depth: 1 })],
    blobs: [{ blobId: `b_${tag}`, data: `data-${tag}` }],
    chains: [chain(`ch_${tag}`)],
    actor: { status: "active", output: undefined, error: undefined, snapshot: { tag }, childCount: 1, updatedAt: 7_000 + seq },
    ...overrides,
  });
}

async function expectNothingOf(ctx: StoreContext, tenantId: string, actorId: string, tag: string, revision: number): Promise<void> {
  const { store } = ctx;
  const actor = await store.getActor(tenantId, actorId);
  expect(actor?.revision).toBe(revision);
  expect(actor?.childCount).toBe(0);
  expect(await store.readJournal(tenantId, actorId, { afterSeq: revision, limit: 10 })).toEqual([]);
  expect(await store.getEffect(tenantId, actorId, `e_${tag}`)).toBeUndefined();
  expect(await store.listTimers(tenantId, actorId)).toEqual([]);
  expect(await store.getMessage(tenantId, `inbox_${tag}`, `m_${tag}`)).toBeUndefined();
  expect(await store.getActor(tenantId, `child_${tag}`)).toBeUndefined();
  expect(await store.getBlob(tenantId, `b_${tag}`)).toBeUndefined();
  expect(await getChainOf(store)(tenantId, `ch_${tag}`)).toBeUndefined();
}

/** @param ctx - the suite's store */
export function describeCommitSteps(ctx: StoreContext): void {
  describe("commitSteps", () => {
    it("commits a step: actor row, journal, snapshot, and revision = seq", async () => {
      const { store } = ctx;
      const actor = newActor("acme");
      await store.createActor(actor);
      await commitOk(store, fullCommit("acme", actor.actorId, 0, "s1"));
      const read = await store.getActor("acme", actor.actorId);
      expect(read).toMatchObject({
        revision: 1,
        snapshot: { tag: "s1" },
        snapshotSeq: 1,
        lastHash: `h-${actor.actorId}-1`,
        childCount: 1,
        updatedAt: 7_001,
      });
      expect(await store.readJournal("acme", actor.actorId, { limit: 10 })).toStrictEqual([entry("acme", actor.actorId, 1)]);
      // A step without a snapshot keeps the last one; a later snapshot replaces it.
      await commitOk(store, commit("acme", actor.actorId, 1));
      expect(await store.getActor("acme", actor.actorId)).toMatchObject({
        revision: 2,
        snapshot: { tag: "s1" },
        snapshotSeq: 1,
        childCount: 0,
      });
      await commitOk(
        store,
        commit("acme", actor.actorId, 2, {
          actor: { status: "active", output: undefined, error: undefined, snapshot: { tag: "s3" }, childCount: 0, updatedAt: 1 },
        }),
      );
      expect(await store.getActor("acme", actor.actorId)).toMatchObject({
        revision: 3,
        snapshot: { tag: "s3" },
        snapshotSeq: 3,
        updatedAt: 1,
      });
    });

    it("reads an actor with the state value of its latest step in one call", async () => {
      const { store } = ctx;
      expect(store.getActorState).toBeTypeOf("function");
      const actor = newActor("acme");
      await store.createActor(actor);
      expect(await store.getActorState!("acme", actor.actorId)).toStrictEqual({
        actor: await store.getActor("acme", actor.actorId),
        stateValue: null,
      });
      await commitOk(store, fullCommit("acme", actor.actorId, 0, "s1"));
      await commitOk(store, commit("acme", actor.actorId, 1));
      const read = await store.getActorState!("acme", actor.actorId);
      expect(read?.actor).toStrictEqual(await store.getActor("acme", actor.actorId));
      expect(read?.stateValue).toStrictEqual({ step: "2" });
      expect(await store.getActorState!("acme", "act_missing")).toBeUndefined();
      expect(await store.getActorState!("globex", actor.actorId)).toBeUndefined();
    });

    it("refuses a stale revision with SnapshotConflictError and writes nothing of it", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      const [outcome] = await store.commitSteps([
        fullCommit("acme", actor.actorId, 0, "stale", { entry: entry("acme", actor.actorId, 1, { hash: "other" }) }),
      ]);
      const error = outcomeError(outcome);
      expect(error).toBeInstanceOf(SnapshotConflictError);
      expect(error).toMatchObject({ code: "ERR_SNAPSHOT_CONFLICT", agentId: actor.actorId, expectedRevision: 0, actualRevision: 1 });
      await expectNothingOf(ctx, "acme", actor.actorId, "stale", 1);
      expect((await store.readJournal("acme", actor.actorId, { limit: 10 }))[0]?.hash).toBe(`h-${actor.actorId}-1`);
    });

    it("refuses a stale epoch and writes nothing of it", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme", { epoch: 4 });
      const [outcome] = await store.commitSteps([fullCommit("acme", actor.actorId, 1, "epoch", { epoch: 3 })]);
      expect(outcomeError(outcome)).toMatchObject({ code: "ERR_SNAPSHOT_CONFLICT", expectedRevision: 1, actualRevision: 1 });
      await expectNothingOf(ctx, "acme", actor.actorId, "epoch", 1);
      const [newer] = await store.commitSteps([commit("acme", actor.actorId, 1, { epoch: 5 })]);
      expect(outcomeError(newer)?.code).toBe("ERR_SNAPSHOT_CONFLICT");
    });

    it("refuses a commit for an actor that does not exist", async () => {
      const { store } = ctx;
      const [outcome] = await store.commitSteps([commit("acme", "act_missing", 0)]);
      expect(outcomeError(outcome)).toMatchObject({ code: "ERR_SNAPSHOT_CONFLICT", actualRevision: undefined });
    });

    it("group commit: one of three conflicts, the other two land", async () => {
      const { store } = ctx;
      const [a, b, c] = [await createStarted(store, "acme"), await createStarted(store, "acme"), await createStarted(store, "globex")];
      const outcomes = await store.commitSteps([
        fullCommit("acme", a.actorId, 1, "a"),
        fullCommit("acme", b.actorId, 0, "b"),
        fullCommit("globex", c.actorId, 1, "c"),
      ]);
      expect(outcomes[0]).toEqual({ ok: true });
      expect(outcomeError(outcomes[1])).toMatchObject({ code: "ERR_SNAPSHOT_CONFLICT", agentId: b.actorId });
      expect(outcomes[2]).toEqual({ ok: true });
      expect(outcomes).toHaveLength(3);
      await expectNothingOf(ctx, "acme", b.actorId, "b", 1);
      for (const [tenantId, actorId, tag] of [
        ["acme", a.actorId, "a"],
        ["globex", c.actorId, "c"],
      ] as const) {
        expect((await store.getActor(tenantId, actorId))?.revision).toBe(2);
        expect(await store.getEffect(tenantId, actorId, `e_${tag}`)).toBeDefined();
        expect(await store.listTimers(tenantId, actorId)).toHaveLength(1);
        expect(await store.getMessage(tenantId, `inbox_${tag}`, `m_${tag}`)).toBeDefined();
        expect((await store.getActor(tenantId, `child_${tag}`))?.parentId).toBe(actorId);
        expect(await store.getBlob(tenantId, `b_${tag}`)).toBe(`data-${tag}`);
        expect(await getChainOf(store)(tenantId, `ch_${tag}`)).toEqual(chain(`ch_${tag}`).tokens);
      }
    });

    it("applies several steps of one actor in one batch, in order", async () => {
      const { store } = ctx;
      const actor = newActor("acme");
      await store.createActor(actor);
      await store.enqueueMessage(message("acme", actor.actorId, "m1"), { mailboxDepthMax: 10 });
      const outcomes = await store.commitSteps([
        commit("acme", actor.actorId, 0),
        commit("acme", actor.actorId, 1, { appliedMessageId: "m1", effects: [effect("acme", actor.actorId, "e1", 2)] }),
        commit("acme", actor.actorId, 2, {
          effectOutcome: {
            effectId: "e1",
            state: "completed",
            result: { ok: 1 },
            resultRef: undefined,
            error: undefined,
            usage: undefined,
            attempts: 1,
          },
        }),
        commit("acme", actor.actorId, 2),
      ]);
      expect(outcomes.slice(0, 3)).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
      expect(outcomeError(outcomes[3])).toMatchObject({ code: "ERR_SNAPSHOT_CONFLICT", actualRevision: 3 });
      expect((await store.getActor("acme", actor.actorId))?.revision).toBe(3);
      expect(await store.getEffect("acme", actor.actorId, "e1")).toMatchObject({ state: "completed", completedSeq: 3, result: { ok: 1 } });
      expect((await store.getMessage("acme", actor.actorId, "m1"))?.appliedSeq).toBe(2);
    });

    it("lets a batch apply a message or start a child that an earlier commit of it created", async () => {
      const { store } = ctx;
      const parent = await createStarted(store, "acme");
      const peer = await createStarted(store, "acme");
      const child = newActor("acme", { actorId: "act_kid", parentId: parent.actorId, rootId: parent.actorId, depth: 1 });
      const outcomes = await store.commitSteps([
        commit("acme", parent.actorId, 1, {
          children: [child],
          messages: [message("acme", peer.actorId, "m_hello", { sender: parent.actorId })],
        }),
        commit("acme", peer.actorId, 1, { appliedMessageId: "m_hello" }),
        commit("acme", child.actorId, 0),
      ]);
      expect(outcomes).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
      expect((await store.getMessage("acme", peer.actorId, "m_hello"))?.appliedSeq).toBe(2);
      expect((await store.getActor("acme", child.actorId))?.revision).toBe(1);
    });

    it("delivers outbox messages in order, once per id, without checking the recipient", async () => {
      const { store } = ctx;
      const sender = await createStarted(store, "acme");
      const inbox = await createStarted(store, "acme");
      await store.enqueueMessage(message("acme", inbox.actorId, "m_first"), { mailboxDepthMax: 10 });
      const ids = ["m_9", "m_1", "m_5"];
      await commitOk(
        store,
        commit("acme", sender.actorId, 1, {
          messages: [
            ...ids.map((m) => message("acme", inbox.actorId, m, { sender: sender.actorId })),
            message("acme", inbox.actorId, "m_1", { event: "dup" }),
          ],
        }),
      );
      await commitOk(
        store,
        commit("acme", sender.actorId, 2, {
          messages: [message("acme", inbox.actorId, "m_first", { event: "dup" }), message("acme", inbox.actorId, "m_last")],
        }),
      );
      const pending = await store.pendingMessages("acme", inbox.actorId, 10);
      expect(pending.map((m) => m.messageId)).toEqual(["m_first", ...ids, "m_last"]);
      expect(pending[2]).toMatchObject({ sender: sender.actorId, event: { type: "user.message", text: "m_1" } });
      expect(pending[0]?.event).toStrictEqual({ type: "user.message", text: "m_first" });
      await commitOk(store, commit("acme", sender.actorId, 3, { messages: [message("acme", "act_nobody", "m_lost")] }));
      expect(await store.getMessage("acme", "act_nobody", "m_lost")).toBeDefined();
    });

    it("keeps batch order across senders to one mailbox, and a refused sender's messages out of it", async () => {
      const { store } = ctx;
      const inbox = await createStarted(store, "acme");
      const [a, b, c] = [await createStarted(store, "acme"), await createStarted(store, "acme"), await createStarted(store, "acme")];
      await store.enqueueMessage(message("acme", inbox.actorId, "m_before"), { mailboxDepthMax: 10 });
      const send = (from: string, ids: string[], event?: string) =>
        ids.map((id) => message("acme", inbox.actorId, id, { sender: from, ...(event === undefined ? {} : { event }) }));
      const outcomes = await store.commitSteps([
        commit("acme", a.actorId, 1, { messages: send(a.actorId, ["m_a1", "m_a2"]) }),
        commit("acme", b.actorId, 0, { messages: send(b.actorId, ["m_b1", "m_shared"], "from-b") }),
        commit("acme", c.actorId, 1, { messages: send(c.actorId, ["m_shared", "m_c2"], "from-c") }),
      ]);
      expect(outcomes[0]).toEqual({ ok: true });
      expect(outcomeError(outcomes[1])?.code).toBe("ERR_SNAPSHOT_CONFLICT");
      expect(outcomes[2]).toEqual({ ok: true });
      await store.enqueueMessage(message("acme", inbox.actorId, "m_after"), { mailboxDepthMax: 10 });
      const pending = await store.pendingMessages("acme", inbox.actorId, 10);
      expect(pending.map((m) => m.messageId)).toEqual(["m_before", "m_a1", "m_a2", "m_shared", "m_c2", "m_after"]);
      expect(pending.find((m) => m.messageId === "m_shared")).toMatchObject({ sender: c.actorId, event: "from-c" });
    });

    it("refuses a malformed commit with an InvariantError and commits the rest", async () => {
      const { store } = ctx;
      const a = await createStarted(store, "acme");
      const b = await createStarted(store, "acme");
      const gap = { ...commit("acme", a.actorId, 1), entry: entry("acme", a.actorId, 3) };
      const crossTenant = commit("acme", a.actorId, 1, { messages: [message("globex", "act_x", "m1")] });
      const outcomes = await store.commitSteps([gap, crossTenant, commit("acme", b.actorId, 1)]);
      expect(outcomeError(outcomes[0])).toBeInstanceOf(InvariantError);
      expect(outcomeError(outcomes[1])).toBeInstanceOf(InvariantError);
      expect(outcomes[2]).toEqual({ ok: true });
      expect((await store.getActor("acme", a.actorId))?.revision).toBe(1);
    });

    it("isolates a commit that breaks a unique key: it fails with StoreError, the others land", async () => {
      const { store } = ctx;
      const a = await createStarted(store, "acme");
      const b = await createStarted(store, "acme");
      const c = await createStarted(store, "acme");
      const outcomes = await store.commitSteps([
        commit("acme", a.actorId, 1),
        commit("acme", b.actorId, 1, { children: [newActor("acme", { actorId: c.actorId, parentId: b.actorId })] }),
        commit("acme", c.actorId, 1),
      ]);
      expect(outcomes[0]).toEqual({ ok: true });
      expect(outcomeError(outcomes[1])).toBeInstanceOf(StoreError);
      expect(outcomeError(outcomes[1])?.code).toBe("ERR_STORE");
      expect(outcomes[2]).toEqual({ ok: true });
      expect((await store.getActor("acme", b.actorId))?.revision).toBe(1);
      expect((await store.getActor("acme", c.actorId))?.parentId).toBeUndefined();
    });

    it("commits hundreds of steps in one batch", async () => {
      const { store } = ctx;
      const actors: NewActor[] = [];
      for (let i = 0; i < 200; i += 1) {
        const actor = newActor("acme", { actorId: `act_${String(i).padStart(3, "0")}` });
        await store.createActor(actor);
        actors.push(actor);
      }
      const outcomes = await store.commitSteps(
        actors.map((actor, i) =>
          commit("acme", actor.actorId, 0, {
            effects: [effect("acme", actor.actorId, "e1", 1), effect("acme", actor.actorId, "e2", 1)],
            timersSet: [timer("acme", actor.actorId, "t1", 1, 10_000 + i)],
            messages: [message("acme", actors[(i + 1) % actors.length]!.actorId, `m_from_${i}`)],
            actor: { status: "active", output: undefined, error: undefined, snapshot: { i }, childCount: 0, updatedAt: 5 },
          }),
        ),
      );
      expect(outcomes.every((o) => o.ok)).toBe(true);
      expect((await store.getActor("acme", "act_199"))?.snapshot).toStrictEqual({ i: 199 });
      expect((await store.listEffects("acme", "act_042")).map((e) => e.effectId)).toEqual(["e1", "e2"]);
      expect((await store.pendingMessages("acme", "act_000", 10)).map((m) => m.messageId)).toEqual(["m_from_199"]);
    });
  });
}
