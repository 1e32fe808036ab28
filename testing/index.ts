/**
 * `@tessera/tessera/testing`: what a test of an agent needs without servers or network: a clock that
 * moves when told, a scripted model, and the in-memory store.
 */
export { SimulatedClock } from "../core/clock.js";
export { createScriptedModel } from "../actors/models/index.js";
export type { ScriptedModel, ScriptedReply, ScriptStep, TurnScript } from "../actors/models/index.js";
export { createMemoryStore } from "../persistence/memory/index.js";
export { createInProcessBus, createInProcessTransport } from "../actors/transport/in-process/index.js";
