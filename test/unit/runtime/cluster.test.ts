import { afterEach, describe, expect, it } from "vitest";
import { createNode, type TesseraNode } from "../../../actors/node.js";
import { createInProcessBus, createInProcessTransport } from "../../../actors/transport/in-process/index.js";
import type { Store } from "../../../core/ports/store.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";
import { makeClusterAgents, type CallCounter } from "./cluster-agents.js";
import { until } from "../../helpers/until.js";

const open: TesseraNode[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((node) => node.close()));
});

/** Nodes sharing one store (as if it were PostgreSQL) and one in-process bus. */
function cluster(calls: CallCounter, options: { leaseTtlMs?: number; idleMs?: number; residentActorsMax?: number } = {}) {
  const store = createMemoryStore({ shared: true });
  const bus = createInProcessBus();
  const make = (nodeId: string): TesseraNode => {
    const node = createNode({
      store,
      agents: makeClusterAgents(calls),
      nodeId,
      logger: silent,
      statusPollMs: 10,
      transport: createInProcessTransport({ bus, subjectPrefix: "cluster-test" }),
      cluster: {
        leaseTtlMs: options.leaseTtlMs ?? 1_000,
        renewIntervalMs: Math.floor((options.leaseTtlMs ?? 1_000) / 4),
        sweepIntervalMs: 50,
      },
      passivation: { idleMs: options.idleMs ?? 60_000, residentActorsMax: options.residentActorsMax ?? 10_000 },
    });
    open.push(node);
    return node;
  };
  return { store, make };
}

async function ownersOf(store: Store, tenantId: string, ids: readonly string[]): Promise<Map<string, string | undefined>> {
  const owners = new Map<string, string | undefined>();
  for (const id of ids) owners.set(id, (await store.getActor(tenantId, id))?.ownerNode);
  return owners;
}

