import type { AnyMachineSnapshot } from "xstate";
import { pureInitialTransition, pureTransition } from "./pure-transition.js";
import { z } from "zod";
import { AgentError, serializeError, type SerializedError } from "../../core/errors.js";
import { idempotencyKeyOf, sha256 } from "../../core/ids.js";
import { encodeBounded, sortKeys, type Json } from "../../core/json.js";
import type { Limits } from "../../core/limits.js";
import type { ModelRequest } from "../../core/ports/model-client.js";
import type { ActorStatus, EffectRecord, NewActor, NewMessage, PlannedItems, TimerRecord } from "../../core/ports/store.js";
import { intentOf, resolveArg, type AgentModelRequest, type RuntimeIntent } from "../actions.js";
import type { AgentDefinition } from "../define-agent.js";
import type { ActorState } from "./actor-state.js";

/** @internal Who the actor is, as a step needs it. */
export interface ActorIdentity {
  tenantId: string;
  actorId: string;
  parentId: string | undefined;
  rootId: string;
  name: string | undefined;
  depth: number;
}

/** @internal Input of one pure step. */
export interface StepInput {
  def: AgentDefinition;
  /** `undefined` for the first (init) step. */
  state: ActorState | undefined;
  event: { type: string } & Record<string, Json>;
  actor: ActorIdentity;
  /** The seq this step will have. */
  seq: number;
  /** Time of the step (from the clock; during replay, the recorded time). */
  now: number;
  limits: Limits;
  /** The newest registered version of an agent type, if registered. */
  latestVersionOf: (agentType: string) => number | undefined;
}

/** @internal Everything a step decided, ready to be committed. */
export interface StepPlan {
  next: ActorState;
  status: ActorStatus;
  output: Json | undefined;
  error: SerializedError | undefined;
  effects: EffectRecord[];
  timersSet: TimerRecord[];
  timersCleared: string[];
  messages: NewMessage[];
  children: NewActor[];
  planned: PlannedItems;
  /** Non-durable user actions (logging and the like), run after the commit, never on replay. */
  afterCommit: Array<() => void>;
}

/** Event types the runtime reserves; a caller outside the runtime may not send them. */
export const reservedEventPrefixes = ["tessera.", "tool.", "model.", "timer.", "child."] as const;

/**
 * @internal Computes one step purely: the transition and everything it plans. Never does I/O;
 * the same input gives the same plan, which is what makes replay possible.
 */
