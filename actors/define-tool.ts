import type { z } from "zod";
import { ConfigError } from "../core/errors.js";

/** How a failed idempotent tool call is retried: capped exponential backoff with full jitter. */
export interface RetryPolicy {
  /** Attempts in all, the first included. @defaultValue the node's `effectAttemptsMax` */
  attemptsMax?: number;
  /** Base delay before the second attempt, in milliseconds. @defaultValue 100 */
  baseDelayMs?: number;
  /** Largest delay between attempts, in milliseconds. @defaultValue 30000 */
  maxDelayMs?: number;
}

/** What a tool's `execute` receives besides its arguments. */
export interface ToolContext {
  /** Stable per logical effect: the same on every retry and after any crash. Send it to the service. */
  idempotencyKey: string;
  /** Aborted when the call times out or the node shuts down. */
  signal: AbortSignal;
  tenantId: string;
  /** The acting actor. */
  actorId: string;
  effectId: string;
  /** 1 for the first attempt. */
  attempt: number;
  /** The lease epoch of the acting node (send it as `X-Tessera-Epoch` to let services fence). */
  epoch: number;
  /** The secrets the tool declared, released for this verified invocation only (identity enabled). */
  secrets: Readonly<Record<string, string>>;
  /** Who authorised this call, under what (the verified invocation's audit record), when identity is enabled. */
  authorization: Readonly<Record<string, unknown>> | undefined;
}

/** A tool as declared. */
export interface ToolDefinition<TInput extends z.ZodType = z.ZodType, TOutput extends z.ZodType = z.ZodType> {
  name: string;
  description: string;
  input: TInput;
  output: TOutput;
  /** Whether calling twice with the same idempotency key is safe. Non-idempotent tools run at most once. */
  idempotent: boolean;
  retry?: RetryPolicy;
  /** Per-attempt timeout in milliseconds. @defaultValue the node's `toolTimeoutMsDefault` */
  timeoutMs?: number;
  /** Names of vault secrets the tool needs; it receives only these, only for a verified invocation. */
  secrets?: readonly string[];
  execute(args: z.output<TInput>, context: ToolContext): Promise<z.input<TOutput>>;
}

const toolNamePattern = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

/**
 * Declares a tool once: its schemas (also given to models as JSON Schema), whether it is idempotent,
 * its retry policy and timeout, and what it does.
 *
 * @param definition - the tool
 * @returns the same definition, checked
 * @throws ConfigError when the name or the policy is invalid
 * @example
 * ```ts
 * const lookupOrder = defineTool({
 *   name: "lookupOrder", description: "Finds an order", idempotent: true,
 *   input: z.object({ orderId: z.string() }), output: z.object({ total: z.number() }),
 *   execute: async ({ orderId }, { idempotencyKey }) => orders.get(orderId, idempotencyKey),
 * });
 * ```
 */
export function defineTool<TInput extends z.ZodType, TOutput extends z.ZodType>(
  definition: ToolDefinition<TInput, TOutput>,
): ToolDefinition<TInput, TOutput> {
  if (!toolNamePattern.test(definition.name)) {
    throw new ConfigError(`tool name "${definition.name}" must match ${toolNamePattern}`, { details: { tool: definition.name } });
  }
  const retry = definition.retry ?? {};
  for (const [key, value] of Object.entries(retry)) {
    if (value !== undefined && (!Number.isInteger(value) || value < (key === "attemptsMax" ? 1 : 0))) {
      throw new ConfigError(`tool ${definition.name}: retry.${key} must be a non-negative integer`, { details: { tool: definition.name } });
    }
  }
  if (definition.timeoutMs !== undefined && (!Number.isInteger(definition.timeoutMs) || definition.timeoutMs <= 0)) {
    throw new ConfigError(`tool ${definition.name}: timeoutMs must be a positive integer`, { details: { tool: definition.name } });
  }
  return definition;
}
