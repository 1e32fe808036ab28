import { describe, expect, it } from "vitest";
import { SnapshotConflictError } from "../../core/errors.js";
import type { StoreContext } from "./store.suite.js";
import { type ActorKey, claimPageOf, commit, commitOk, createStarted, message, outcomeError } from "./store-fixtures.js";

/** @param ctx - the suite's store */
export function describeGuardsAndClaims(ctx: StoreContext): void {
  describe("conflict reasons", () => {
    it("gives every refusal a stable details.reason", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme", { epoch: 2 });
      await store.enqueueMessage(message("acme", actor.actorId, "m_done"), { mailboxDepthMax: 10 });
      await commitOk(store, commit("acme", actor.actorId, 1, { epoch: 2, appliedMessageId: "m_done" }));
      const outcomes = await store.commitSteps([
        commit("acme", "act_missing", 0),
        commit("acme", actor.actorId, 1, { epoch: 2 }),
        commit("acme", actor.actorId, 2, { epoch: 1 }),
        commit("acme", actor.actorId, 2, { epoch: 2, appliedMessageId: "m_done" }),
        commit("acme", actor.actorId, 2, { epoch: 2, appliedMessageId: "m_never_sent" }),
      ]);
      const errors = outcomes.map((outcome) => outcomeError(outcome));
      for (const error of errors) expect(error).toBeInstanceOf(SnapshotConflictError);
      expect(errors.map((error) => error?.details?.reason)).toEqual([
        "actor-not-found",
        "stale-revision",
        "stale-epoch",
        "message-already-applied",
        "message-not-found",
      ]);
      expect(errors[0]).toMatchObject({ agentId: "act_missing", expectedRevision: 0, actualRevision: undefined });
      expect(errors[1]).toMatchObject({ expectedRevision: 1, actualRevision: 2 });
      expect(errors[2]?.details).toMatchObject({ expectedEpoch: 1, actualEpoch: 2 });
      expect(errors[3]?.details).toMatchObject({ messageId: "m_done" });
      expect(errors[4]?.details).toMatchObject({ messageId: "m_never_sent" });
      expect((await store.getActor("acme", actor.actorId))?.revision).toBe(2);
    });

    it("reports the first reason that holds: revision before epoch before message", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme", { epoch: 3 });
      await store.enqueueMessage(message("acme", actor.actorId, "m1"), { mailboxDepthMax: 10 });
      await commitOk(store, commit("acme", actor.actorId, 1, { epoch: 3, appliedMessageId: "m1" }));
      const [staleBoth, staleEpochAndMessage] = await store.commitSteps([
        commit("acme", actor.actorId, 0, { epoch: 1, appliedMessageId: "m1" }),
        commit("acme", actor.actorId, 2, { epoch: 1, appliedMessageId: "m1" }),
      ]);
      expect(outcomeError(staleBoth)?.details?.reason).toBe("stale-revision");
      expect(outcomeError(staleEpochAndMessage)?.details?.reason).toBe("stale-epoch");
    });
  });

  describe("claiming active actors", () => {
    it("pages with afterKey: every active actor is claimed exactly once, in key order, each call at most limit", async () => {
      const { store } = ctx;
      const claim = claimPageOf(store);
      const keys: ActorKey[] = [];
      for (const tenantId of ["acme", "globex"]) {
        for (const n of [1, 2, 3, 4]) {
          const actor = await createStarted(store, tenantId, { actorId: `act_${n}` });
          keys.push({ tenantId, actorId: actor.actorId });
        }
      }
      const finished = await createStarted(store, "acme", { actorId: "act_5" });
      await commitOk(
        store,
        commit("acme", finished.actorId, 1, {
          actor: { status: "completed", output: 1, error: undefined, snapshot: undefined, childCount: 0, updatedAt: 9 },
          finalize: true,
        }),
      );
      const pages: Array<Array<ActorKey & { epoch: number }>> = [];
      let afterKey: ActorKey | undefined;
      for (let call = 0; call < 10; call += 1) {
        const page = await claim("node-2", 3, afterKey === undefined ? {} : { afterKey });
        pages.push(page);
        expect(page.length).toBeLessThanOrEqual(3);
        if (page.length < 3) break;
        const last = page[page.length - 1]!;
        afterKey = { tenantId: last.tenantId, actorId: last.actorId };
      }
      expect(pages.map((page) => page.length)).toEqual([3, 3, 2]);
      const claimed = pages.flat();
      expect(claimed.map(({ tenantId, actorId }) => ({ tenantId, actorId }))).toEqual(keys);
      expect(claimed.every((c) => c.epoch === 2)).toBe(true);
      for (const key of keys) expect(await store.getActor(key.tenantId, key.actorId)).toMatchObject({ epoch: 2, ownerNode: "node-2" });
      expect((await store.getActor("acme", "act_5"))?.epoch).toBe(1);
      expect(await claim("node-2", 3, { afterKey: { tenantId: "globex", actorId: "act_4" } })).toEqual([]);
      expect(await claim("node-2", 0)).toEqual([]);
    });

    it("claims again what the node already owns, so a restarted node fences off its previous incarnation", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      expect(await store.claimActiveActors("node-1", 10)).toEqual([{ tenantId: "acme", actorId: actor.actorId, epoch: 2 }]);
      expect(await store.claimActiveActors("node-1", 10)).toEqual([{ tenantId: "acme", actorId: actor.actorId, epoch: 3 }]);
      const [stale] = await store.commitSteps([commit("acme", actor.actorId, 1, { epoch: 2 })]);
      expect(outcomeError(stale)?.details?.reason).toBe("stale-epoch");
      await commitOk(store, commit("acme", actor.actorId, 1, { epoch: 3 }));
    });
  });
}