export function planStep(input: StepInput): StepPlan {
  const { def, seq, limits } = input;
  // Events reach a step from memory live and from the store on replay, where jsonb may have
  // reordered their keys: both see them with keys sorted, so both compute the same thing.
  const event = sortKeys(input.event) as StepInput["event"];
  const plan = emptyPlan(input);
  // A timer that fires is spent: it leaves the actor's armed timers with the step that applies it.
  if (event.type.startsWith("timer.") && plan.next.timers[event.type.slice(6)]?.timerId === event.timerId)
    delete plan.next.timers[event.type.slice(6)];
  if (event.type === "tessera.stop") return finish(plan, input, "stopped", undefined, undefined);
  if (event.type === "tessera.halt") {
    // A kill switch: halted durably, before any further effect (DESIGN.md §6).
    const reason = typeof event.reason === "string" ? event.reason : "kill switch";
    return finish(plan, input, "halted", undefined, { code: "ERR_KILL_SWITCH", message: reason, details: { agentType: def.type } });
  }
  if (seq > limits.stepsPerActorMax) {
    const error = {
      code: "ERR_LIMIT_EXCEEDED",
      message: `actor took more than stepsPerActorMax=${limits.stepsPerActorMax} steps`,
      details: { limit: "stepsPerActorMax" },
    };
    return finish(plan, input, "halted", undefined, error);
  }
  let machine: AnyMachineSnapshot;
  let actions: Array<{ exec?: unknown; info?: unknown }>;
  try {
    [machine, actions] =
      input.state === undefined ? pureInitialTransition(def.machine, event.input) : pureTransition(def.machine, input.state.machine, event);
  } catch (thrown) {
    return finish(plan, input, "failed", undefined, { ...serializeError(thrown), code: "ERR_AGENT_THREW" });
  }
  plan.next.machine = machine;
  if (Object.keys(machine.children ?? {}).length > 0) {
    const error = { code: "ERR_UNSUPPORTED_MACHINE", message: "the statechart spawned an XState child actor; use spawnAgent" };
    return finish(plan, input, "failed", undefined, error);
  }
  let index = 0;
  for (const action of actions) {
    const intent = intentOf(action.exec);
    if (intent === undefined) {
      if (typeof action.exec === "function") plan.afterCommit.push(() => (action.exec as (info: unknown) => void)(action.info));
      continue;
    }
    try {
      applyIntent(plan, input, intent, action.info as { context: unknown; event: unknown }, index++);
    } catch (thrown) {
      // A statechart function that throws (a bad `send` target, a timer delay of undefined.x) fails
      // the actor, durably and the same way on replay, instead of escaping the step.
      return finish(plan, input, "failed", undefined, { ...serializeError(thrown), code: "ERR_AGENT_THREW" });
    }
  }
  if (plan.effects.length > limits.effectsPerStepMax) {
    const error = {
      code: "ERR_LIMIT_EXCEEDED",
      message: `a step planned ${plan.effects.length} effects, over effectsPerStepMax=${limits.effectsPerStepMax}`,
      details: { limit: "effectsPerStepMax" },
    };
    return finish(emptyPlan(input), input, "halted", undefined, error);
  }
  if (machine.status === "done") {
    const output = (machine.output ?? null) as Json;
    if (machine.hasTag("failed"))
      return finish(plan, input, "failed", output, {
        code: "ERR_AGENT_FAILED",
        message: `agent reached a failed final state`,
        details: { output },
      });
    return finish(plan, input, "completed", output, undefined);
  }
  if (machine.status === "error")
    return finish(plan, input, "failed", undefined, { ...serializeError(machine.error), code: "ERR_AGENT_THREW" });
  return plan;
}

function emptyPlan(input: StepInput): StepPlan {
  const base: ActorState = input.state ?? {
    agentVersion: input.def.version,
    machine: undefined as unknown as AnyMachineSnapshot,
    children: {},
    timers: {},
    childCount: 0,
  };
  return {
    next: { ...base, children: { ...base.children }, timers: { ...base.timers } },
    status: "active",
    output: undefined,
    error: undefined,
    effects: [],
    timersSet: [],
    timersCleared: [],
    messages: [],
    children: [],
    planned: { effects: [], timers: [], cancelledTimers: [], messages: [], children: [] },
    afterCommit: [],
  };
}

function applyIntent(
  plan: StepPlan,
  input: StepInput,
  intent: RuntimeIntent,
  info: { context: unknown; event: unknown },
  index: number,
): void {
  const args = { context: info.context, event: info.event };
  switch (intent.kind) {
    case "tool":
      return planTool(plan, input, resolveArg(intent.name, args), () => resolveArg(intent.args, args), index);
    case "model":
      return planModel(plan, input, intent.name, () => resolveArg(intent.request, args), index);
    case "startTimer": {
      const delayMs = resolveArg(intent.delayMs, args);
      const bounded = Math.min(Math.max(0, Number.isFinite(delayMs) ? delayMs : 0), input.limits.timerDelayMsMax);
      clearTimer(plan, intent.name);
      const timer = { timerId: `t${input.seq}.${index}`, dueAt: input.now + bounded };
      plan.next.timers[intent.name] = timer;
      plan.timersSet.push({
        tenantId: input.actor.tenantId,
        actorId: input.actor.actorId,
        timerId: timer.timerId,
        name: intent.name,
        dueAt: timer.dueAt,
        createdSeq: input.seq,
      });
      plan.planned.timers.push({ timerId: timer.timerId, name: intent.name, dueAt: timer.dueAt });
      return;
    }
    case "cancelTimer":
      return clearTimer(plan, intent.name);
    case "spawn":
      return planSpawn(plan, input, resolveArg(intent.name, args), intent.agentType, () => resolveArg(intent.input, args), index);
    case "stopChild": {
      const childId = plan.next.children[intent.name];
      if (childId !== undefined) pushMessage(plan, input, childId, { type: "tessera.stop" }, `stop.${childId}`);
      return;
    }
    case "send": {
      const to = typeof intent.to === "object" && "parent" in intent.to ? input.actor.parentId : resolveArg(intent.to, args);
      const event = resolveArg(intent.event, args);
      if (to === undefined) return;
      return pushMessage(plan, input, to, event, `m.${input.actor.actorId}.${input.seq}.${index}`);
    }
  }
}

