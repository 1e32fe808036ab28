import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InvariantError } from "../../core/assert.js";
import type { ActorStatus, NewActor, Store } from "../../core/ports/store.js";
import { commit, commitOk, createStarted, effect, message, newActor, timer, type ActorKey, type MakeStore } from "./store-fixtures.js";

/** A lease that outlives every test. */
const longTtlMs = 600_000;
/** A lease short enough to wait out. */
const shortTtlMs = 50;

/**
 * Cluster membership of the `Store` port: node leases by the database clock, liveness, orphan
 * claims (also by two nodes at once), hand-off by compare-and-set, and the sweeper's query of
 * pending work. Every adapter runs it; each test gets a fresh, migrated store.
 *
 * @param name - the adapter, for test names
 * @param makeStore - makes an empty store (the suite calls `migrate()`)
 */
export function describeNodesConformance(name: string, makeStore: MakeStore): void {
  describe(`${name}: cluster membership`, () => {
    const ctx = {} as { store: Store };
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

    describeLeases(ctx);
    describeClaims(ctx);
    describeHandOff(ctx);
    describePendingWork(ctx);
    describeBadInput(ctx);
  });
}

/** Waits (polling the store, at most 5 s) until the database clock has passed the node's lease. */
async function waitUntilExpired(store: Store, nodeId: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  await sleep(shortTtlMs + 10);
  while (Date.now() < deadline) {
    const node = (await store.listNodes()).find((n) => n.nodeId === nodeId);
    if (node !== undefined && !node.live) return;
    await sleep(20);
  }
  throw new Error(`the lease of ${nodeId} did not expire within 5 s`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Creates an actor without starting it (revision 0), owned by `ownerNode`. */
async function created(store: Store, tenantId: string, actorId: string, ownerNode: string | undefined): Promise<NewActor> {
  const actor = newActor(tenantId, { actorId, ownerNode });
  await store.createActor(actor);
  return actor;
}

/** Ends an active actor (revision 1) with a final status. */
async function finish(store: Store, actor: NewActor, status: ActorStatus = "completed"): Promise<void> {
  const actorFields = { status, output: undefined, error: undefined, snapshot: undefined, childCount: 0, updatedAt: 9 };
  await commitOk(store, commit(actor.tenantId, actor.actorId, 1, { epoch: actor.epoch, actor: actorFields, finalize: true }));
}

async function ownerAndEpoch(store: Store, tenantId: string, actorId: string): Promise<{ ownerNode?: string; epoch?: number }> {
  const actor = await store.getActor(tenantId, actorId);
  return { ownerNode: actor?.ownerNode, epoch: actor?.epoch };
}

const keyOf = (key: ActorKey): string => `${key.tenantId}/${key.actorId}`;

function describeLeases(ctx: { store: Store }): void {
  describe("node leases", () => {
    it("registers and renews by the database clock and lists the live nodes, sorted", async () => {
      const { store } = ctx;
      const first = await store.registerNode({ nodeId: "node-b", leaseTtlMs: longTtlMs, info: { pid: 1, tags: ["x"] } });
      expect(first).toMatchObject({ nodeId: "node-b", liveNodes: ["node-b"] });
      expect(first.expiresAt).toBe(first.dbNow + longTtlMs);
      const second = await store.registerNode({ nodeId: "node-a", leaseTtlMs: longTtlMs, info: null });
      expect(second.liveNodes).toEqual(["node-a", "node-b"]);
      const renewed = await store.renewNode("node-b", 2 * longTtlMs);
      expect(renewed).toMatchObject({ nodeId: "node-b", liveNodes: ["node-a", "node-b"] });
      expect(renewed!.expiresAt).toBe(renewed!.dbNow + 2 * longTtlMs);
      expect(renewed!.dbNow).toBeGreaterThanOrEqual(first.dbNow);
      expect(await store.renewNode("node-never", longTtlMs)).toBeUndefined();

      const nodes = await store.listNodes();
      expect(nodes.map((n) => n.nodeId)).toEqual(["node-a", "node-b"]);
      const b = nodes[1]!;
      expect(b).toEqual({
        nodeId: "node-b",
        state: "active",
        live: true,
        registeredAt: first.dbNow,
        heartbeatAt: renewed!.dbNow,
        leaseExpiresAt: renewed!.expiresAt,
        info: { pid: 1, tags: ["x"] },
        ownedActors: 0,
      });
      expect(nodes[0]).toMatchObject({ nodeId: "node-a", state: "active", live: true, info: null });
      expect(await store.listNodes()).toEqual(nodes);
    });

    it("a registration replaces the node's row: a new life, active again, with its new info", async () => {
      const { store } = ctx;
      await store.registerNode({ nodeId: "node-1", leaseTtlMs: longTtlMs, info: { life: 1 } });
      await store.setNodeState("node-1", "stopped");
      expect(await store.renewNode("node-1", longTtlMs)).toBeUndefined();
      const again = await store.registerNode({ nodeId: "node-1", leaseTtlMs: longTtlMs, info: { life: 2 } });
      expect(again.liveNodes).toEqual(["node-1"]);
      expect(await store.listNodes()).toEqual([
        expect.objectContaining({ nodeId: "node-1", state: "active", live: true, info: { life: 2 } }),
      ]);
      expect(await store.renewNode("node-1", longTtlMs)).toBeDefined();
    });

    it("never renews a lease that expired: the node must register again", async () => {
      const { store } = ctx;
      await store.registerNode({ nodeId: "node-short", leaseTtlMs: shortTtlMs, info: {} });
      await store.registerNode({ nodeId: "node-long", leaseTtlMs: longTtlMs, info: {} });
      await waitUntilExpired(store, "node-short");
      expect(await store.renewNode("node-short", longTtlMs)).toBeUndefined();
      // The failed renewal changed nothing: the node stays expired.
      expect((await store.listNodes()).find((n) => n.nodeId === "node-short")).toMatchObject({ state: "active", live: false });
      expect((await store.renewNode("node-long", longTtlMs))?.liveNodes).toEqual(["node-long"]);
      const back = await store.registerNode({ nodeId: "node-short", leaseTtlMs: longTtlMs, info: {} });
      expect(back.liveNodes).toEqual(["node-long", "node-short"]);
      expect(await store.renewNode("node-short", longTtlMs)).toBeDefined();
    });

    it("a stopped node is not live, its actors are orphans at once, and it stays stopped", async () => {
      const { store } = ctx;
      await store.registerNode({ nodeId: "node-1", leaseTtlMs: longTtlMs, info: {} });
      await store.registerNode({ nodeId: "node-2", leaseTtlMs: longTtlMs, info: {} });
      await created(store, "acme", "act_1", "node-1");
      await created(store, "acme", "act_2", "node-1");
      expect(await store.claimActiveActors("node-2", 100, { only: "orphaned" })).toEqual([]);
      await store.setNodeState("node-1", "stopped");
      expect(await store.renewNode("node-1", longTtlMs)).toBeUndefined();
      await store.setNodeState("node-1", "draining");
      expect((await store.listNodes())[0]).toMatchObject({ nodeId: "node-1", state: "stopped", live: false, ownedActors: 2 });
      expect((await store.renewNode("node-2", longTtlMs))?.liveNodes).toEqual(["node-2"]);
      expect(await store.claimActiveActors("node-2", 100, { only: "orphaned" })).toEqual([
        { tenantId: "acme", actorId: "act_1", epoch: 2 },
        { tenantId: "acme", actorId: "act_2", epoch: 2 },
      ]);
      expect(await ownerAndEpoch(store, "acme", "act_1")).toEqual({ ownerNode: "node-2", epoch: 2 });
    });

    it("a draining node stays live: it renews, appears in the live lists, and keeps its actors", async () => {
      const { store } = ctx;
      await store.registerNode({ nodeId: "node-1", leaseTtlMs: longTtlMs, info: {} });
      await store.registerNode({ nodeId: "node-2", leaseTtlMs: longTtlMs, info: {} });
      await created(store, "acme", "act_1", "node-1");
      await store.setNodeState("node-1", "draining");
      await store.setNodeState("node-unknown", "stopped");
      expect((await store.listNodes()).map((n) => [n.nodeId, n.state, n.live])).toEqual([
        ["node-1", "draining", true],
        ["node-2", "active", true],
      ]);
      expect((await store.renewNode("node-1", longTtlMs))?.liveNodes).toEqual(["node-1", "node-2"]);
      expect((await store.renewNode("node-2", longTtlMs))?.liveNodes).toEqual(["node-1", "node-2"]);
      expect(await store.claimActiveActors("node-2", 100, { only: "orphaned" })).toEqual([]);
      expect((await store.listNodes())[0]).toMatchObject({ state: "draining" });
      await store.setNodeState("node-1", "stopped");
      expect((await store.listNodes())[0]).toMatchObject({ state: "stopped", live: false });
    });

    it("counts the active actors each node owns", async () => {
      const { store } = ctx;
      for (const nodeId of ["node-1", "node-2", "node-3"]) await store.registerNode({ nodeId, leaseTtlMs: longTtlMs, info: {} });
      await created(store, "acme", "act_1", "node-1");
      await created(store, "globex", "act_1", "node-1");
      await created(store, "acme", "act_2", "node-1");
      await finish(store, await createStarted(store, "acme", { actorId: "act_done", ownerNode: "node-1" }));
      await created(store, "acme", "act_3", "node-2");
      await created(store, "acme", "act_4", undefined);
      const count = async (): Promise<number[]> => (await store.listNodes()).map((n) => n.ownedActors);
      expect(await count()).toEqual([3, 1, 0]);
      await store.claimActiveActors("node-3", 1, { only: "own" });
      expect(await count()).toEqual([3, 1, 0]);
      await store.claimActiveActors("node-3", 2);
      expect(await count()).toEqual([1, 1, 2]);
    });
  });
}

function describeClaims(ctx: { store: Store }): void {
  describe("claims by scope", () => {
    it("'orphaned' takes only actors without a live owner, never its own, in key order, with epoch + 1", async () => {
      const { store } = ctx;
      await store.registerNode({ nodeId: "node-live", leaseTtlMs: longTtlMs, info: {} });
      await store.registerNode({ nodeId: "node-expired", leaseTtlMs: shortTtlMs, info: {} });
      await store.registerNode({ nodeId: "node-stopped", leaseTtlMs: longTtlMs, info: {} });
      await store.setNodeState("node-stopped", "stopped");
      await created(store, "acme", "act_a", "node-live");
      // The claimer's own actors are never orphans to it, even though it never registered.
      await created(store, "acme", "act_b", "node-me");
      await created(store, "acme", "act_c", "node-expired");
      await created(store, "globex", "act_d", "node-stopped");
      await created(store, "acme", "act_e", "node-ghost");
      await created(store, "acme", "act_f", undefined);
      const done = await createStarted(store, "acme", { actorId: "act_g", ownerNode: "node-stopped" });
      await finish(store, done);
      await waitUntilExpired(store, "node-expired");

      const first = await store.claimActiveActors("node-me", 2, { only: "orphaned" });
      expect(first).toEqual([
        { tenantId: "acme", actorId: "act_c", epoch: 2 },
        { tenantId: "acme", actorId: "act_e", epoch: 2 },
      ]);
      const rest = await store.claimActiveActors("node-me", 2, { only: "orphaned", afterKey: first[1] });
      expect(rest).toEqual([
        { tenantId: "acme", actorId: "act_f", epoch: 2 },
        { tenantId: "globex", actorId: "act_d", epoch: 2 },
      ]);
      expect(await store.claimActiveActors("node-me", 2, { only: "orphaned", afterKey: rest[1] })).toEqual([]);
      expect(await store.claimActiveActors("node-me", 100, { only: "orphaned" })).toEqual([]);
      for (const [tenantId, actorId] of [
        ["acme", "act_c"],
        ["acme", "act_e"],
        ["acme", "act_f"],
        ["globex", "act_d"],
      ] as const) {
        expect(await ownerAndEpoch(store, tenantId, actorId)).toEqual({ ownerNode: "node-me", epoch: 2 });
      }
      expect(await ownerAndEpoch(store, "acme", "act_a")).toEqual({ ownerNode: "node-live", epoch: 1 });
      expect(await ownerAndEpoch(store, "acme", "act_b")).toEqual({ ownerNode: "node-me", epoch: 1 });
      expect(await ownerAndEpoch(store, "acme", "act_g")).toEqual({ ownerNode: "node-stopped", epoch: 1 });
      // Another node sees the claimer's actors as orphans, because the claimer holds no lease.
      expect((await store.claimActiveActors("node-live", 100, { only: "orphaned" })).map(keyOf)).toEqual([
        "acme/act_b",
        "acme/act_c",
        "acme/act_e",
        "acme/act_f",
        "globex/act_d",
      ]);
      expect(await store.claimActiveActors("node-live", 0, { only: "orphaned" })).toEqual([]);
    });

    it("two nodes claiming 200 orphans at once take disjoint sets that together are all of them", async () => {
      const { store } = ctx;
      await store.registerNode({ nodeId: "node-1", leaseTtlMs: longTtlMs, info: {} });
      await store.registerNode({ nodeId: "node-2", leaseTtlMs: longTtlMs, info: {} });
      const all: string[] = [];
      for (let i = 0; i < 200; i += 1) {
        const tenantId = i % 2 === 0 ? "acme" : "globex";
        const actorId = `act_${String(i).padStart(3, "0")}`;
        await created(store, tenantId, actorId, i % 3 === 0 ? undefined : `node-dead-${i % 4}`);
        all.push(`${tenantId}/${actorId}`);
      }
      const claimAll = async (nodeId: string): Promise<string[]> => {
        const claimed: string[] = [];
        let afterKey: ActorKey | undefined;
        // Page until a page comes back empty: a short page may only mean that the other node holds the rest.
        for (let page = 0; page < 100; page += 1) {
          const got = await store.claimActiveActors(nodeId, 16, { only: "orphaned", afterKey });
          if (got.length === 0) return claimed;
          for (const actor of got) expect(actor.epoch).toBe(2);
          claimed.push(...got.map(keyOf));
          afterKey = got.at(-1);
        }
        throw new Error(`${nodeId} was still claiming after 100 pages`);
      };
      const [one, two] = await Promise.all([claimAll("node-1"), claimAll("node-2")]);
      const union = [...one, ...two];
      expect(new Set(union).size).toBe(union.length);
      expect([...union].sort()).toEqual([...all].sort());
      expect(await store.claimActiveActors("node-3", 500, { only: "orphaned" })).toEqual([]);
      const nodes = await store.listNodes();
      expect(nodes.map((n) => n.ownedActors)).toEqual([one.length, two.length]);
      for (const key of one.slice(0, 5)) {
        const [tenantId, actorId] = key.split("/") as [string, string];
        expect(await ownerAndEpoch(store, tenantId, actorId)).toEqual({ ownerNode: "node-1", epoch: 2 });
      }
    });

    it("'own' takes only the node's own active actors, bumping their epochs; 'any' takes every active actor", async () => {
      const { store } = ctx;
      await created(store, "acme", "act_1", "node-1");
      await created(store, "acme", "act_2", "node-2");
      await created(store, "acme", "act_3", "node-1");
      await created(store, "acme", "act_4", undefined);
      await created(store, "globex", "act_5", "node-1");
      await finish(store, await createStarted(store, "acme", { actorId: "act_6", ownerNode: "node-1" }));
      const first = await store.claimActiveActors("node-1", 2, { only: "own" });
      expect(first).toEqual([
        { tenantId: "acme", actorId: "act_1", epoch: 2 },
        { tenantId: "acme", actorId: "act_3", epoch: 2 },
      ]);
      expect(await store.claimActiveActors("node-1", 2, { only: "own", afterKey: first[1] })).toEqual([
        { tenantId: "globex", actorId: "act_5", epoch: 2 },
      ]);
      expect(await ownerAndEpoch(store, "acme", "act_2")).toEqual({ ownerNode: "node-2", epoch: 1 });
      expect(await ownerAndEpoch(store, "acme", "act_4")).toEqual({ ownerNode: undefined, epoch: 1 });
      expect(await ownerAndEpoch(store, "acme", "act_6")).toEqual({ ownerNode: "node-1", epoch: 1 });
      expect(await store.claimActiveActors("node-9", 10, { only: "own" })).toEqual([]);
      expect((await store.claimActiveActors("node-9", 10, { only: "any" })).map(keyOf)).toEqual([
        "acme/act_1",
        "acme/act_2",
        "acme/act_3",
        "acme/act_4",
        "globex/act_5",
      ]);
    });
  });
}

function describeHandOff(ctx: { store: Store }): void {
  describe("hand-off", () => {
    it("moves at most limit actors of a node, in key order, to the nodes assign picks, with epoch + 1", async () => {
      const { store } = ctx;
      for (const id of ["act_1", "act_2", "act_3", "act_4", "act_5"]) await created(store, "acme", id, "node-1");
      await created(store, "acme", "act_0", "node-2");
      await finish(store, await createStarted(store, "acme", { actorId: "act_00", ownerNode: "node-1" }));
      const asked: string[] = [];
      const assign = (tenantId: string, actorId: string): string => {
        asked.push(`${tenantId}/${actorId}`);
        return actorId === "act_2" ? "node-1" : actorId === "act_3" ? "node-3" : "node-2";
      };
      const moved = await store.handOffActors("node-1", assign, 3);
      expect(asked).toEqual(["acme/act_1", "acme/act_2", "acme/act_3"]);
      // An actor assigned back to its owner stays.
      expect(moved).toEqual([
        { tenantId: "acme", actorId: "act_1", epoch: 2, ownerNode: "node-2" },
        { tenantId: "acme", actorId: "act_3", epoch: 2, ownerNode: "node-3" },
      ]);
      expect(await ownerAndEpoch(store, "acme", "act_2")).toEqual({ ownerNode: "node-1", epoch: 1 });
      expect(await ownerAndEpoch(store, "acme", "act_3")).toEqual({ ownerNode: "node-3", epoch: 2 });
      expect(await ownerAndEpoch(store, "acme", "act_0")).toEqual({ ownerNode: "node-2", epoch: 1 });
      expect(await ownerAndEpoch(store, "acme", "act_00")).toEqual({ ownerNode: "node-1", epoch: 1 });
      const rest = await store.handOffActors("node-1", () => "node-4", 100);
      expect(rest.map((m) => [m.actorId, m.ownerNode, m.epoch])).toEqual([
        ["act_2", "node-4", 2],
        ["act_4", "node-4", 2],
        ["act_5", "node-4", 2],
      ]);
      expect(await store.handOffActors("node-1", () => "node-4", 100)).toEqual([]);
      expect(await store.handOffActors("node-2", () => "node-4", 0)).toEqual([]);
    });

    it("does not move an actor that someone else claimed while the targets were being picked", async () => {
      const { store } = ctx;
      await created(store, "acme", "act_1", "node-1");
      await created(store, "zz-late", "act_x", "node-1");
      let claim: Promise<Array<ActorKey & { epoch: number }>> | undefined;
      const moved = await store.handOffActors(
        "node-1",
        (tenantId) => {
          // Another node takes act_x over while the hand-off is under way.
          if (tenantId === "zz-late") claim ??= store.claimActiveActors("node-x", 1, { afterKey: { tenantId: "zz-late", actorId: "" } });
          return "node-2";
        },
        10,
      );
      expect(claim).toBeDefined();
      expect(await claim).toHaveLength(1);
      expect(moved.find((m) => m.actorId === "act_1")).toEqual({ tenantId: "acme", actorId: "act_1", epoch: 2, ownerNode: "node-2" });
      const x = await ownerAndEpoch(store, "zz-late", "act_x");
      // Whichever came first, the later write saw the earlier: the claim owns act_x at last, and
      // if the hand-off moved it, it did so before the claim (epoch 2, then 3), never after.
      expect(x.ownerNode).toBe("node-x");
      const movedX = moved.find((m) => m.actorId === "act_x");
      expect(x.epoch).toBe(movedX === undefined ? 2 : 3);
      if (movedX !== undefined) expect(movedX.epoch).toBe(2);
    });

    it("two hand-offs of one node at once move each actor exactly once", async () => {
      const { store } = ctx;
      const ids = Array.from({ length: 12 }, (_, i) => `act_${String(i).padStart(2, "0")}`);
      for (const id of ids) await created(store, "acme", id, "node-1");
      const [a, b] = await Promise.all([
        store.handOffActors("node-1", () => "node-2", 20),
        store.handOffActors("node-1", () => "node-3", 20),
      ]);
      const movedIds = [...a, ...b].map((m) => m.actorId);
      expect([...movedIds].sort()).toEqual(ids);
      for (const m of [...a, ...b]) {
        expect(m.epoch).toBe(2);
        expect(await ownerAndEpoch(store, "acme", m.actorId)).toEqual({ ownerNode: m.ownerNode, epoch: 2 });
      }
    });
  });
}

function describePendingWork(ctx: { store: Store }): void {
  describe("pending work", () => {
    it("finds the node's active actors that are unstarted or have a pending message, a due timer or an open effect", async () => {
      const { store } = ctx;
      const own = { ownerNode: "node-1" };
      await created(store, "acme", "act_a_unstarted", "node-1");
      const message1 = await createStarted(store, "acme", { actorId: "act_b_message", ...own });
      await store.enqueueMessage(message("acme", message1.actorId, "m1"), { mailboxDepthMax: 10 });
      const applied = await createStarted(store, "acme", { actorId: "act_c_applied", ...own });
      await store.enqueueMessage(message("acme", applied.actorId, "m2"), { mailboxDepthMax: 10 });
      await commitOk(store, commit("acme", applied.actorId, 1, { appliedMessageId: "m2" }));
      const timed = await createStarted(store, "acme", { actorId: "act_d_timer", ...own });
      await commitOk(store, commit("acme", timed.actorId, 1, { timersSet: [timer("acme", timed.actorId, "t1", 2, 5_000)] }));
      const planned = await createStarted(store, "acme", { actorId: "act_e_planned", ...own });
      await commitOk(store, commit("acme", planned.actorId, 1, { effects: [effect("acme", planned.actorId, "e1", 2)] }));
      const running = await createStarted(store, "acme", { actorId: "act_f_running", ...own });
      await commitOk(store, commit("acme", running.actorId, 1, { effects: [effect("acme", running.actorId, "e1", 2)] }));
      expect(await store.updateEffect("acme", running.actorId, "e1", { state: "running", updatedAt: 5 }, { fromStates: ["planned"] })).toBe(
        true,
      );
      const settled = await createStarted(store, "acme", { actorId: "act_g_settled", ...own });
      const completed = effect("acme", settled.actorId, "e1", 2, { state: "completed", completedSeq: 2 });
      const failed = effect("acme", settled.actorId, "e2", 2, { state: "failed", completedSeq: 2 });
      await commitOk(store, commit("acme", settled.actorId, 1, { effects: [completed, failed] }));
      await createStarted(store, "acme", { actorId: "act_h_idle", ...own });
      // A finished actor is never pending work, whatever it left behind.
      const done = await createStarted(store, "acme", { actorId: "act_i_done", ...own });
      await store.enqueueMessage(message("acme", done.actorId, "m3"), { mailboxDepthMax: 10 });
      await finish(store, done);
      const other = await createStarted(store, "acme", { actorId: "act_j_other", ownerNode: "node-2" });
      await store.enqueueMessage(message("acme", other.actorId, "m4"), { mailboxDepthMax: 10 });
      await created(store, "globex", "act_k_unstarted", "node-1");

      const expected = [
        { tenantId: "acme", actorId: "act_a_unstarted", pendingMessages: false },
        { tenantId: "acme", actorId: "act_b_message", pendingMessages: true },
        { tenantId: "acme", actorId: "act_d_timer", pendingMessages: false },
        { tenantId: "acme", actorId: "act_e_planned", pendingMessages: false },
        { tenantId: "acme", actorId: "act_f_running", pendingMessages: false },
        { tenantId: "globex", actorId: "act_k_unstarted", pendingMessages: false },
      ];
      expect(await store.findPendingWork("node-1", 5_000, 100)).toEqual(expected);
      expect(await store.findPendingWork("node-1", 4_999, 100)).toEqual(expected.filter((w) => w.actorId !== "act_d_timer"));
      expect(await store.findPendingWork("node-1", 5_000, 2)).toEqual(expected.slice(0, 2));
      expect(await store.findPendingWork("node-1", 5_000, 0)).toEqual([]);
      // Paged with a cursor: the pages together are the whole list, in order.
      const first = await store.findPendingWork("node-1", 5_000, 2);
      const last = first.at(-1)!;
      const rest = await store.findPendingWork("node-1", 5_000, 100, { tenantId: last.tenantId, actorId: last.actorId });
      expect([...first, ...rest]).toEqual(expected);
      expect(await store.findPendingWork("node-2", 5_000, 100)).toEqual([
        { tenantId: "acme", actorId: "act_j_other", pendingMessages: true },
      ]);
      expect(await store.findPendingWork("node-3", 5_000, 100)).toEqual([]);
      // Applying the message, firing the timer and settling the effects leaves nothing pending.
      await commitOk(store, commit("acme", message1.actorId, 1, { appliedMessageId: "m1" }));
      await commitOk(store, commit("acme", timed.actorId, 2, { timersCleared: ["t1"] }));
      const outcome = { result: null, resultRef: undefined, error: undefined, usage: undefined, attempts: 1 };
      await commitOk(store, commit("acme", planned.actorId, 2, { effectOutcome: { effectId: "e1", state: "completed", ...outcome } }));
      await commitOk(store, commit("acme", running.actorId, 2, { effectOutcome: { effectId: "e1", state: "failed", ...outcome } }));
      expect((await store.findPendingWork("node-1", 5_000, 100)).map((w) => w.actorId)).toEqual(["act_a_unstarted", "act_k_unstarted"]);
    });
  });
}

function describeBadInput(ctx: { store: Store }): void {
  describe("bad input", () => {
    it("refuses bad node ids, leases, limits, states and scopes as programmer bugs, writing nothing", async () => {
      const { store } = ctx;
      const refused = (call: () => Promise<unknown>) => expect(call()).rejects.toBeInstanceOf(InvariantError);
      await refused(() => store.registerNode({ nodeId: "", leaseTtlMs: longTtlMs, info: {} }));
      await refused(() => store.registerNode({ nodeId: "n".repeat(1025), leaseTtlMs: longTtlMs, info: {} }));
      for (const leaseTtlMs of [0, -5, 1.5, Number.NaN, 25 * 3600 * 1000]) {
        await refused(() => store.registerNode({ nodeId: "node-1", leaseTtlMs, info: {} }));
      }
      await refused(() => store.registerNode({ nodeId: "node-1", leaseTtlMs: longTtlMs, info: undefined as never }));
      expect(await store.listNodes()).toEqual([]);
      await store.registerNode({ nodeId: "node-1", leaseTtlMs: longTtlMs, info: {} });
      await refused(() => store.renewNode("node-1", 0));
      await refused(() => store.renewNode("", longTtlMs));
      await refused(() => store.setNodeState("node-1", "active" as never));
      expect((await store.listNodes())[0]).toMatchObject({ state: "active", live: true });
      await created(store, "acme", "act_1", "node-1");
      await refused(() => store.claimActiveActors("node-2", -1, { only: "orphaned" }));
      await refused(() => store.claimActiveActors("node-2", 10, { only: "everything" as never }));
      await refused(() => store.claimActiveActors("", 10, { only: "own" }));
      await refused(() => store.handOffActors("node-1", () => "node-2", 1.5));
      await refused(() => store.handOffActors("node-1", () => "", 10));
      await refused(() => store.findPendingWork("node-1", 5_000, -1));
      await refused(() => store.findPendingWork("node-1", Number.NaN, 10));
      await refused(() => store.findPendingWork("", 5_000, 10));
      expect(await ownerAndEpoch(store, "acme", "act_1")).toEqual({ ownerNode: "node-1", epoch: 1 });
    });
  });
}
