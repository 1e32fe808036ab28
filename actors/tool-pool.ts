import { z } from "zod";
import { AgentError, ConfigError, OutcomeUnknownError, serializeError, ValidationError } from "../core/errors.js";
import type { Json } from "../core/json.js";
import type { Subscription, Transport } from "../core/ports/transport.js";
import type { ToolContext, ToolDefinition } from "./define-tool.js";
import { defineTool } from "./define-tool.js";
import type { Logger } from "./logger.js";
import { extractTraceContext, injectTraceHeaders } from "./transport/trace-headers.js";
import { context as otelContext } from "@opentelemetry/api";

/** Where a pooled tool's calls go. */
export interface ToolPoolOptions {
  /** The transport the pool's workers listen on (NATS in a cluster). */
  transport: Transport;
  /** The pool's name: one subject and one queue group (`tools.<pool>`). */
  pool: string;
}

const poolNamePattern = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
/** Longest a pooled call may wait for its worker when the tool declares no timeout, in milliseconds. */
export const poolCallTimeoutMsDefault = 30_000;

const requestSchema = z
  .object({
    tool: z.string().min(1).max(64),
    args: z.unknown(),
    context: z
      .object({
        idempotencyKey: z.string().min(1).max(512),
        tenantId: z.string().min(1).max(64),
        actorId: z.string().min(1).max(256),
        effectId: z.string().min(1).max(256),
        attempt: z.number().int().min(1),
        epoch: z.number().int().min(0),
        deadlineMs: z.number().int().min(1),
        authorization: z.record(z.string(), z.unknown()).optional(),
      })
      .strict(),
  })
  .strict();
const replySchema = z.union([
  z.object({ ok: z.literal(true), output: z.unknown() }).strict(),
  z
    .object({
      ok: z.literal(false),
      error: z.object({ code: z.string(), message: z.string(), retryable: z.boolean().optional() }).passthrough(),
    })
    .strict(),
]);

/**
 * Declares a tool that runs in a worker pool rather than in the node: each call goes over the
 * transport to one member of the pool's queue group (see {@link serveToolPool}), with the same
 * idempotency key, attempt, epoch and authorization record a local tool gets. Everything else is
 * as for a local tool: the node authorizes the call first (identity enabled), counts attempts in
 * the store, retries an idempotent one and leaves a non-idempotent one `unknown` when no answer
 * comes back after the request went out (timeout, connection closed, unreadable reply); only "no
 * worker listens" (`ERR_NO_RESPONDERS`) means it did not run. Secrets are not sent: a worker holds its own.
 *
 * @param declaration - the tool as {@link defineTool} takes it, without `execute`
 * @param options - the transport and the pool's name
 * @returns a tool definition for `defineAgent`'s `tools`
 * @throws ConfigError when the pool name or the declaration is invalid
 * @example
 * ```ts
 * const charge = poolTool({ name: "charge", description: "Charges a card", idempotent: true, input, output }, { transport, pool: "payments" });
 * // in the worker process:
 * serveToolPool({ transport, pool: "payments", tools: [chargeImplementation] });
 * ```
 */
export function poolTool<TInput extends z.ZodType, TOutput extends z.ZodType>(
  declaration: Omit<ToolDefinition<TInput, TOutput>, "execute">,
  options: ToolPoolOptions,
): ToolDefinition<TInput, TOutput> {
  checkPoolName(options.pool);
  const timeoutMs = declaration.timeoutMs ?? poolCallTimeoutMsDefault;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  return defineTool<TInput, TOutput>({
    ...declaration,
    async execute(args, ctx) {
      const body = {
        tool: declaration.name,
        args,
        context: {
          idempotencyKey: ctx.idempotencyKey,
          tenantId: ctx.tenantId,
          actorId: ctx.actorId,
          effectId: ctx.effectId,
          attempt: ctx.attempt,
          epoch: ctx.epoch,
          deadlineMs: timeoutMs,
          ...(ctx.authorization === undefined ? {} : { authorization: ctx.authorization }),
        },
      };
      let reply;
      try {
        reply = await options.transport.request(`tools.${options.pool}`, encoder.encode(JSON.stringify(body)), {
          timeoutMs,
          signal: ctx.signal,
          headers: injectTraceHeaders(),
        });
      } catch (error) {
        // No worker listens: nothing ran anywhere.
        if (error instanceof AgentError && error.code === "ERR_NO_RESPONDERS") throw error;
        // Anything else after the request went out (a timeout, a connection closed before the
        // reply): a worker may have run it. For a non-idempotent tool that is `unknown`, never failed.
        throw new OutcomeUnknownError(
          `pool ${options.pool} gave no answer for ${declaration.name}: ${String((error as Error)?.message ?? error)}`,
          {
            cause: error,
            details: { pool: options.pool, tool: declaration.name, timeoutMs },
          },
        );
      }
      let parsed;
      try {
        parsed = replySchema.safeParse(JSON.parse(decoder.decode(reply.data)));
      } catch (error) {
        parsed = { success: false as const, error };
      }
      if (!parsed.success) throw new OutcomeUnknownError(`pool ${options.pool} sent an unreadable reply for ${declaration.name}`);
      if (parsed.data.ok) return parsed.data.output as z.input<TOutput>;
      const e = parsed.data.error;
      throw new AgentError(e.code as never, e.message, { retryable: e.retryable ?? false, details: { pool: options.pool } });
    },
  });
}

