import { describe, expect, it } from "vitest";
import { InvariantError } from "../../core/assert.js";
import type { StoreContext } from "./store.suite.js";
import {
  chain,
  commit,
  commitOk,
  completed,
  createStarted,
  effect,
  entry,
  getChainOf,
  message,
  newActor,
  outcomeError,
  timer,
} from "./store-fixtures.js";

/** An audit record as the runtime writes it (IDENTITY.md §12): who, under what, when. */
function audit(decision: string): {
  decision: string;
  invoker: string;
  chain: { leaf: string; depth: number };
  at: number;
  caveats: null[];
} {
  return { decision, invoker: "tsr:acme:agent:act_1", chain: { leaf: "ch_step", depth: 2 }, at: 1_700_000_000_000, caveats: [null] };
}

/** @param ctx - the suite's store */
export function describeChainsAndAudit(ctx: StoreContext): void {
  describe("delegation chains and audit", () => {
    it("round-trips chainRef through every read of actors, messages, effects, timers and the journal", async () => {
      const { store } = ctx;
      const root = newActor("acme", { chainRef: "ch_root" });
      const created = await store.createActor(root, { runKey: "run-1", inputHash: "ih", chains: [chain("ch_root")] });
      expect(created.actor.chainRef).toBe("ch_root");
      expect(await store.getActor("acme", root.actorId)).toStrictEqual(created.actor);
      expect((await store.listActors("acme", { limit: 10 }))[0]?.chainRef).toBe("ch_root");
      expect((await store.findRun("acme", "run-1"))?.chainRef).toBe("ch_root");

      const inbound = message("acme", root.actorId, "m_in", { chainRef: "ch_msg" });
      await store.enqueueMessage(inbound, { mailboxDepthMax: 10, chains: [chain("ch_msg")] });
      expect(await store.pendingMessages("acme", root.actorId, 10)).toStrictEqual([{ ...inbound, appliedSeq: undefined }]);

      const peer = await createStarted(store, "acme");
      const planned = effect("acme", root.actorId, "e_1", 1, { chainRef: "ch_step", audit: audit("allow") });
      const armed = timer("acme", root.actorId, "t_1", 1, 9_000, { chainRef: "ch_step" });
      const sent = message("acme", peer.actorId, "m_out", { sender: root.actorId, chainRef: "ch_child" });
      const child = newActor("acme", {
        actorId: "act_child",
        parentId: root.actorId,
        rootId: root.actorId,
        depth: 1,
        chainRef: "ch_child",
      });
      const step = entry("acme", root.actorId, 1, { messageId: "m_in", chainRef: "ch_msg" });
      await commitOk(
        store,
        commit("acme", root.actorId, 0, {
          entry: step,
          appliedMessageId: "m_in",
          effects: [planned],
          timersSet: [armed],
          messages: [sent],
          children: [child],
          chains: [chain("ch_step"), chain("ch_child")],
        }),
      );
      expect(await store.readJournal("acme", root.actorId, { limit: 10 })).toStrictEqual([step]);
      expect(await store.getEffect("acme", root.actorId, "e_1")).toStrictEqual(planned);
      expect(await store.listEffects("acme", root.actorId)).toStrictEqual([planned]);
      expect(await store.listTimers("acme", root.actorId)).toStrictEqual([armed]);
      expect(await store.getMessage("acme", peer.actorId, "m_out")).toStrictEqual({ ...sent, appliedSeq: undefined });
      expect(await store.getMessage("acme", root.actorId, "m_in")).toStrictEqual({ ...inbound, appliedSeq: 1 });
      expect((await store.getActor("acme", child.actorId))?.chainRef).toBe("ch_child");
      expect((await store.listActors("acme", { parentId: root.actorId, limit: 10 })).map((a) => a.chainRef)).toEqual(["ch_child"]);
      for (const ref of ["ch_root", "ch_msg", "ch_step", "ch_child"])
        expect(await getChainOf(store)("acme", ref)).toEqual(chain(ref).tokens);

      // A timer re-armed by a later step takes that step's chain.
      await commitOk(store, commit("acme", root.actorId, 1, { timersSet: [{ ...armed, createdSeq: 2, chainRef: "ch_msg" }] }));
      expect((await store.listTimers("acme", root.actorId))[0]?.chainRef).toBe("ch_msg");
    });

    it("leaves chainRef and audit absent on records written without them", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme", { chainRef: undefined });
      await store.enqueueMessage(message("acme", actor.actorId, "m1", { chainRef: undefined }), { mailboxDepthMax: 10 });
      await commitOk(
        store,
        commit("acme", actor.actorId, 1, {
          effects: [effect("acme", actor.actorId, "e1", 2, { chainRef: undefined, audit: undefined })],
          timersSet: [timer("acme", actor.actorId, "t1", 2, 500)],
        }),
      );
      const records = [
        await store.getActor("acme", actor.actorId),
        (await store.pendingMessages("acme", actor.actorId, 10))[0],
        await store.getEffect("acme", actor.actorId, "e1"),
        (await store.listTimers("acme", actor.actorId))[0],
        (await store.readJournal("acme", actor.actorId, { limit: 10 }))[1],
      ];
      for (const record of records) {
        expect(record).toBeDefined();
        expect(record).not.toHaveProperty("chainRef");
        expect(record).not.toHaveProperty("audit");
      }
      expect(await getChainOf(store)("acme", "ch_missing")).toBeUndefined();
    });

    it("stores a chain once per tenant: the first write wins, and another tenant neither sees nor shares it", async () => {
      const { store } = ctx;
      const getChain = getChainOf(store);
      const a = newActor("acme", { chainRef: "ch_same" });
      const b = newActor("globex", { chainRef: "ch_same" });
      await store.createActor(a, { chains: [chain("ch_same", 2, "acme"), chain("ch_acme_only")] });
      await store.createActor(b, { chains: [chain("ch_same", 3, "globex")] });
      expect(await getChain("acme", "ch_same")).toEqual(chain("ch_same", 2, "acme").tokens);
      expect(await getChain("globex", "ch_same")).toEqual(chain("ch_same", 3, "globex").tokens);
      expect(await getChain("globex", "ch_acme_only")).toBeUndefined();
      expect(await getChain("initech", "ch_same")).toBeUndefined();
      await commitOk(
        store,
        commit("acme", a.actorId, 0, { chains: [chain("ch_same", 1, "later"), chain("ch_new"), chain("ch_new", 1, "dup")] }),
      );
      await store.enqueueMessage(message("acme", a.actorId, "m1"), { mailboxDepthMax: 10, chains: [chain("ch_same", 1, "message")] });
      expect(await getChain("acme", "ch_same")).toEqual(chain("ch_same", 2, "acme").tokens);
      expect(await getChain("acme", "ch_new")).toEqual(chain("ch_new").tokens);
      expect(await getChain("globex", "ch_new")).toBeUndefined();
    });

    it("writes no chain of a refused commit, even when another commit of the batch carries the same one", async () => {
      const { store } = ctx;
      const getChain = getChainOf(store);
      const a = await createStarted(store, "acme");
      const b = await createStarted(store, "acme");
      const [stale] = await store.commitSteps([commit("acme", a.actorId, 0, { chains: [chain("ch_stale")] })]);
      expect(outcomeError(stale)?.code).toBe("ERR_SNAPSHOT_CONFLICT");
      expect(await getChain("acme", "ch_stale")).toBeUndefined();
      const outcomes = await store.commitSteps([
        commit("acme", a.actorId, 0, { chains: [chain("ch_shared", 2, "refused"), chain("ch_refused_only")] }),
        commit("acme", b.actorId, 1, { chains: [chain("ch_shared", 2, "accepted")] }),
      ]);
      expect(outcomeError(outcomes[0])?.code).toBe("ERR_SNAPSHOT_CONFLICT");
      expect(outcomes[1]).toEqual({ ok: true });
      expect(await getChain("acme", "ch_shared")).toEqual(chain("ch_shared", 2, "accepted").tokens);
      expect(await getChain("acme", "ch_refused_only")).toBeUndefined();
    });

    it("writes no chain when createActor or enqueueMessage writes nothing", async () => {
      const { store } = ctx;
      const getChain = getChainOf(store);
      const actor = newActor("acme");
      await store.createActor(actor, { runKey: "run-1", inputHash: "ih" });
      await expect(store.createActor(actor, { chains: [chain("ch_exists")] })).rejects.toMatchObject({ code: "ERR_ACTOR_EXISTS" });
      const again = await store.createActor(newActor("acme"), { runKey: "run-1", inputHash: "ih", chains: [chain("ch_same_run")] });
      expect(again.created).toBe(false);
      await expect(
        store.createActor(newActor("acme"), { runKey: "run-1", inputHash: "other", chains: [chain("ch_mismatch")] }),
      ).rejects.toMatchObject({
        code: "ERR_IDEMPOTENCY_MISMATCH",
      });
      await store.enqueueMessage(message("acme", actor.actorId, "m1"), { mailboxDepthMax: 1 });
      expect(await store.enqueueMessage(message("acme", actor.actorId, "m1"), { mailboxDepthMax: 1, chains: [chain("ch_dup")] })).toEqual({
        created: false,
      });
      await expect(
        store.enqueueMessage(message("acme", actor.actorId, "m2"), { mailboxDepthMax: 1, chains: [chain("ch_full")] }),
      ).rejects.toMatchObject({
        code: "ERR_MAILBOX_FULL",
      });
      await expect(
        store.enqueueMessage(message("acme", "act_missing", "m3"), { mailboxDepthMax: 1, chains: [chain("ch_nobody")] }),
      ).rejects.toMatchObject({
        code: "ERR_ACTOR_NOT_FOUND",
      });
      for (const ref of ["ch_exists", "ch_same_run", "ch_mismatch", "ch_dup", "ch_full", "ch_nobody"])
        expect(await getChain("acme", ref)).toBeUndefined();
    });

    it("refuses malformed chains with an InvariantError and writes nothing", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      const [empty, unnamed] = await store.commitSteps([
        commit("acme", actor.actorId, 1, { chains: [{ chainRef: "ch_empty", tokens: [] }] }),
        commit("acme", actor.actorId, 1, { chains: [{ chainRef: "", tokens: ["a.b.c"] }] }),
      ]);
      expect(outcomeError(empty)).toBeInstanceOf(InvariantError);
      expect(outcomeError(unnamed)).toBeInstanceOf(InvariantError);
      expect((await store.getActor("acme", actor.actorId))?.revision).toBe(1);
      const other = newActor("acme");
      await expect(store.createActor(other, { chains: [{ chainRef: "ch_bad", tokens: [""] }] })).rejects.toBeInstanceOf(InvariantError);
      expect(await store.getActor("acme", other.actorId)).toBeUndefined();
      await expect(
        store.enqueueMessage(message("acme", actor.actorId, "m1"), { mailboxDepthMax: 5, chains: [{ chainRef: "ch_bad", tokens: [] }] }),
      ).rejects.toBeInstanceOf(InvariantError);
      expect(await store.getMessage("acme", actor.actorId, "m1")).toBeUndefined();
    });

    it("writes an outcome's audit record to its effect, and keeps the planned one when the outcome has none", async () => {
      const { store } = ctx;
      const actor = await createStarted(store, "acme");
      await commitOk(
        store,
        commit("acme", actor.actorId, 1, {
          effects: [
            effect("acme", actor.actorId, "e_replaced", 2, { audit: audit("planned") }),
            effect("acme", actor.actorId, "e_kept", 2, { audit: audit("planned") }),
            effect("acme", actor.actorId, "e_null", 2),
          ],
        }),
      );
      await commitOk(store, commit("acme", actor.actorId, 2, { effectOutcome: completed("e_replaced", { audit: audit("allow") }) }));
      await commitOk(store, commit("acme", actor.actorId, 3, { effectOutcome: completed("e_kept") }));
      await commitOk(
        store,
        commit("acme", actor.actorId, 4, { effectOutcome: completed("e_null", { state: "failed", result: undefined, audit: null }) }),
      );
      expect(await store.getEffect("acme", actor.actorId, "e_replaced")).toMatchObject({
        state: "completed",
        completedSeq: 3,
        audit: audit("allow"),
      });
      expect((await store.getEffect("acme", actor.actorId, "e_kept"))?.audit).toStrictEqual(audit("planned"));
      const denied = await store.getEffect("acme", actor.actorId, "e_null");
      expect(denied?.state).toBe("failed");
      expect(denied?.audit).toBeNull();
      // A refused commit records no outcome and no audit.
      await commitOk(
        store,
        commit("acme", actor.actorId, 5, { effects: [effect("acme", actor.actorId, "e_late", 6, { audit: audit("planned") })] }),
      );
      const [stale] = await store.commitSteps([
        commit("acme", actor.actorId, 5, { effectOutcome: completed("e_late", { audit: audit("deny") }) }),
      ]);
      expect(outcomeError(stale)?.code).toBe("ERR_SNAPSHOT_CONFLICT");
      expect(await store.getEffect("acme", actor.actorId, "e_late")).toMatchObject({ state: "planned", audit: audit("planned") });
    });
  });
}
