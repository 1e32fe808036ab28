import { describe, expect, it } from "vitest";
import type { StoreContext } from "./store.suite.js";
import { commit, commitOk, completed, createStarted, effect, message, timer } from "./store-fixtures.js";

/** @param ctx - the suite's store */
export function describeEffectsAndTimers(ctx: StoreContext): void {
  describe("effects, timers, finalize and blobs", () => {
    it("stores effects in creation order and filters them by state", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      const later = effect("acme", actor.actorId, "e_a", 3, {
        kind: "model",
        name: "gpt",
        idempotent: false,
        nextAttemptAt: 123,
        args: { prompt: ["x"] },
      });
      await commitOk(
        store,
        commit("acme", actor.actorId, 1, {
          effects: [effect("acme", actor.actorId, "e_z", 2), effect("acme", actor.actorId, "e_m", 2, { state: "running", attempts: 1 })],
        }),
      );
      await commitOk(store, commit("acme", actor.actorId, 2, { effects: [later] }));
      expect((await store.listEffects("acme", actor.actorId)).map((e) => e.effectId)).toEqual(["e_z", "e_m", "e_a"]);
      expect((await store.listEffects("acme", actor.actorId, { states: ["running"] })).map((e) => e.effectId)).toEqual(["e_m"]);
      expect((await store.listEffects("acme", actor.actorId, { states: ["planned", "running"] })).map((e) => e.effectId)).toEqual([
        "e_z",
        "e_m",
        "e_a",
      ]);
      expect(await store.listEffects("acme", actor.actorId, { states: [] })).toEqual([]);
      expect(await store.getEffect("acme", actor.actorId, "e_a")).toStrictEqual(later);
      expect(await store.getEffect("acme", actor.actorId, "e_missing")).toBeUndefined();
      expect(await store.listEffects("globex", actor.actorId)).toEqual([]);
    });

    it("records an effect outcome with the seq of the step that applied it", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      await commitOk(
        store,
        commit("acme", actor.actorId, 1, { effects: [effect("acme", actor.actorId, "e1", 2, { state: "running", attempts: 1 })] }),
      );
      const usage = { inputTokens: 120, outputTokens: 30 };
      await commitOk(
        store,
        commit("acme", actor.actorId, 2, {
          effectOutcome: { effectId: "e1", state: "completed", result: null, resultRef: "blob_1", error: undefined, usage, attempts: 2 },
          blobs: [{ blobId: "blob_1", data: "x".repeat(20_000) }],
        }),
      );
      expect(await store.getEffect("acme", actor.actorId, "e1")).toMatchObject({
        state: "completed",
        result: null,
        resultRef: "blob_1",
        usage,
        attempts: 2,
        completedSeq: 3,
        updatedAt: 1_003,
      });
      expect(await store.getBlob("acme", "blob_1")).toBe("x".repeat(20_000));
      await commitOk(store, commit("acme", actor.actorId, 3, { effects: [effect("acme", actor.actorId, "e2", 4)] }));
      await commitOk(
        store,
        commit("acme", actor.actorId, 4, {
          effectOutcome: {
            effectId: "e2",
            state: "failed",
            result: undefined,
            resultRef: undefined,
            error: { code: "ERR_TOOL_FAILED", message: "no", details: { status: 500 } },
            usage: undefined,
            attempts: 5,
          },
        }),
      );
      const failed = await store.getEffect("acme", actor.actorId, "e2");
      expect(failed).toMatchObject({
        state: "failed",
        attempts: 5,
        completedSeq: 5,
        error: { code: "ERR_TOOL_FAILED", message: "no", details: { status: 500 } },
      });
      expect(failed?.result).toBeUndefined();
    });

    it("updates an effect outside a step only from the given states and epoch", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme", { epoch: 2 });
      await commitOk(store, commit("acme", actor.actorId, 1, { epoch: 2, effects: [effect("acme", actor.actorId, "e1", 2)] }));
      const update = (patch: Parameters<typeof store.updateEffect>[3], guard: Parameters<typeof store.updateEffect>[4]) =>
        store.updateEffect("acme", actor.actorId, "e1", patch, guard);
      expect(await update({ state: "running", attempts: 1, updatedAt: 10 }, { fromStates: ["running"] })).toBe(false);
      expect(await update({ state: "running", attempts: 1, updatedAt: 10 }, { fromStates: ["planned"], epoch: 1 })).toBe(false);
      expect(
        await update({ state: "running", attempts: 1, nextAttemptAt: 500, updatedAt: 10 }, { fromStates: ["planned"], epoch: 2 }),
      ).toBe(true);
      expect(await store.getEffect("acme", actor.actorId, "e1")).toMatchObject({
        state: "running",
        attempts: 1,
        nextAttemptAt: 500,
        updatedAt: 10,
      });
      expect(
        await update({ attempts: 2, error: { code: "ERR_TOOL_TIMEOUT", message: "slow" }, updatedAt: 11 }, { fromStates: ["running"] }),
      ).toBe(true);
      expect(await store.getEffect("acme", actor.actorId, "e1")).toMatchObject({
        state: "running",
        attempts: 2,
        nextAttemptAt: 500,
        error: { code: "ERR_TOOL_TIMEOUT", message: "slow" },
      });
      expect(
        await update(
          { state: "unknown", nextAttemptAt: undefined, error: undefined, updatedAt: 12 },
          { fromStates: ["running", "planned"] },
        ),
      ).toBe(true);
      const read = await store.getEffect("acme", actor.actorId, "e1");
      expect(read).toMatchObject({ state: "unknown", attempts: 2, updatedAt: 12 });
      expect(read?.nextAttemptAt).toBeUndefined();
      expect(read?.error).toBeUndefined();
      expect(await update({ state: "running", updatedAt: 13 }, { fromStates: [] })).toBe(false);
      expect(
        await store.updateEffect("acme", actor.actorId, "e_missing", { state: "running", updatedAt: 1 }, { fromStates: ["planned"] }),
      ).toBe(false);
      expect(await store.updateEffect("globex", actor.actorId, "e1", { state: "running", updatedAt: 1 }, { fromStates: ["unknown"] })).toBe(
        false,
      );
      await store.claimActiveActors("node-2", 10);
      expect(await update({ state: "running", updatedAt: 14 }, { fromStates: ["unknown"], epoch: 2 })).toBe(false);
      expect(await update({ state: "running", updatedAt: 14 }, { fromStates: ["unknown"], epoch: 3 })).toBe(true);
    });

    it("arms, re-arms and clears timers", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      await commitOk(
        store,
        commit("acme", actor.actorId, 1, {
          timersSet: [
            timer("acme", actor.actorId, "t_b", 2, 900),
            timer("acme", actor.actorId, "t_a", 2, 500),
            timer("acme", actor.actorId, "t_c", 2, 700),
          ],
        }),
      );
      expect((await store.listTimers("acme", actor.actorId)).map((t) => t.timerId)).toEqual(["t_a", "t_c", "t_b"]);
      await commitOk(
        store,
        commit("acme", actor.actorId, 2, {
          timersCleared: ["t_a", "t_b", "t_never"],
          timersSet: [timer("acme", actor.actorId, "t_b", 3, 100)],
        }),
      );
      const timers = await store.listTimers("acme", actor.actorId);
      expect(timers).toStrictEqual([timer("acme", actor.actorId, "t_b", 3, 100), timer("acme", actor.actorId, "t_c", 2, 700)]);
      expect(await store.listTimers("globex", actor.actorId)).toEqual([]);
    });

    it("finalize cancels open effects, keeps finished ones, and clears every timer", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      const states = ["planned", "running", "awaiting-approval", "completed", "failed", "unknown"] as const;
      await commitOk(
        store,
        commit("acme", actor.actorId, 1, {
          effects: states.map((state) => effect("acme", actor.actorId, `e_${state}`, 2, { state })),
          timersSet: [timer("acme", actor.actorId, "t1", 2, 100), timer("acme", actor.actorId, "t2", 2, 200)],
        }),
      );
      const other = await createStarted(store, "acme");
      await commitOk(
        store,
        commit("acme", other.actorId, 1, {
          effects: [effect("acme", other.actorId, "e_planned", 2)],
          timersSet: [timer("acme", other.actorId, "t1", 2, 100)],
        }),
      );
      await commitOk(
        store,
        commit("acme", actor.actorId, 2, {
          actor: {
            status: "completed",
            output: { answer: 42 },
            error: undefined,
            snapshot: { final: true },
            childCount: 0,
            updatedAt: 8_000,
          },
          entry: { ...commit("acme", actor.actorId, 2).entry, status: "completed" },
          effects: [effect("acme", actor.actorId, "e_new", 3)],
          timersSet: [timer("acme", actor.actorId, "t3", 3, 300)],
          finalize: true,
        }),
      );
      const effects = await store.listEffects("acme", actor.actorId);
      expect(Object.fromEntries(effects.map((e) => [e.effectId, e.state]))).toEqual({
        e_planned: "cancelled",
        e_running: "cancelled",
        "e_awaiting-approval": "cancelled",
        e_completed: "completed",
        e_failed: "failed",
        e_unknown: "unknown",
        e_new: "cancelled",
      });
      expect(effects.find((e) => e.effectId === "e_running")?.updatedAt).toBe(8_000);
      expect(effects.find((e) => e.effectId === "e_completed")?.updatedAt).toBe(2_000);
      expect(await store.listTimers("acme", actor.actorId)).toEqual([]);
      expect(await store.getActor("acme", actor.actorId)).toMatchObject({ status: "completed", output: { answer: 42 }, revision: 3 });
      expect((await store.readJournal("acme", actor.actorId, { afterSeq: 2, limit: 1 }))[0]?.status).toBe("completed");
      expect((await store.getEffect("acme", other.actorId, "e_planned"))?.state).toBe("planned");
      expect(await store.listTimers("acme", other.actorId)).toHaveLength(1);
    });

    it("one round mixes a finalize without an outcome, an outcome without a finalize, and steps with and without a message", async () => {
      const { store } = ctx;
      const [ending, working, messaged] = [
        await createStarted(store, "acme"),
        await createStarted(store, "acme"),
        await createStarted(store, "acme"),
      ];
      for (const actor of [ending, working]) {
        await commitOk(
          store,
          commit("acme", actor.actorId, 1, { effects: [effect("acme", actor.actorId, "e_open", 2, { state: "awaiting-approval" })] }),
        );
      }
      await store.enqueueMessage(message("acme", messaged.actorId, "m1"), { mailboxDepthMax: 10 });
      const outcomes = await store.commitSteps([
        commit("acme", ending.actorId, 2, {
          actor: {
            status: "failed",
            output: undefined,
            error: { code: "ERR_STOP", message: "stop" },
            snapshot: undefined,
            childCount: 0,
            updatedAt: 7_000,
          },
          finalize: true,
        }),
        commit("acme", working.actorId, 2, {
          effectOutcome: completed("e_open", { state: "failed", result: undefined, attempts: 2 }),
        }),
        commit("acme", messaged.actorId, 1, { appliedMessageId: "m1" }),
      ]);
      expect(outcomes.map((outcome) => outcome.ok)).toEqual([true, true, true]);
      expect(await store.getEffect("acme", ending.actorId, "e_open")).toMatchObject({ state: "cancelled", updatedAt: 7_000 });
      expect(await store.getEffect("acme", working.actorId, "e_open")).toMatchObject({ state: "failed", attempts: 2, completedSeq: 3 });
      expect(await store.pendingMessages("acme", messaged.actorId, 10)).toEqual([]);
    });

    it("a finalizing step that records an effect's outcome keeps that outcome and cancels the other open effects", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      await commitOk(
        store,
        commit("acme", actor.actorId, 1, {
          effects: ["e_last", "e_other"].map((id) => effect("acme", actor.actorId, id, 2, { state: "running" })),
        }),
      );
      await commitOk(
        store,
        commit("acme", actor.actorId, 2, {
          actor: { status: "completed", output: null, error: undefined, snapshot: undefined, childCount: 0, updatedAt: 9_000 },
          effectOutcome: completed("e_last"),
          finalize: true,
        }),
      );
      const last = await store.getEffect("acme", actor.actorId, "e_last");
      expect(last).toMatchObject({ state: "completed", result: { ok: true }, completedSeq: 3, updatedAt: 9_000 });
      expect(await store.getEffect("acme", actor.actorId, "e_other")).toMatchObject({ state: "cancelled", updatedAt: 9_000 });
    });

    it("keeps the first blob under an id and scopes blobs by tenant", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      await commitOk(
        store,
        commit("acme", actor.actorId, 1, {
          blobs: [
            { blobId: "b1", data: "first" },
            { blobId: "b1", data: "dup" },
            { blobId: "b2", data: "" },
          ],
        }),
      );
      await commitOk(store, commit("acme", actor.actorId, 2, { blobs: [{ blobId: "b1", data: "second" }] }));
      expect(await store.getBlob("acme", "b1")).toBe("first");
      expect(await store.getBlob("acme", "b2")).toBe("");
      expect(await store.getBlob("acme", "b3")).toBeUndefined();
      expect(await store.getBlob("globex", "b1")).toBeUndefined();
    });
  });
}
