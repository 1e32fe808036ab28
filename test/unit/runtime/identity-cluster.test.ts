/**
 * Identity across nodes: a revocation made on one node holds on the node that owns the actor (it
 * travels as a broadcast), and an actor taken over by another node signs with a new key.
 */
import { assign, setup } from "xstate";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { callTool } from "../../../actors/actions.js";
import { defineAgent } from "../../../actors/define-agent.js";
import { defineTool } from "../../../actors/define-tool.js";
import { createNode, TesseraNode } from "../../../actors/node.js";
import { createInProcessBus, createInProcessTransport } from "../../../actors/transport/in-process/index.js";
import { sha256 } from "../../../core/ids.js";
import { TenantAuthority, tokenHash, type RootAuthorityOracle } from "../../../identity/index.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";
import { until } from "../../helpers/until.js";

const open: TesseraNode[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((node) => node.close()));
});

async function twoNodes() {
  const calls: string[] = [];
  const payTool = defineTool({
    name: "pay",
    description: "Pays",
    idempotent: true,
    input: z.object({ cents: z.number() }),
    output: z.object({ receipt: z.string() }),
    execute: async (args, ctx) => {
      calls.push(ctx.idempotencyKey);
      return { receipt: `r${args.cents}` };
    },
  });
  const agent = defineAgent({
    type: "payer",
    version: 1,
    tools: [payTool],
    machine: setup({ types: {} as { context: { results: string[] }; events: any } }).createMachine({
      context: { results: [] },
      initial: "idle",
      states: {
        idle: { on: { pay: "paying" } },
        paying: {
          entry: callTool("pay", ({ event }) => ({ cents: event.cents })),
          on: {
            "tool.pay.done": { target: "idle", actions: assign({ results: ({ context }) => [...context.results, "ok"] }) },
            "tool.pay.failed": {
              target: "idle",
              actions: assign({ results: ({ context, event }) => [...context.results, `failed:${event.error.code}`] }),
            },
          },
        },
      },
    }),
  });
  const authority = await TenantAuthority.create({ tenant: "acme", clock: { now: () => Date.now(), setTimer: () => () => {} } });
  const rootAuthority: RootAuthorityOracle = ({ onBehalfOf }) => onBehalfOf === "tsr:acme:user:alice";
  const store = createMemoryStore({ shared: true });
  const bus = createInProcessBus();
  const make = (nodeId: string): TesseraNode => {
    const node = createNode({
      store,
      agents: [agent],
      nodeId,
      logger: silent,
      transport: createInProcessTransport({ bus, subjectPrefix: "identity-cluster" }),
      cluster: { leaseTtlMs: 60_000, sweepIntervalMs: 50 },
      identity: { authorities: new Map([["acme", authority]]), rootAuthority },
    });
    open.push(node);
    return node;
  };
  const a = make("node-a");
  const b = make("node-b");
  await a.start();
  await b.start();
  await until(() => a.clusterStats.liveNodes.length === 2 && b.clusterStats.liveNodes.length === 2);
  const grant = async (runId: string) => [
    await authority.issueRootLink({
      aud: TesseraNode.principalOf("acme", runId),
      caps: [{ res: "tool:pay", act: "/invoke", cav: [] }],
      mdl: 1,
      ttlSeconds: 3600,
      onBehalfOf: { user: "tsr:acme:user:alice", authnHash: sha256("alice") },
    }),
  ];
  return { a, b, store, grant, calls, make };
}

describe("identity across nodes", () => {
  it("a revocation made on one node refuses calls on the node that owns the actor", async () => {
    const { a, b, store, grant, calls, make } = await twoNodes();
    // Runs until one lands on node-b: the revocation is then made where the actor is not.
    let runId = "";
    let chain: string[] = [];
    for (let i = 0; i < 20 && runId === ""; i++) {
      const id = `payer-${i}`;
      const links = await grant(id);
      await a.startRun({ tenantId: "acme", agentType: "payer", input: null, idempotencyKey: id, runId: id, chain: links });
      if ((await store.getActor("acme", id))!.ownerNode === "node-b") {
        runId = id;
        chain = links;
      }
    }
    expect(runId).not.toBe("");
    await until(async () => (await store.getActor("acme", runId))!.revision >= 1);
    const results = async () => ((await b.getContext("acme", runId)) as { results: string[] }).results;
    await b.sendEvent({ tenantId: "acme", actorId: runId, event: { type: "pay", cents: 1 }, messageId: "m1", chain });
    await until(async () => (await results()).length === 1);
    expect(await results()).toEqual(["ok"]);

    await a.revoke("acme", { kind: "hash", hash: tokenHash(chain[0]!) }, Math.floor(Date.now() / 1000) + 7200);
    // node-b heard of it: its intake refuses the chain, and nothing reached the tool again.
    await until(() =>
      b.sendEvent({ tenantId: "acme", actorId: runId, event: { type: "pay", cents: 2 }, messageId: "m2", chain }).then(
        () => false,
        (error: { code?: string }) => error.code === "ERR_AUTHZ_REVOKED",
      ),
    );
    expect(calls).toHaveLength(1);
    // A node started after the revocation heard no broadcast: it reads it from the stored log.
    const late = make("node-late");
    await late.start();
    await expect(
      late.sendEvent({ tenantId: "acme", actorId: runId, event: { type: "pay", cents: 3 }, messageId: "m3", chain }),
    ).rejects.toMatchObject({ code: "ERR_AUTHZ_REVOKED" });
  });

  it("an actor handed to another node signs with a new key there; the old one is retired", async () => {
    const { a, b, store, grant, calls } = await twoNodes();
    let runId = "";
    let chain: string[] = [];
    for (let i = 0; i < 20 && runId === ""; i++) {
      const id = `mover-${i}`;
      const links = await grant(id);
      await a.startRun({ tenantId: "acme", agentType: "payer", input: null, idempotencyKey: id, runId: id, chain: links });
      if ((await store.getActor("acme", id))!.ownerNode === "node-a") {
        runId = id;
        chain = links;
      }
    }
    await until(async () => (await store.getActor("acme", runId))!.revision >= 1);
    const identities = async () => (await store.readDirectory("acme", 0, 1000)).filter((e) => e.kind === "identity");
    const before = (await identities()).length;
    await a.drain({ graceMs: 1_000 });
    expect((await store.getActor("acme", runId))!.ownerNode).toBe("node-b");
    await b.sendEvent({ tenantId: "acme", actorId: runId, event: { type: "pay", cents: 3 }, messageId: "m1", chain });
    await until(async () => ((await b.getContext("acme", runId)) as { results: string[] }).results.length === 1);
    expect(((await b.getContext("acme", runId)) as { results: string[] }).results).toEqual(["ok"]);
    // node-b certified a key of its own for the actor, at the new epoch.
    expect((await identities()).length).toBeGreaterThan(before);
    expect(calls).toHaveLength(1);
  });
});
