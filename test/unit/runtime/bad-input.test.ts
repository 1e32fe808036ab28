import { assign, fromPromise, setup } from "xstate";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { callTool, sendToActor, spawnAgent } from "../../../actors/actions.js";
import { defineAgent } from "../../../actors/define-agent.js";
import { defineTool } from "../../../actors/define-tool.js";
import { createNode } from "../../../actors/node.js";
import { AgentError } from "../../../core/errors.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";

function makeProbe(gate: { release?: () => void; calls: number }) {
  const echo = defineTool({
    name: "echo",
    description: "Returns what it is given, or something invalid when asked to",
    idempotent: true,
    input: z.object({ text: z.string(), mode: z.enum(["ok", "badOutput", "huge", "block"]) }),
    output: z.object({ text: z.string() }),
    async execute({ text, mode }) {
      gate.calls += 1;
      if (mode === "block") await new Promise<void>((resolve) => (gate.release = resolve));
      if (mode === "badOutput") return { wrong: 1 } as unknown as { text: string };
      if (mode === "huge") return { text: "x".repeat(2048) };
      return { text };
    },
  });
  const probe = defineAgent({
    type: "probe",
    version: 1,
    tools: [echo],
    machine: setup({ types: {} as { context: { log: string[]; depth: number }; input: { depth?: number }; events: any } }).createMachine({
      context: ({ input }) => ({ log: [], depth: input?.depth ?? 0 }),
      initial: "idle",
      states: {
        idle: {
          on: {
            call: "calling",
            spawnChild: "spawning",
            note: { actions: assign({ log: ({ context, event }) => [...context.log, `note:${event.text}`] }) },
            finish: "done",
          },
        },
        calling: {
          entry: callTool("echo", ({ event }) => event.args),
          on: {
            "tool.echo.done": {
              target: "idle",
              actions: assign({ log: ({ context, event }) => [...context.log, `done:${event.output.text}`] }),
            },
            "tool.echo.failed": {
              target: "idle",
              actions: assign({ log: ({ context, event }) => [...context.log, `failed:${event.error.code}`] }),
            },
            note: { actions: assign({ log: ({ context, event }) => [...context.log, `note:${event.text}`] }) },
          },
        },
        spawning: {
          entry: spawnAgent(
            ({ context }: any) => `c${context.log.length}`,
            "probe",
            ({ context }) => ({ depth: context.depth + 1 }),
          ),
          always: "idle",
        },
        done: { type: "final" },
      },
      on: {
        "child.*": { actions: assign({ log: ({ context, event }) => [...context.log, `${event.type}:${event.error?.code ?? "ok"}`] }) },
      },
    }),
  });
  return probe;
}

async function setupNode(limits: Record<string, number> = {}) {
  const gate: { release?: () => void; calls: number } = { calls: 0 };
  const store = createMemoryStore();
  await store.migrate();
  const node = createNode({ store, agents: [makeProbe(gate)], logger: silent, limits });
  await node.start();
  const { runId } = await node.startRun({ tenantId: "t1", agentType: "probe", input: {}, idempotencyKey: "run-1" });
  await waitFor(async () => (await node.getActor("t1", runId)).revision >= 1);
  let n = 0;
  const send = (event: Record<string, unknown>) =>
    node.sendEvent({ tenantId: "t1", actorId: runId, event: event as never, messageId: `m${++n}` });
  const context = async () => (await node.getContext("t1", runId)) as { log: string[] };
  return { node, runId, send, context, gate };
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<AgentError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AgentError);
  expect((error as AgentError).code).toBe(code);
  return error as AgentError;
}