describe("nodes sharing a store", () => {
  it("places new runs on every live node and delivers events to whichever node owns the actor", async () => {
    const calls: CallCounter = new Map();
    const { store, make } = cluster(calls);
    const a = make("node-a");
    const b = make("node-b");
    const c = make("node-c");
    await a.start();
    await b.start();
    await c.start();
    // node-a learns of the others from their announcements (or its next renewal).
    await until(() => a.clusterStats.liveNodes.length === 3);
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) {
      const { runId } = await a.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: `k${i}`, runId: `r${i}` });
      ids.push(runId);
    }
    const owners = await ownersOf(store, "t", ids);
    const perNode = new Map<string, number>();
    for (const owner of owners.values()) perNode.set(owner!, (perNode.get(owner!) ?? 0) + 1);
    expect([...perNode.keys()].sort()).toEqual(["node-a", "node-b", "node-c"]);
    // Once each has noted its start (the counter ignores events before that), events go in through
    // one node and each actor's owner applies them.
    await until(async () => (await Promise.all(ids.map((id) => store.getActor("t", id)))).every((r) => r!.revision >= 2));
    for (const id of ids) {
      await b.sendEvent({ tenantId: "t", actorId: id, event: { type: "inc", n: 1 }, messageId: `${id}-inc` });
      await b.sendEvent({ tenantId: "t", actorId: id, event: { type: "finish" }, messageId: `${id}-fin` });
    }
    for (const id of ids) {
      const view = await c.waitForStatus("t", id, { timeoutMs: 10_000 });
      expect(view).toMatchObject({ status: "completed", output: { count: 1 }, ownerNode: owners.get(id) });
    }
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
    expect(calls.size).toBe(60);
    const nodes = await a.listNodes();
    expect(nodes.map((n) => n.nodeId)).toEqual(["node-a", "node-b", "node-c"]);
    expect(nodes.every((n) => n.live)).toBe(true);
  });

  it("a node that closes leaves its actors to the others at once, with a new epoch", async () => {
    const calls: CallCounter = new Map();
    const { store, make } = cluster(calls, { leaseTtlMs: 60_000 });
    const a = make("node-a");
    await a.start();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++)
      ids.push((await a.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: `k${i}` })).runId);
    await until(async () => (await Promise.all(ids.map((id) => store.getActor("t", id)))).every((r) => r!.revision >= 2));
    const b = make("node-b");
    await b.start();
    await a.close();
    // Long lease: only the stopped state and the node-left broadcast make them orphans this soon.
    await until(async () => [...(await ownersOf(store, "t", ids)).values()].every((o) => o === "node-b"));
    for (const id of ids) {
      expect((await store.getActor("t", id))!.epoch).toBe(2);
      await b.sendEvent({ tenantId: "t", actorId: id, event: { type: "finish" }, messageId: `${id}-fin` });
    }
    for (const id of ids) expect((await b.waitForStatus("t", id, { timeoutMs: 10_000 })).status).toBe("completed");
    const nodes = await b.listNodes();
    expect(nodes.find((n) => n.nodeId === "node-a")).toMatchObject({ state: "stopped", live: false, ownedActors: 0 });
    expect(nodes.find((n) => n.nodeId === "node-b")).toMatchObject({ live: true, ownedActors: 0 });
  });

  it("drain hands actors to the live nodes, and parents and children on different nodes still hear each other", async () => {
    const calls: CallCounter = new Map();
    const { store, make } = cluster(calls, { leaseTtlMs: 60_000 });
    const a = make("node-a");
    await a.start();
    const parents: string[] = [];
    for (let i = 0; i < 16; i++)
      parents.push((await a.startRun({ tenantId: "t", agentType: "parent", input: null, idempotencyKey: `p${i}` })).runId);
    const kids = async (): Promise<string[]> =>
      (await Promise.all(parents.map((p) => store.listActors("t", { parentId: p, limit: 5 })))).map((list) => list[0]?.actorId ?? "");
    await until(async () => (await kids()).every((k) => k !== ""));
    const children = await kids();
    const b = make("node-b");
    const c = make("node-c");
    await b.start();
    await c.start();
    await until(() => a.clusterStats.liveNodes.length === 3);
    await a.drain({ graceMs: 1_000 });
    const owners = await ownersOf(store, "t", [...parents, ...children]);
    expect([...owners.values()].every((o) => o === "node-b" || o === "node-c")).toBe(true);
    const split = parents.filter((p, i) => owners.get(p) !== owners.get(children[i]!));
    expect(split.length).toBeGreaterThan(0);
    for (const child of children) await b.sendEvent({ tenantId: "t", actorId: child, event: { type: "go" }, messageId: `${child}-go` });
    for (const parent of parents) {
      expect(await c.waitForStatus("t", parent, { timeoutMs: 10_000 })).toMatchObject({ status: "completed", output: { tag: "kid" } });
    }
  });

  it("stopping a parent stops its child on another node", async () => {
    const calls: CallCounter = new Map();
    const { store, make } = cluster(calls, { leaseTtlMs: 60_000 });
    const a = make("node-a");
    await a.start();
    const parents: string[] = [];
    for (let i = 0; i < 8; i++)
      parents.push((await a.startRun({ tenantId: "t", agentType: "parent", input: null, idempotencyKey: `s${i}` })).runId);
    await until(async () =>
      (await Promise.all(parents.map((p) => store.listActors("t", { parentId: p, limit: 5 })))).every((l) => l.length === 1),
    );
    const b = make("node-b");
    const c = make("node-c");
    await b.start();
    await c.start();
    await a.drain({ graceMs: 1_000 });
    for (const parent of parents) await c.stopActor("t", parent);
    for (const parent of parents) {
      expect((await b.waitForStatus("t", parent, { timeoutMs: 10_000 })).status).toBe("stopped");
      const [kid] = await store.listActors("t", { parentId: parent, limit: 5 });
      expect((await b.waitForStatus("t", kid!.actorId, { timeoutMs: 10_000 })).status).toBe("stopped");
    }
  });

  it("a node that cannot renew stops acting, and comes back as a new life when it can", async () => {
    const calls: CallCounter = new Map();
    const { store, make } = cluster(calls, { leaseTtlMs: 400 });
    const a = make("node-a");
    await a.start();
    const { runId } = await a.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: "one" });
    await until(async () => (await store.getActor("t", runId))!.revision >= 2);
    // Another node stops node-a in the registry (as an operator would): its next renewal fails.
    await store.setNodeState("node-a", "stopped");
    await until(() => !a.clusterStats.holdsLease);
    expect(a.residentActors).toBe(0);
    // It registers again and takes back its own actor with a new epoch.
    await until(() => a.clusterStats.holdsLease);
    await until(async () => (await store.getActor("t", runId))!.epoch >= 2);
    await a.sendEvent({ tenantId: "t", actorId: runId, event: { type: "finish" }, messageId: "fin" });
    expect((await a.waitForStatus("t", runId, { timeoutMs: 10_000 })).status).toBe("completed");
  });
});