function clearTimer(plan: StepPlan, name: string): void {
  const armed = plan.next.timers[name];
  if (armed === undefined) return;
  delete plan.next.timers[name];
  plan.timersCleared.push(armed.timerId);
  plan.planned.cancelledTimers.push(armed.timerId);
}

function newEffect(input: StepInput, kind: "tool" | "model", name: string, args: Json, idempotent: boolean, index: number): EffectRecord {
  const effectId = `e${input.seq}.${index}`;
  const { tenantId, actorId } = input.actor;
  return {
    tenantId,
    actorId,
    effectId,
    kind,
    name,
    args,
    idempotent,
    idempotencyKey: idempotencyKeyOf(tenantId, actorId, effectId),
    // An idempotent effect is dispatched as soon as its step commits, so the step commits its first
    // attempt as started: a crash during that attempt is counted, never lost, at no extra write.
    // A non-idempotent one stays planned until it is durably marked running, just before its one call.
    state: idempotent ? "running" : "planned",
    attempts: idempotent ? 1 : 0,
    nextAttemptAt: undefined,
    result: undefined,
    resultRef: undefined,
    error: undefined,
    usage: undefined,
    createdSeq: input.seq,
    completedSeq: undefined,
    createdAt: input.now,
    updatedAt: input.now,
  };
}

/** A planned effect that failed validation is recorded as failed and its failure sent to the actor itself. */
function failEffect(plan: StepPlan, input: StepInput, effect: EffectRecord, error: SerializedError): void {
  effect.state = "failed";
  effect.attempts = 0;
  effect.error = error;
  effect.completedSeq = input.seq;
  pushMessage(
    plan,
    input,
    input.actor.actorId,
    { type: `${effect.kind}.${effect.name}.failed`, effectId: effect.effectId, error: error as unknown as Json },
    `f.${effect.effectId}`,
  );
}

function planTool(plan: StepPlan, input: StepInput, name: string, resolve: () => Json, index: number): void {
  const tool = input.def.tools.find((t) => t.name === name);
  const effect = newEffect(input, "tool", name, null, tool?.idempotent ?? false, index);
  plan.effects.push(effect);
  plan.planned.effects.push({ effectId: effect.effectId, kind: "tool", name });
  if (tool === undefined)
    return failEffect(plan, input, effect, {
      code: "ERR_UNKNOWN_TOOL",
      message: `agent ${input.def.type} has no tool "${name}"`,
      details: { tool: name },
    });
  try {
    const raw = resolve();
    encodeBounded(raw, { bytesMax: input.limits.payloadBytesMax, depthMax: input.limits.jsonDepthMax, what: `arguments of tool ${name}` });
    const parsed = tool.input.safeParse(raw);
    if (!parsed.success) {
      effect.args = raw;
      return failEffect(plan, input, effect, {
        code: "ERR_TOOL_INPUT_INVALID",
        message: `arguments of tool ${name} are invalid: ${z.prettifyError(parsed.error)}`,
        details: { tool: name, issues: parsed.error.issues as unknown as Json },
      });
    }
    effect.args = parsed.data as Json;
  } catch (thrown) {
    failEffect(plan, input, effect, serializeError(thrown));
  }
}

function planModel(plan: StepPlan, input: StepInput, name: string, resolve: () => AgentModelRequest, index: number): void {
  const effect = newEffect(input, "model", name, null, true, index);
  plan.effects.push(effect);
  plan.planned.effects.push({ effectId: effect.effectId, kind: "model", name });
  try {
    const request = resolve();
    const tools = (request.tools ?? []).map((toolName) => {
      const tool = input.def.tools.find((t) => t.name === toolName);
      if (tool === undefined)
        throw new AgentError("ERR_UNKNOWN_TOOL", `model call ${name} names unknown tool "${toolName}"`, { details: { tool: toolName } });
      return { name: tool.name, description: tool.description, parameters: z.toJSONSchema(tool.input, { io: "input" }) as Json };
    });
    const full: ModelRequest = { ...request, tools: tools.length > 0 ? tools : undefined };
    const json = JSON.parse(
      encodeBounded(full, { bytesMax: input.limits.payloadBytesMax, depthMax: input.limits.jsonDepthMax, what: `model request ${name}` }),
    ) as Json;
    effect.args = json;
  } catch (thrown) {
    failEffect(plan, input, effect, serializeError(thrown));
  }
}

