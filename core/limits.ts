import { z } from "zod";
import { assert } from "./assert.js";

/**
 * Every limit Tessera enforces, named with its unit. A node takes a partial override in
 * `createNode({ limits })`; anything not given keeps the default below.
 */
export interface Limits {
  /** Largest serialized event accepted into a mailbox, in bytes. @defaultValue 262144 */
  eventBytesMax: number;
  /** Deepest nesting of objects and arrays in an event, tool argument or tool result. @defaultValue 32 */
  jsonDepthMax: number;
  /** Largest serialized tool or model result kept inline; larger ones go to a blob row. @defaultValue 16384 */
  inlinePayloadBytesMax: number;
  /** Largest serialized tool or model result accepted at all, in bytes. @defaultValue 4194304 */
  payloadBytesMax: number;
  /** Largest persisted snapshot of one actor, in bytes. @defaultValue 4194304 */
  snapshotBytesMax: number;
  /** Pending (unapplied) messages one actor may hold. @defaultValue 1024 */
  mailboxDepthMax: number;
  /** Children one actor may have spawned over its life. @defaultValue 256 */
  childrenPerActorMax: number;
  /** Depth of an actor hierarchy; a run's root actor has depth 0. @defaultValue 8 */
  hierarchyDepthMax: number;
  /** Steps one actor may take before it is halted. @defaultValue 100000 */
  stepsPerActorMax: number;
  /** Effects one step may plan. @defaultValue 64 */
  effectsPerStepMax: number;
  /** Steps committed in one group-commit transaction. @defaultValue 256 */
  groupCommitStepsMax: number;
  /**
   * Longest a group commit waits, under load, for as many steps as the last one held, in
   * milliseconds; 0 never waits. A batch after a small one (under 4 steps), or after a quiet spell,
   * never waits. The wait is a real `setTimeout`: under fake timers (`vi.useFakeTimers()`), set 0.
   * @defaultValue 1
   */
  groupCommitLingerMs: number;
  /** Full snapshot every this many steps; the journal carries the steps in between. @defaultValue 64 */
  snapshotIntervalSteps: number;
  /** Attempts of one idempotent effect, the first included. @defaultValue 5 */
  effectAttemptsMax: number;
  /** Delay of a timer, in milliseconds. @defaultValue 31536000000 (one year) */
  timerDelayMsMax: number;
  /** Length of an id (tenant, actor, message, idempotency key), in characters. @defaultValue 128 */
  idLengthMax: number;
  /** Tool call timeout used when a tool declares none, in milliseconds. @defaultValue 30000 */
  toolTimeoutMsDefault: number;
}

/** The defaults of {@link Limits}. */
export const defaultLimits: Readonly<Limits> = Object.freeze({
  eventBytesMax: 256 * 1024,
  jsonDepthMax: 32,
  inlinePayloadBytesMax: 16 * 1024,
  payloadBytesMax: 4 * 1024 * 1024,
  snapshotBytesMax: 4 * 1024 * 1024,
  mailboxDepthMax: 1024,
  childrenPerActorMax: 256,
  hierarchyDepthMax: 8,
  stepsPerActorMax: 100_000,
  effectsPerStepMax: 64,
  groupCommitStepsMax: 256,
  groupCommitLingerMs: 1,
  snapshotIntervalSteps: 64,
  effectAttemptsMax: 5,
  timerDelayMsMax: 365 * 24 * 3600 * 1000,
  idLengthMax: 128,
  toolTimeoutMsDefault: 30_000,
});

const positiveInt = z.number().int().positive();

/** zod schema of a partial {@link Limits} override. */
export const limitsSchema = z
  .object({
    eventBytesMax: positiveInt,
    jsonDepthMax: positiveInt.max(1024),
    inlinePayloadBytesMax: positiveInt,
    payloadBytesMax: positiveInt,
    snapshotBytesMax: positiveInt,
    mailboxDepthMax: positiveInt,
    childrenPerActorMax: positiveInt,
    hierarchyDepthMax: positiveInt.max(64),
    stepsPerActorMax: positiveInt,
    effectsPerStepMax: positiveInt,
    groupCommitStepsMax: positiveInt.max(4096),
    groupCommitLingerMs: z.number().int().min(0).max(1000),
    snapshotIntervalSteps: positiveInt.max(100_000),
    effectAttemptsMax: positiveInt.max(100),
    timerDelayMsMax: positiveInt,
    idLengthMax: positiveInt.max(1024),
    toolTimeoutMsDefault: positiveInt,
  })
  .strict()
  .partial();

/**
 * Merges an override into the defaults and checks the relationships between limits.
 *
 * @param override - the limits to change
 * @returns every limit, resolved
 * @throws InvariantError when limits contradict each other
 */
export function resolveLimits(override: Partial<Limits> = {}): Limits {
  const limits: Limits = { ...defaultLimits, ...override };
  assert(limits.inlinePayloadBytesMax <= limits.payloadBytesMax, "inlinePayloadBytesMax <= payloadBytesMax");
  assert(limits.eventBytesMax <= limits.payloadBytesMax, "eventBytesMax <= payloadBytesMax");
  assert(limits.snapshotIntervalSteps >= 1, "snapshotIntervalSteps >= 1");
  return limits;
}

// The defaults must satisfy their own relationships.
resolveLimits();