describe("the sweeper", () => {
  it("reaches actors past a page of busy ones: a message whose wake-up was lost is applied", async () => {
    const calls: CallCounter = new Map();
    const store = createMemoryStore({ shared: true });
    const node = createNode({
      store,
      agents: makeClusterAgents(calls),
      nodeId: "n1",
      logger: silent,
      statusPollMs: 10,
      transport: createInProcessTransport({ bus: createInProcessBus(), subjectPrefix: "sweep" }),
      cluster: { leaseTtlMs: 1_000, renewIntervalMs: 250, sweepIntervalMs: 30, sweepPageSize: 3 },
    });
    open.push(node);
    await node.start();
    // Three busy actors first in key order (a tool call that never answers), a waiting one after.
    for (const id of ["a1", "a2", "a3"])
      await node.startRun({ tenantId: "t", agentType: "thinker", input: null, idempotencyKey: id, runId: id });
    await node.startRun({ tenantId: "t", agentType: "waiter", input: { tag: "z" }, idempotencyKey: "z9", runId: "z9" });
    await until(async () => (await store.getActor("t", "z9"))!.revision >= 1);
    // A message put into the mailbox behind the node's back: no delivery, only the sweeper finds it.
    await store.enqueueMessage(
      { tenantId: "t", actorId: "z9", messageId: "go1", event: { type: "go" }, sender: "external", createdAt: Date.now() },
      { mailboxDepthMax: 10 },
    );
    expect((await node.waitForStatus("t", "z9", { timeoutMs: 5_000 })).status).toBe("completed");
  });
});

describe("a node id started twice", () => {
  it("the earlier process stops acting for good once a new one registers the same id", async () => {
    const calls: CallCounter = new Map();
    const { store, make } = cluster(calls, { leaseTtlMs: 800 });
    const old = make("node-x");
    await old.start();
    const { runId } = await old.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: "one" });
    await until(async () => (await store.getActor("t", runId))!.revision >= 2);
    // A supervisor starts the node again under the same id while the first process still runs.
    const again = make("node-x");
    await again.start();
    expect((await store.getActor("t", runId))!.epoch).toBe(2);
    await until(() => old.clusterStats.superseded);
    expect(old.residentActors).toBe(0);
    expect(old.clusterStats.holdsLease).toBe(false);
    await again.sendEvent({ tenantId: "t", actorId: runId, event: { type: "inc", n: 1 }, messageId: "i1" });
    await again.sendEvent({ tenantId: "t", actorId: runId, event: { type: "finish" }, messageId: "f1" });
    expect(await again.waitForStatus("t", runId, { timeoutMs: 5_000 })).toMatchObject({ status: "completed", output: { count: 1 } });
    // Every step after the restart was written under the new epoch.
    const journal = await again.readJournal("t", runId);
    expect(journal.slice(2).every((e) => e.epoch === 2)).toBe(true);
    expect(old.clusterStats.superseded).toBe(true);
  });
});

describe("kill switch", () => {
  it("halts every active actor of the type on every node, durably, and refuses new runs of it in that tenant only", async () => {
    const calls: CallCounter = new Map();
    const { store, make } = cluster(calls, { leaseTtlMs: 60_000 });
    const a = make("node-a");
    const b = make("node-b");
    await a.start();
    await b.start();
    await until(() => a.clusterStats.liveNodes.length === 2);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++)
      ids.push((await a.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: `k${i}` })).runId);
    const other = (await a.startRun({ tenantId: "u", agentType: "counter", input: null, idempotencyKey: "other" })).runId;
    await until(async () => (await Promise.all(ids.map((id) => store.getActor("t", id)))).every((r) => r!.revision >= 2));
    const owners = new Set((await Promise.all(ids.map((id) => store.getActor("t", id)))).map((r) => r!.ownerNode));
    expect(owners.size).toBe(2);

    expect(await a.engageKillSwitch({ tenantId: "t", agentType: "counter", reason: "runaway refunds" })).toEqual({
      engaged: true,
      halting: 20,
    });
    for (const id of ids) {
      expect(await b.waitForStatus("t", id, { timeoutMs: 5_000 })).toMatchObject({
        status: "halted",
        error: { code: "ERR_KILL_SWITCH", message: "runaway refunds" },
      });
      const journal = await b.readJournal("t", id);
      expect(journal.at(-1)!.event).toMatchObject({ type: "tessera.halt" });
      // On the record: replay reproduces the halt.
      expect((await b.replay("t", id)).stateHash).toBe(journal.at(-1)!.stateHash);
    }
    // Every node refuses new runs of the type in that tenant (node-b heard of it by broadcast).
    await until(async () =>
      b.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: "new" }).then(
        () => false,
        (error: { code?: string }) => error.code === "ERR_KILL_SWITCH",
      ),
    );
    await expect(a.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: "new2" })).rejects.toMatchObject({
      code: "ERR_KILL_SWITCH",
    });
    // Another tenant's actors of the same type go on.
    expect((await store.getActor("u", other))!.status).toBe("active");
    await b.sendEvent({ tenantId: "u", actorId: other, event: { type: "finish" }, messageId: "fin" });
    expect((await a.waitForStatus("u", other, { timeoutMs: 5_000 })).status).toBe("completed");
    // Engaging it again changes nothing.
    expect(await b.engageKillSwitch({ tenantId: "t", agentType: "counter", reason: "again" })).toEqual({ engaged: false, halting: 0 });
  });
});

