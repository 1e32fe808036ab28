import { assign, setup } from "xstate";
import { describe, expect, it } from "vitest";
import { defineAgent } from "../../../actors/define-agent.js";
import { createNode } from "../../../actors/node.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";
import { until } from "../../helpers/until.js";

const v1 = defineAgent({
  type: "counter",
  version: 1,
  tools: [],
  machine: setup({ types: {} as { context: { count: number }; events: any } }).createMachine({
    context: { count: 0 },
    initial: "counting",
    states: {
      counting: { on: { inc: { actions: assign({ count: ({ context }) => context.count + 1 }) }, stop: "done" } },
      done: { type: "final" },
    },
    output: ({ context }) => ({ count: context.count }),
  }),
});

const v2Machine = setup({ types: {} as { context: { total: number; unit: string }; events: any } }).createMachine({
  context: { total: 0, unit: "items" },
  initial: "counting",
  states: {
    counting: {
      on: {
        inc: { actions: assign({ total: ({ context }) => context.total + 1 }) },
        double: { actions: assign({ total: ({ context }) => context.total * 2 }) },
        stop: "done",
      },
    },
    done: { type: "final" },
  },
  output: ({ context }) => ({ total: context.total, unit: context.unit }),
});

/** Version 2 of the counter, migrating v1's `count` into `total`; `check` sees the version migrated from. */
function migratingV2(check?: (fromVersion: number) => void) {
  return defineAgent({
    type: "counter",
    version: 2,
    tools: [],
    machine: v2Machine,
    migrate: (persisted: any, fromVersion) => {
      check?.(fromVersion);
      return { ...persisted, context: { total: persisted.context.count, unit: "items" } };
    },
  });
}

async function runOnV1() {
  const store = createMemoryStore();
  await store.migrate();
  const node = createNode({ store, agents: [v1], logger: silent, limits: { snapshotIntervalSteps: 2 } });
  await node.start();
  const { runId } = await node.startRun({ tenantId: "t", agentType: "counter", input: null, idempotencyKey: "c" });
  for (let i = 0; i < 3; i++) await node.sendEvent({ tenantId: "t", actorId: runId, event: { type: "inc" }, messageId: `i${i}` });
  await until(async () => (await node.getActor("t", runId)).revision === 4);
  await node.close();
  return { store, runId };
}

describe("agent versions", () => {
  it("migrates an old snapshot with the declared function and carries on", async () => {
    const { store, runId } = await runOnV1();
    const v2 = migratingV2((fromVersion) => expect(fromVersion).toBe(1));
    const node = createNode({ store, agents: [v1, v2], logger: silent });
    await node.start();
    await node.sendEvent({ tenantId: "t", actorId: runId, event: { type: "inc" }, messageId: "after" });
    await until(async () => (await node.getActor("t", runId)).revision === 5);
    // The first step after the migration records the new version: events only v2 knows are accepted.
    expect((await store.getActor("t", runId))?.agentVersion).toBe(2);
    await node.sendEvent({ tenantId: "t", actorId: runId, event: { type: "double" }, messageId: "double" });
    await node.sendEvent({ tenantId: "t", actorId: runId, event: { type: "stop" }, messageId: "stop" });
    const view = await node.waitForStatus("t", runId, { timeoutMs: 3000 });
    expect(view.output).toEqual({ total: 8, unit: "items" });
    await node.close();
  });

  it("accepts an event only the migrated version knows, whether or not the actor is in memory", async () => {
    const { store, runId } = await runOnV1();
    const v2 = migratingV2();
    // Not resident: the node has not loaded it (it passivates every idle actor at once).
    const node = createNode({ store, agents: [v1, v2], logger: silent, passivation: { idleMs: 1, residentActorsMax: 10 } });
    await node.start();
    await until(() => node.residentActors === 0);
    expect((await store.getActor("t", runId))?.agentVersion).toBe(1);
    await expect(node.sendEvent({ tenantId: "t", actorId: runId, event: { type: "double" }, messageId: "d1" })).resolves.toEqual({
      accepted: true,
    });
    await until(async () => (await node.getActor("t", runId)).revision === 5);
    await node.sendEvent({ tenantId: "t", actorId: runId, event: { type: "stop" }, messageId: "stop" });
    const view = await node.waitForStatus("t", runId, { timeoutMs: 3000 });
    expect(view.output).toEqual({ total: 6, unit: "items" });
    await node.close();
  });

  it("refuses a snapshot it cannot migrate with ERR_VERSION_UNSUPPORTED, and never resets it", async () => {
    const { store, runId } = await runOnV1();
    const before = await store.getActor("t", runId);
    const v2 = defineAgent({ type: "counter", version: 2, tools: [], machine: v2Machine });
    const node = createNode({ store, agents: [v2], logger: silent });
    await node.start();
    expect(node.activationError("t", runId)?.code).toBe("ERR_VERSION_UNSUPPORTED");
    const after = await store.getActor("t", runId);
    expect(after).toMatchObject({ status: "active", revision: before!.revision, snapshot: before!.snapshot });
    await node.close();
  });
});
