/**
 * Implementations of the `ModelClient` port: an OpenAI-compatible HTTP client and a scripted model
 * for tests and examples.
 *
 * @packageDocumentation
 */
export { createOpenAiCompatibleModel } from "./openai-compatible-model.js";
export type { OpenAiCompatibleModelOptions } from "./openai-compatible-model.js";
export { createScriptedModel } from "./scripted-model.js";
export type { ScriptedModel, ScriptedModelOptions, ScriptedReply, ScriptStep, TurnScript } from "./scripted-model.js";