describe("kill switch ordering", () => {
  it("no call starts once the switch is engaged, even for messages queued ahead of the halt", async () => {
    const calls: CallCounter = new Map();
    const { store, make } = cluster(calls, { leaseTtlMs: 60_000 });
    const a = make("node-a");
    await a.start();
    const { runId } = await a.startRun({ tenantId: "t", agentType: "charger", input: null, idempotencyKey: "c", runId: "c" });
    await until(async () => (await store.getActor("t", runId))!.revision >= 1);
    await a.close();
    // Three charges wait in the mailbox while no node hosts the actor; the halt queues behind them.
    for (let i = 0; i < 3; i++) {
      await store.enqueueMessage(
        { tenantId: "t", actorId: runId, messageId: `j${i}`, event: { type: "charge" }, sender: "external", createdAt: Date.now() },
        { mailboxDepthMax: 100 },
      );
    }
    const b = make("node-b");
    expect(await b.engageKillSwitch({ tenantId: "t", agentType: "charger", reason: "stop now" })).toEqual({ engaged: true, halting: 1 });
    await b.start();
    expect(await b.waitForStatus("t", runId, { timeoutMs: 5_000 })).toMatchObject({ status: "halted" });
    // The charge a queued message planned never ran; the halt cancelled it.
    expect(calls.size).toBe(0);
    expect((await store.listEffects("t", runId)).every((e) => e.state === "cancelled")).toBe(true);
  });
});

describe("passivation", () => {
  it("drops idle actors from memory and brings them back on their next message", async () => {
    const calls: CallCounter = new Map();
    const store = createMemoryStore();
    const node = createNode({ store, agents: makeClusterAgents(calls), logger: silent, passivation: { idleMs: 30 } });
    open.push(node);
    await node.start();
    const ids: string[] = [];
    for (let i = 0; i < 10; i++)
      ids.push((await node.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: `k${i}` })).runId);
    await until(async () => (await Promise.all(ids.map((id) => store.getActor("t", id)))).every((r) => r!.revision >= 2));
    await until(() => node.residentActors === 0);
    expect(node.clusterStats.passivated).toBeGreaterThanOrEqual(10);
    await node.sendEvent({ tenantId: "t", actorId: ids[3]!, event: { type: "inc", n: 7 }, messageId: "m1" });
    await node.sendEvent({ tenantId: "t", actorId: ids[3]!, event: { type: "finish" }, messageId: "m2" });
    expect(await node.waitForStatus("t", ids[3]!, { timeoutMs: 5_000 })).toMatchObject({ status: "completed", output: { count: 1 } });
    expect(await node.getContext("t", ids[3]!)).toEqual({ seen: [7] });
  });

  it("a passivated actor's durable timer still fires", async () => {
    const calls: CallCounter = new Map();
    const store = createMemoryStore();
    const node = createNode({ store, agents: makeClusterAgents(calls), logger: silent, passivation: { idleMs: 20 } });
    open.push(node);
    await node.start();
    const { runId } = await node.startRun({ tenantId: "t", agentType: "sleeper", input: { ms: 400 }, idempotencyKey: "nap" });
    await until(() => node.clusterStats.passivated >= 1);
    expect(node.residentActors).toBe(0);
    expect(await node.waitForStatus("t", runId, { timeoutMs: 5_000 })).toMatchObject({ status: "completed", output: { woke: true } });
  });

  it("keeps resident actors under the cap, dropping the least recently active idle ones", async () => {
    const calls: CallCounter = new Map();
    const store = createMemoryStore();
    const node = createNode({
      store,
      agents: makeClusterAgents(calls),
      logger: silent,
      passivation: { idleMs: 3_600_000, residentActorsMax: 5 },
    });
    open.push(node);
    await node.start();
    let residentMax = 0;
    const sampler = setInterval(() => (residentMax = Math.max(residentMax, node.residentActors)), 1);
    const ids: string[] = [];
    for (let i = 0; i < 40; i++)
      ids.push((await node.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: `k${i}` })).runId);
    await until(async () => (await Promise.all(ids.map((id) => store.getActor("t", id)))).every((r) => r!.revision >= 2));
    await until(() => node.residentActors <= 5);
    for (const id of ids) await node.sendEvent({ tenantId: "t", actorId: id, event: { type: "finish" }, messageId: `${id}-f` });
    for (const id of ids) expect((await node.waitForStatus("t", id, { timeoutMs: 5_000 })).status).toBe("completed");
    clearInterval(sampler);
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
    // Never more than the cap at once: activations past it wait for room.
    expect(residentMax).toBeLessThanOrEqual(5);
  });
});
