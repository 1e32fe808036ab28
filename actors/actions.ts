import type { Json } from "../core/json.js";
import type { ModelRequest } from "../core/ports/model-client.js";

/** What an action creator's argument functions receive: the statechart's context and event at that point. */
export interface ActionArgs<TContext = any, TEvent = any> {
  context: TContext;
  event: TEvent;
}

type Resolvable<T, TContext, TEvent> = T | ((args: ActionArgs<TContext, TEvent>) => T);

/** A model request as an agent writes it: `tools` names the agent's tools the model may call. */
export interface AgentModelRequest extends Omit<ModelRequest, "tools"> {
  tools?: string[];
}

/** @internal The durable intents a statechart can express. */
export type RuntimeIntent =
  | { kind: "tool"; name: Resolvable<string, any, any>; args: Resolvable<Json, any, any> }
  | { kind: "model"; name: string; request: Resolvable<AgentModelRequest, any, any> }
  | { kind: "startTimer"; name: string; delayMs: Resolvable<number, any, any> }
  | { kind: "cancelTimer"; name: string }
  | { kind: "spawn"; name: Resolvable<string, any, any>; agentType: string; input: Resolvable<Json, any, any> }
  | { kind: "send"; to: Resolvable<string, any, any> | { parent: true }; event: Resolvable<Json & { type: string }, any, any> }
  | { kind: "stopChild"; name: string };

/** @internal Marks functions returned by the action creators below. */
export const intentMarker: unique symbol = Symbol.for("tessera.intent");

/** An XState action that the runtime turns into a durable intent after the step commits. */
export type DurableAction = ((...args: any[]) => void) & { readonly [intentMarker]: RuntimeIntent };

function durable(intent: RuntimeIntent): DurableAction {
  // The function itself does nothing: xstate's pure `transition` hands it back to the runtime,
  // which reads the marker, plans the intent, commits it, and only then acts.
  const action = (() => undefined) as unknown as DurableAction;
  Object.defineProperty(action, intentMarker, { value: intent, enumerable: false });
  return action;
}

/** @internal Reads the intent of an action returned by `transition`, if it is one of ours. */
export function intentOf(exec: unknown): RuntimeIntent | undefined {
  if (typeof exec !== "function") return undefined;
  return (exec as Partial<DurableAction>)[intentMarker];
}

/**
 * Calls one of the agent's tools as a durable effect. Its outcome comes back as the event
 * `tool.<name>.done` (`{ effectId, output }`) or `tool.<name>.failed` (`{ effectId, error }`).
 *
 * @param name - a tool declared in the agent's `tools`, or a function returning one (for tool
 *   calls a model chose; handle the results with a wildcard such as `"tool.*"`)
 * @param args - the arguments, or a function of `{ context, event }` returning them
 * @returns an XState action
 * @example
 * ```ts
 * entry: callTool("lookupOrder", ({ context }) => ({ orderId: context.orderId })),
 * on: { "tool.lookupOrder.done": { target: "checking", actions: assign({ order: ({ event }) => event.output }) } }
 * ```
 */
export function callTool<TContext = any, TEvent = any>(
  name: Resolvable<string, TContext, TEvent>,
  args: Resolvable<Json, TContext, TEvent>,
): DurableAction {
  return durable({ kind: "tool", name, args });
}

/**
 * Calls the node's model as a durable effect. The reply comes back as `model.<name>.done`
 * (`{ effectId, output: ModelResponse }`) or `model.<name>.failed`. A replay uses the recorded reply.
 *
 * @param name - names the call (and its result event)
 * @param request - messages and the names of the tools the model may call, or a function returning them
 * @returns an XState action
 * @example
 * ```ts
 * entry: callModel("plan", ({ context }) => ({ messages: context.messages, tools: ["lookupOrder"] }))
 * ```
 */
export function callModel<TContext = any, TEvent = any>(
  name: string,
  request: Resolvable<AgentModelRequest, TContext, TEvent>,
): DurableAction {
  return durable({ kind: "model", name, request });
}

/**
 * Arms a durable timer: an absolute deadline in the store, re-armed after any restart. When due,
 * the actor receives `timer.<name>`. Starting a timer of the same name replaces it.
 *
 * @param name - the timer's name
 * @param delayMs - milliseconds from now, or a function returning them
 * @returns an XState action
 * @example
 * ```ts
 * entry: startTimer("followUp", 24 * 3600 * 1000), on: { "timer.followUp": "remind" }
 * ```
 */
export function startTimer<TContext = any, TEvent = any>(name: string, delayMs: Resolvable<number, TContext, TEvent>): DurableAction {
  return durable({ kind: "startTimer", name, delayMs });
}

/**
 * Cancels a durable timer by name (nothing happens if none is armed).
 *
 * @param name - the timer's name
 * @returns an XState action
 * @example
 * ```ts
 * exit: cancelTimer("followUp")
 * ```
 */
export function cancelTimer(name: string): DurableAction {
  return durable({ kind: "cancelTimer", name });
}

/**
 * Spawns a sub-agent: a new actor of `agentType` with its own id, a link to this actor and a depth.
 * Its completion arrives as `child.<name>.done` (`{ actorId, output }`), its failure as
 * `child.<name>.failed` (`{ actorId, error }`), a stop as `child.<name>.stopped`.
 *
 * @param name - the child's name within this actor, or a function returning it (a name spawned
 *   again while the earlier child runs replaces it in the parent's map of children)
 * @param agentType - a registered agent type
 * @param input - the child's input, or a function returning it
 * @returns an XState action
 * @example
 * ```ts
 * entry: spawnAgent("fraudCheck", "fraud-check", ({ context }) => ({ orderId: context.orderId }))
 * ```
 */
export function spawnAgent<TContext = any, TEvent = any>(
  name: Resolvable<string, TContext, TEvent>,
  agentType: string,
  input: Resolvable<Json, TContext, TEvent>,
): DurableAction {
  return durable({ kind: "spawn", name, agentType, input });
}

/**
 * Stops a child spawned under `name`, and with it the child's whole subtree.
 *
 * @param name - the child's name
 * @returns an XState action
 * @example
 * ```ts
 * actions: stopChild("fraudCheck")
 * ```
 */
export function stopChild(name: string): DurableAction {
  return durable({ kind: "stopChild", name });
}

/**
 * Sends an event to another actor of the same tenant through its durable mailbox; it is applied
 * there exactly once.
 *
 * @param to - the actor id, or a function returning it
 * @param event - the event (a JSON object with a `type`), or a function returning it
 * @returns an XState action
 * @example
 * ```ts
 * actions: sendToActor(({ context }) => context.peerId, { type: "ping" })
 * ```
 */
export function sendToActor<TContext = any, TEvent = any>(
  to: Resolvable<string, TContext, TEvent>,
  event: Resolvable<Json & { type: string }, TContext, TEvent>,
): DurableAction {
  return durable({ kind: "send", to, event });
}

/**
 * Sends an event to this actor's parent.
 *
 * @param event - the event, or a function returning it
 * @returns an XState action
 * @example
 * ```ts
 * actions: sendToParent({ type: "progress", percent: 50 })
 * ```
 */
export function sendToParent<TContext = any, TEvent = any>(event: Resolvable<Json & { type: string }, TContext, TEvent>): DurableAction {
  return durable({ kind: "send", to: { parent: true }, event });
}

/** @internal Resolves a value-or-function against the action's arguments. */
export function resolveArg<T>(value: Resolvable<T, any, any>, args: ActionArgs): T {
  return typeof value === "function" ? (value as (a: ActionArgs) => T)(args) : value;
}