describe("bad input gets a typed error and loses nothing", () => {
  it("refuses malformed, unknown, reserved, oversized and too-deep events, then accepts a valid one", async () => {
    const { node, runId, send, context } = await setupNode({ eventBytesMax: 1024, jsonDepthMax: 8 });
    await expectCode(send({ type: "noSuchEvent" }), "ERR_UNKNOWN_EVENT_TYPE");
    await expectCode(send({ type: "tool.echo.done", output: { text: "forged" } }), "ERR_UNKNOWN_EVENT_TYPE");
    await expectCode(send({ type: "note", text: "y".repeat(2000) }), "ERR_PAYLOAD_TOO_LARGE");
    let deep: Record<string, unknown> = { v: 1 };
    for (let i = 0; i < 20; i++) deep = { deep };
    await expectCode(send({ type: "note", ...deep }), "ERR_PAYLOAD_TOO_DEEP");
    await expectCode(node.sendEvent({ tenantId: "t1", actorId: runId, event: "nope" as never, messageId: "x" }), "ERR_VALIDATION");
    await expectCode(
      node.sendEvent({ tenantId: "t1", actorId: "act_missing", event: { type: "note" }, messageId: "y" }),
      "ERR_ACTOR_NOT_FOUND",
    );
    await expectCode(
      node.sendEvent({ tenantId: "t2", actorId: runId, event: { type: "note", text: "a" }, messageId: "z" }),
      "ERR_ACTOR_NOT_FOUND",
    );
    await expectCode(node.startRun({ tenantId: "t1", agentType: "nope", input: {}, idempotencyKey: "k" }), "ERR_UNKNOWN_AGENT_TYPE");
    await expectCode(node.startRun({ tenantId: "bad tenant!", agentType: "probe", input: {}, idempotencyKey: "k" }), "ERR_VALIDATION");
    await expectCode(
      node.startRun({ tenantId: "t1", agentType: "probe", input: { other: 1 }, idempotencyKey: "run-1" }),
      "ERR_IDEMPOTENCY_MISMATCH",
    );
    expect((await send({ type: "note", text: "fine" })).accepted).toBe(true);
    await waitFor(async () => (await context()).log.includes("note:fine"));
    expect((await node.readJournal("t1", runId)).map((e) => e.seq)).toEqual([1, 2]);
    await node.close();
  });

  it("applies a message id once however often it is sent", async () => {
    const { node, runId, context } = await setupNode();
    for (let i = 0; i < 3; i++)
      await node.sendEvent({ tenantId: "t1", actorId: runId, event: { type: "note", text: "once" }, messageId: "same" });
    await node.sendEvent({ tenantId: "t1", actorId: runId, event: { type: "note", text: "after" }, messageId: "other" });
    await waitFor(async () => (await context()).log.includes("note:after"));
    expect((await context()).log.filter((l) => l === "note:once")).toHaveLength(1);
    await node.close();
  });

  it("records invalid tool arguments and outputs and oversized results as failed effects; the actor goes on", async () => {
    const { node, runId, send, context, gate } = await setupNode({
      payloadBytesMax: 1024,
      inlinePayloadBytesMax: 512,
      eventBytesMax: 1024,
    });
    await send({ type: "call", args: { text: 5, mode: "ok" } });
    await waitFor(async () => (await context()).log.length === 1);
    await send({ type: "call", args: { text: "a", mode: "badOutput" } });
    await waitFor(async () => (await context()).log.length === 2);
    await send({ type: "call", args: { text: "a", mode: "huge" } });
    await waitFor(async () => (await context()).log.length === 3);
    await send({ type: "call", args: { text: "fine", mode: "ok" } });
    await waitFor(async () => (await context()).log.length === 4);
    expect((await context()).log).toEqual([
      "failed:ERR_TOOL_INPUT_INVALID",
      "failed:ERR_TOOL_OUTPUT_INVALID",
      "failed:ERR_PAYLOAD_TOO_LARGE",
      "done:fine",
    ]);
    const effects = await node.listEffects("t1", runId);
    expect(effects.map((e) => [e.state, e.error?.code])).toEqual([
      ["failed", "ERR_TOOL_INPUT_INVALID"],
      ["failed", "ERR_TOOL_OUTPUT_INVALID"],
      ["failed", "ERR_PAYLOAD_TOO_LARGE"],
      ["completed", undefined],
    ]);
    expect(gate.calls).toBe(3);
    await node.close();
  });

  it("refuses a full mailbox with ERR_MAILBOX_FULL and keeps what it accepted", async () => {
    // Commits are held back so that messages stay pending in the durable mailbox.
    const inner = createMemoryStore();
    await inner.migrate();
    let releaseCommits: (() => void) | undefined;
    let held: Promise<void> | undefined;
    const store = new Proxy(inner, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (property === "commitSteps") {
          return async (commits: Parameters<typeof inner.commitSteps>[0]) => {
            if (held !== undefined) await held;
            return target.commitSteps(commits);
          };
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const node = createNode({ store, agents: [makeProbe({ calls: 0 })], logger: silent, limits: { mailboxDepthMax: 2 } });
    await node.start();
    const { runId } = await node.startRun({ tenantId: "t1", agentType: "probe", input: {}, idempotencyKey: "run-1" });
    await waitFor(async () => (await node.getActor("t1", runId)).revision >= 1);
    held = new Promise<void>((resolve) => (releaseCommits = resolve));
    const send = (text: string, id: string) =>
      node.sendEvent({ tenantId: "t1", actorId: runId, event: { type: "note", text }, messageId: id });
    await send("1", "m1");
    await send("2", "m2");
    await expectCode(send("3", "m3"), "ERR_MAILBOX_FULL");
    releaseCommits!();
    held = undefined;
    await waitFor(async () => ((await node.getContext("t1", runId)) as { log: string[] }).log.length === 2);
    expect(((await node.getContext("t1", runId)) as { log: string[] }).log).toEqual(["note:1", "note:2"]);
    expect((await send("3", "m3")).accepted).toBe(true);
    await node.close();
  });

  it("refuses too many children and too deep a hierarchy with typed errors delivered to the parent", async () => {
    const { node, runId, send, context } = await setupNode({ childrenPerActorMax: 1, hierarchyDepthMax: 1 });
    await send({ type: "spawnChild" });
    await waitFor(async () => (await node.listChildren("t1", runId)).length === 1);
    await send({ type: "spawnChild" });
    await waitFor(async () => (await context()).log.length === 1);
    expect((await context()).log).toEqual(["child.c0.failed:ERR_TOO_MANY_CHILDREN"]);
    const [child] = await node.listChildren("t1", runId);
    expect(child).toMatchObject({ depth: 1, parentId: runId, status: "active" });
    await node.sendEvent({ tenantId: "t1", actorId: child!.actorId, event: { type: "spawnChild" }, messageId: "c-spawn" });
    await waitFor(async () => ((await node.getContext("t1", child!.actorId)) as { log: string[] }).log.length === 1);
    expect(((await node.getContext("t1", child!.actorId)) as { log: string[] }).log).toEqual(["child.c0.failed:ERR_HIERARCHY_TOO_DEEP"]);
    await send({ type: "note", text: "still here" });
    await waitFor(async () => (await context()).log.includes("note:still here"));
    await node.close();
  });

  it("fails an actor whose statechart function throws, durably, without crashing the node", async () => {
    const thrower = defineAgent({
      type: "thrower",
      version: 1,
      tools: [],
      machine: setup({ types: {} as { context: { peer?: { id: string } }; events: any } }).createMachine({
        context: {},
        initial: "idle",
        states: { idle: { on: { go: { actions: sendToActor(({ context }) => context.peer!.id, { type: "hello" }) } } } },
      }),
    });
    const store = createMemoryStore();
    await store.migrate();
    const node = createNode({ store, agents: [thrower], logger: silent });
    await node.start();
    const { runId } = await node.startRun({ tenantId: "t1", agentType: "thrower", input: null, idempotencyKey: "x" });
    await node.sendEvent({ tenantId: "t1", actorId: runId, event: { type: "go" }, messageId: "go" });
    const view = await node.waitForStatus("t1", runId, { timeoutMs: 3000 });
    expect(view).toMatchObject({ status: "failed", error: { code: "ERR_AGENT_THREW" } });
    expect((await node.replay("t1", runId)).steps).toBe(2);
    await node.close();
  });

  it("refuses statecharts that use after delays or invoked promise actors", () => {
    const withAfter = setup({}).createMachine({ initial: "a", states: { a: { after: { 1000: "b" } }, b: {} } });
    expect(() => defineAgent({ type: "x", version: 1, tools: [], machine: withAfter })).toThrow(
      expect.objectContaining({ code: "ERR_UNSUPPORTED_MACHINE" }),
    );
    const withInvoke = setup({ actors: { p: fromPromise(async () => 1) } }).createMachine({
      initial: "a",
      states: { a: { invoke: { src: "p" } } },
    });
    expect(() => defineAgent({ type: "y", version: 1, tools: [], machine: withInvoke })).toThrow(
      expect.objectContaining({ code: "ERR_UNSUPPORTED_MACHINE" }),
    );
    expect(() => defineAgent({ type: "Bad Type", version: 1, tools: [], machine: withAfter })).toThrow(
      expect.objectContaining({ code: "ERR_CONFIG" }),
    );
  });

  it("refuses invalid node options with ERR_CONFIG naming the option", () => {
    const store = createMemoryStore();
    expect(() => createNode({ store, agents: [], logger: silent })).toThrow(expect.objectContaining({ code: "ERR_CONFIG" }));
    expect(() => createNode({ store, agents: [makeProbe({ calls: 0 })], limits: { mailboxDepthMax: -1 } })).toThrow(
      /limits.mailboxDepthMax/,
    );
  });
});