function planSpawn(plan: StepPlan, input: StepInput, name: string, agentType: string, resolve: () => Json, index: number): void {
  const { tenantId, actorId } = input.actor;
  const childId = `act_${sha256(`${tenantId}\u0000${actorId}\u0000${input.seq}\u0000${index}`).slice(0, 26)}`;
  const version = input.latestVersionOf(agentType);
  const fail = (code: string, message: string, details: Record<string, Json>): void =>
    pushMessage(
      plan,
      input,
      actorId,
      { type: `child.${name}.failed`, actorId: childId, error: { code, message, details } },
      `f.${childId}`,
    );
  if (version === undefined) return fail("ERR_UNKNOWN_AGENT_TYPE", `no agent type "${agentType}" is registered`, { agentType });
  if (plan.next.childCount >= input.limits.childrenPerActorMax) {
    return fail("ERR_TOO_MANY_CHILDREN", `actor has spawned childrenPerActorMax=${input.limits.childrenPerActorMax} children`, {
      limit: "childrenPerActorMax",
      max: input.limits.childrenPerActorMax,
    });
  }
  if (input.actor.depth + 1 > input.limits.hierarchyDepthMax) {
    return fail(
      "ERR_HIERARCHY_TOO_DEEP",
      `a child at depth ${input.actor.depth + 1} would exceed hierarchyDepthMax=${input.limits.hierarchyDepthMax}`,
      { limit: "hierarchyDepthMax", max: input.limits.hierarchyDepthMax },
    );
  }
  let childInput: Json;
  try {
    childInput = resolve();
    encodeBounded(childInput, {
      bytesMax: input.limits.eventBytesMax,
      depthMax: input.limits.jsonDepthMax,
      what: `input of child ${name}`,
    });
  } catch (thrown) {
    const e = serializeError(thrown);
    return fail(e.code, e.message, {});
  }
  plan.next.childCount += 1;
  plan.next.children[name] = childId;
  plan.children.push({
    tenantId,
    actorId: childId,
    agentType,
    agentVersion: version,
    parentId: actorId,
    rootId: input.actor.rootId,
    name,
    depth: input.actor.depth + 1,
    input: childInput,
    epoch: 0,
    ownerNode: undefined,
    createdAt: input.now,
  });
  plan.planned.children.push({ actorId: childId, name, agentType });
}

function pushMessage(plan: StepPlan, input: StepInput, to: string, event: Json & { type: string }, messageId: string): void {
  plan.messages.push({ tenantId: input.actor.tenantId, actorId: to, messageId, event, sender: input.actor.actorId, createdAt: input.now });
  plan.planned.messages.push({ messageId, toActorId: to, type: event.type });
}

/** Ends the actor: tells its parent, stops its children, drops its timers. */
function finish(
  plan: StepPlan,
  input: StepInput,
  status: ActorStatus,
  output: Json | undefined,
  error: SerializedError | undefined,
): StepPlan {
  plan.status = status;
  plan.output = output;
  plan.error = error;
  for (const name of Object.keys(plan.next.timers)) clearTimer(plan, name);
  for (const childId of Object.values(plan.next.children)) pushMessage(plan, input, childId, { type: "tessera.stop" }, `stop.${childId}`);
  const { parentId, name, actorId } = input.actor;
  if (parentId !== undefined && name !== undefined) {
    const suffix = status === "completed" ? "done" : status === "stopped" ? "stopped" : "failed";
    const event: Json & { type: string } = { type: `child.${name}.${suffix}`, actorId };
    if (output !== undefined) event.output = output;
    if (error !== undefined) event.error = error as unknown as Json;
    pushMessage(plan, input, parentId, event, `c.${actorId}`);
  }
  if (plan.next.machine === undefined && input.state !== undefined) plan.next.machine = input.state.machine;
  return plan;
}