/** Options of {@link serveToolPool}. */
export interface ServeToolPoolOptions extends ToolPoolOptions {
  /** The implementations this worker runs, by name. */
  tools: readonly ToolDefinition[];
  /** @defaultValue silent */
  logger?: Logger;
}

/** A running pool member. */
export interface ToolPoolWorker {
  /** Calls this member handled, by outcome. */
  readonly stats: { calls: number; failures: number; refused: number };
  /** Leaves the queue group; calls under way finish. */
  close(): void;
}

/**
 * Joins a tool pool's queue group: each pooled call goes to one member. The member validates the
 * arguments and the output against the tool's schemas, runs `execute` with the caller's
 * idempotency key, attempt, epoch and authorization record and a deadline, and answers with the
 * output or a typed error.
 *
 * @param options - transport, pool name, the tools this member runs
 * @returns the member
 * @throws ConfigError when the pool name is invalid
 */
export function serveToolPool(options: ServeToolPoolOptions): ToolPoolWorker {
  checkPoolName(options.pool);
  const tools = new Map(options.tools.map((t) => [t.name, t]));
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const stats = { calls: 0, failures: 0, refused: 0 };
  const answer = (respond: (data: Uint8Array) => boolean, body: Json): void => {
    respond(encoder.encode(JSON.stringify(body)));
  };
  const subscription: Subscription = options.transport.subscribe(
    `tools.${options.pool}`,
    async (message) => {
      const respond = (data: Uint8Array): boolean => message.respond(data);
      let request: z.infer<typeof requestSchema>;
      try {
        const parsed = requestSchema.safeParse(JSON.parse(decoder.decode(message.data)));
        if (!parsed.success) throw new ValidationError("ERR_VALIDATION", "malformed pool request");
        request = parsed.data;
      } catch (error) {
        stats.refused++;
        return answer(respond, { ok: false, error: serializeError(error) as unknown as Json });
      }
      const tool = tools.get(request.tool);
      if (tool === undefined) {
        stats.refused++;
        return answer(respond, {
          ok: false,
          error: { code: "ERR_UNKNOWN_TOOL", message: `pool ${options.pool} has no tool ${request.tool}`, retryable: false },
        });
      }
      stats.calls++;
      try {
        const args = tool.input.safeParse(request.args);
        if (!args.success) throw new ValidationError("ERR_VALIDATION", `arguments of ${tool.name} do not match its schema`);
        const c = request.context;
        const context: ToolContext = {
          idempotencyKey: c.idempotencyKey,
          signal: AbortSignal.timeout(c.deadlineMs),
          tenantId: c.tenantId,
          actorId: c.actorId,
          effectId: c.effectId,
          attempt: c.attempt,
          epoch: c.epoch,
          secrets: {},
          authorization: c.authorization,
        };
        const raw = await otelContext.with(extractTraceContext(message.headers), () => tool.execute(args.data, context));
        const output = tool.output.safeParse(raw);
        if (!output.success) throw new AgentError("ERR_TOOL_OUTPUT_INVALID", `output of tool ${tool.name} does not match its schema`);
        answer(respond, { ok: true, output: output.data as Json });
      } catch (error) {
        stats.failures++;
        const e = serializeError(error);
        answer(respond, { ok: false, error: { ...e, retryable: error instanceof AgentError ? error.retryable : true } as unknown as Json });
        options.logger?.warn({ err: e, tool: request.tool, pool: options.pool }, "pooled tool call failed");
      }
    },
    { queue: options.pool },
  );
  return {
    stats,
    close: () => subscription.unsubscribe(),
  };
}

function checkPoolName(pool: string): void {
  if (!poolNamePattern.test(pool)) throw new ConfigError(`pool name "${pool}" must match ${poolNamePattern}`, { details: { pool } });
}
