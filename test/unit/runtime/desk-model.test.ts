import { getSimplePaths } from "xstate/graph";
import { describe, expect, it } from "vitest";
import { resolveLimits } from "../../../core/limits.js";
import { planStep, type StepPlan } from "../../../actors/internal/plan-step.js";
import type { ActorState } from "../../../actors/internal/actor-state.js";
import { makeDeskAgents } from "../../helpers/agents.js";
import { setup } from "xstate";
import { startTimer } from "../../../actors/actions.js";
import { defineAgent } from "../../../actors/define-agent.js";

/**
 * Model test of the support-desk statechart: every simple path through its graph, driven through
 * the runtime's pure step function, plans exactly the durable intents its states declare.
 */
describe("support-desk statechart (graph paths)", () => {
  const { desk } = makeDeskAgents({ calls: [] });
  const events = [
    { type: "tool.lookupOrder.done", effectId: "e", output: { orderId: "o-1", total: 42 } },
    { type: "tool.lookupOrder.failed", effectId: "e", error: { code: "ERR_TOOL_FAILED", message: "down" } },
    { type: "child.check.done", actorId: "c", output: { risk: "low" } },
    { type: "tool.refund.done", effectId: "e", output: { refundId: "r-1" } },
    { type: "tool.refund.failed", effectId: "e", error: { code: "ERR_TOOL_FAILED", message: "declined" } },
    { type: "timer.settle", timerId: "t" },
    { type: "nudge" },
  ];
  const paths = getSimplePaths(desk.machine, { events, input: { orderId: "o-1" } } as never);
  const intentsOf = (plan: StepPlan): string[] => [
    ...plan.planned.effects.map((e) => `${e.kind}:${e.name}`),
    ...plan.planned.children.map((c) => `spawn:${c.agentType}`),
    ...plan.planned.timers.map((t) => `timer:${t.name}`),
  ];
  const expected: Record<string, string[]> = {
    lookingUp: ["tool:lookupOrder"],
    checking: ["spawn:fraud-check"],
    refunding: ["tool:refund"],
    waiting: ["timer:settle"],
    done: [],
    failed: [],
  };

  it("has paths to both final states", () => {
    const finals = new Set(paths.map((p) => String(p.state.value)));
    expect(finals).toContain("done");
    expect(finals).toContain("failed");
    expect(paths.length).toBeGreaterThanOrEqual(6);
  });

  it.each(paths.map((p) => [p.steps.map((s) => s.event.type).join(" → "), p] as const))("path %s", (_name, path) => {
    const limits = resolveLimits();
    const actor = { tenantId: "t", actorId: "a", parentId: undefined, rootId: "a", name: undefined, depth: 0 };
    let state: ActorState | undefined;
    let seq = 0;
    let status = "active";
    for (const step of path.steps) {
      const event = step.event.type === "xstate.init" ? { type: "tessera.init", input: { orderId: "o-1" } } : (step.event as never);
      const plan = planStep({
        def: desk,
        state,
        event,
        actor,
        seq: ++seq,
        now: 1000,
        limits,
        latestVersionOf: (t) => (t === "fraud-check" ? 1 : undefined),
      });
      const value = String(plan.next.machine.value);
      expect(value).toBe(String(step.state.value));
      const entered = state === undefined || String(state.machine.value) !== value;
      if (entered) expect(intentsOf(plan)).toEqual(expected[value]);
      state = plan.next;
      status = plan.status;
    }
    const last = String(path.state.value);
    if (last === "done") expect(status).toBe("completed");
    if (last === "failed") expect(status).toBe("failed");
    if (last !== "done" && last !== "failed") expect(status).toBe("active");
  });
});

describe("a fired timer", () => {
  it("is spent: it leaves the armed timers, and a stale firing of a replaced timer is not its own", () => {
    const agent = defineAgent({
      type: "ticker",
      version: 1,
      tools: [],
      machine: setup({ types: {} as { events: any } }).createMachine({
        initial: "a",
        states: { a: { entry: startTimer("tick", 1000), on: { "timer.tick": "b" } }, b: { on: { again: "a" } } },
      }),
    });
    const limits = resolveLimits();
    const actor = { tenantId: "t", actorId: "a", parentId: undefined, rootId: "a", name: undefined, depth: 0 };
    const step = (state: ActorState | undefined, event: { type: string } & Record<string, never>, seq: number) =>
      planStep({ def: agent, state, event, actor, seq, now: 0, limits, latestVersionOf: () => undefined });
    const first = step(undefined, { type: "tessera.init" } as never, 1);
    const armed = first.next.timers.tick!;
    expect(armed.dueAt).toBe(1000);
    const fired = step(first.next, { type: "timer.tick", timerId: armed.timerId } as never, 2);
    expect(String(fired.next.machine.value)).toBe("b");
    expect(fired.next.timers).toEqual({});
  });
});
