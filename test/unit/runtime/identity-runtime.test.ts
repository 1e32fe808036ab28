/**
 * Identity through the runtime: revocation takes effect at once, a tool gets only its declared
 * secret and only for a verified invocation, secret values never reach the record, and a
 * long-resident actor's short-lived identity is renewed instead of expiring.
 */
import { randomBytes } from "node:crypto";
import { assign, setup } from "xstate";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { callTool } from "../../../actors/actions.js";
import { defineAgent } from "../../../actors/define-agent.js";
import { defineTool } from "../../../actors/define-tool.js";
import { createNode, TesseraNode } from "../../../actors/node.js";
import { SimulatedClock } from "../../../core/clock.js";
import { sha256 } from "../../../core/ids.js";
import { TenantAuthority, tokenHash, Vault, type RootAuthorityOracle } from "../../../identity/index.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";

const canary = "sk_live_CANARY_4b1d9e";

async function setupNode(clock: SimulatedClock | undefined) {
  const seen: Array<{ secrets: Record<string, string>; args: unknown }> = [];
  const payTool = defineTool({
    name: "pay",
    description: "Pays with the payments key",
    idempotent: true,
    secrets: ["payments"],
    input: z.object({ cents: z.number() }),
    output: z.object({ receipt: z.string() }),
    execute: async (args, ctx) => {
      seen.push({ secrets: { ...ctx.secrets }, args });
      return { receipt: `paid with ${ctx.secrets.payments}` }; // a careless tool echoes its secret
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
            "tool.pay.done": {
              target: "idle",
              actions: assign({ results: ({ context, event }) => [...context.results, `ok:${event.output.receipt}`] }),
            },
            "tool.pay.failed": {
              target: "idle",
              actions: assign({ results: ({ context, event }) => [...context.results, `failed:${event.error.code}`] }),
            },
          },
        },
      },
    }),
  });
  const authorityClock = clock ?? { now: () => Date.now(), setTimer: () => () => {} };
  const authority = await TenantAuthority.create({ tenant: "acme", clock: authorityClock });
  const vault = new Vault({ tenant: "acme", keyEncryptionKey: randomBytes(32) });
  await vault.put("payments", canary);
  await vault.put("other", "sk_other_secret_value");
  const rootAuthority: RootAuthorityOracle = ({ onBehalfOf }) => onBehalfOf === "tsr:acme:user:alice";
  const store = createMemoryStore();
  await store.migrate();
  const node = createNode({
    store,
    agents: [agent],
    logger: silent,
    clock,
    identity: { authorities: new Map([["acme", authority]]), rootAuthority, vaults: new Map([["acme", vault]]) },
  });
  await node.start();
  const runId = "payer-1";
  const grant = async (ttlSeconds = 3600) => [
    await authority.issueRootLink({
      aud: TesseraNode.principalOf("acme", runId),
      caps: [{ res: "tool:pay", act: "/invoke", cav: [] }],
      mdl: 1,
      ttlSeconds,
      onBehalfOf: { user: "tsr:acme:user:alice", authnHash: sha256("alice") },
    }),
  ];
  const chain = await grant();
  await node.startRun({ tenantId: "acme", agentType: "payer", input: null, idempotencyKey: runId, runId, chain });
  let n = 0;
  const results = async () => ((await node.getContext("acme", runId)) as { results: string[] } | null)?.results ?? [];
  await node.waitForStatus("acme", runId, { statuses: ["active"], timeoutMs: 5000 });
  while ((await node.getActor("acme", runId)).revision < 1) await new Promise((r) => setTimeout(r, 5));
  const pay = async (cents: number, withChain = chain) => {
    const before = (await results()).length;
    await node.sendEvent({ tenantId: "acme", actorId: runId, event: { type: "pay", cents }, messageId: `m${++n}`, chain: withChain });
    for (let i = 0; i < 500; i++) {
      const now = await results();
      if (now.length > before) return now.at(-1)!;
      clock?.advance(0);
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error("no result");
  };
  return { node, store, runId, chain, pay, seen, grant };
}

describe("identity through the runtime", () => {
  it("releases only the declared secret, for verified invocations, and redacts it from the record", async () => {
    const { node, store, runId, pay, seen } = await setupNode(undefined);
    const result = await pay(100);
    expect(result.startsWith("ok:paid with ")).toBe(true);
    expect(result).not.toContain(canary); // the model's context (the statechart) never sees the value
    expect(seen).toEqual([{ secrets: { payments: canary }, args: { cents: 100 } }]);
    const record = JSON.stringify([
      await store.listEffects("acme", runId),
      await store.readJournal("acme", runId, { limit: 100 }),
      await node.getContext("acme", runId),
    ]);
    expect(record).not.toContain(canary);
    expect(record).not.toContain("sk_other_secret_value");
    await node.close();
  });

  it("refuses every call under a revoked grant, at once, without reaching the tool", async () => {
    const { node, pay, seen, chain } = await setupNode(undefined);
    expect(await pay(1)).toMatch(/^ok:/);
    // Revoking the grant's link kills it and everything delegated below it (the actor's subtree).
    await node.revoke("acme", { kind: "hash", hash: tokenHash(chain[0]!) }, Math.floor(Date.now() / 1000) + 7200);
    await expect(pay(2)).rejects.toMatchObject({ code: "ERR_AUTHZ_REVOKED" });
    expect(seen).toHaveLength(1);
    await node.close();
  });

  it("renews a long-resident actor's identity at half-life, so its calls keep working for hours", async () => {
    const clock = new SimulatedClock(Date.UTC(2026, 11, 1, 9));
    const { node, pay, grant, seen } = await setupNode(clock);
    expect(await pay(1)).toMatch(/^ok:/);
    for (let hour = 1; hour <= 3; hour++) {
      clock.advance(3600 * 1000);
      // A fresh grant for each hour (links expire too); the actor's key is the one renewed.
      expect(await pay(hour + 1, await grant())).toMatch(/^ok:/);
    }
    expect(seen).toHaveLength(4);
    await node.close();
  });
});
