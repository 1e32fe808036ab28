import type { TracerProvider } from "@opentelemetry/api";
import { z } from "zod";
import type { Clock } from "../core/clock.js";
import type { Json } from "../core/json.js";
import { ConfigError } from "../core/errors.js";
import { newId } from "../core/ids.js";
import { limitsSchema, resolveLimits, type Limits } from "../core/limits.js";
import type { ModelClient } from "../core/ports/model-client.js";
import type { Store } from "../core/ports/store.js";
import type { Transport } from "../core/ports/transport.js";
import type { AgentDefinition } from "./define-agent.js";
import type { Logger } from "./logger.js";
import type { NodeIdentityOptions } from "./node-identity.js";

/** Options of {@link createNode}. */
export interface NodeOptions {
  /** Where actors live. The node does not close it: whoever opened it does. */
  store: Store;
  /** Every agent type (and every version still running) this node can host. */
  agents: readonly AgentDefinition[];
  /** The model behind `callModel`. Required only by agents that call a model. */
  model?: ModelClient;
  /**
   * How nodes reach each other (NATS in a cluster: `createNatsTransport`): wake-ups of an actor's
   * owner, broadcast control. Never the system of record: without one, other nodes still find their
   * work through the store, one sweep interval later.
   */
  transport?: Transport;
  /** @defaultValue the system clock */
  clock?: Clock;
  /** @defaultValue the global OpenTelemetry provider (a no-op unless one is registered) */
  tracerProvider?: TracerProvider;
  /** @defaultValue JSON lines to stderr at `warn` */
  logger?: Logger;
  /** Overrides of named limits (core/limits.ts). */
  limits?: Partial<Limits>;
  /** @defaultValue a random id */
  nodeId?: string;
  /** Default retry of idempotent tools. */
  retry?: { baseDelayMs?: number; maxDelayMs?: number };
  /**
   * How often `waitForStatus` re-reads the store, in milliseconds. An actor resident on this node is
   * re-read 10 times less often, at most every 5 s (its commits wake the waiter). @defaultValue 200
   */
  statusPollMs?: number;
  /** Actors activated at once during recovery. @defaultValue 16 */
  recoveryConcurrency?: number;
  /** Identity and delegation: with it, no actor acts without a verified chain. */
  identity?: NodeIdentityOptions;
  /** Leases, heartbeats and the sweeper (DESIGN.md §7). */
  cluster?: ClusterOptions;
  /** When idle actors leave memory. */
  passivation?: PassivationOptions;
  /** What the node says about itself in the node registry (an address, a version): a JSON object. */
  info?: Record<string, Json>;
}

/** Leases and the sweeper. Every time is in milliseconds. */
export interface ClusterOptions {
  /**
   * How long a node's lease lasts without a renewal, by the database's clock. When it expires any
   * live node may take the node's actors over. @defaultValue 10000
   */
  leaseTtlMs?: number;
  /** How often the node renews its lease (one statement). Must be below `leaseTtlMs / 2`. @defaultValue leaseTtlMs / 3 */
  renewIntervalMs?: number;
  /**
   * How often the node claims orphaned actors and re-reads work NATS may have lost (pending
   * messages, due timers, unstarted actors). @defaultValue 2000
   */
  sweepIntervalMs?: number;
  /** Actors claimed or swept per statement. @defaultValue 500 */
  sweepPageSize?: number;
}

/** Passivation: idle actors are dropped from memory and come back on their next message or timer. */
export interface PassivationOptions {
  /** An actor with nothing queued, running or in flight for this long leaves memory. @defaultValue 120000 */
  idleMs?: number;
  /** At most this many actors stay resident; past it the least recently used idle ones leave. @defaultValue 50000 */
  residentActorsMax?: number;
}

/** @internal Options after parsing: every field present. */
export interface ResolvedNodeOptions {
  store: Store;
  agents: readonly AgentDefinition[];
  model: ModelClient | undefined;
  transport: Transport | undefined;
  clock: Clock | undefined;
  tracerProvider: TracerProvider | undefined;
  logger: Logger | undefined;
  limits: Limits;
  nodeId: string;
  retry: { baseDelayMs: number; maxDelayMs: number };
  statusPollMs: number;
  recoveryConcurrency: number;
  identity: NodeIdentityOptions | undefined;
  cluster: { leaseTtlMs: number; renewIntervalMs: number; sweepIntervalMs: number; sweepPageSize: number };
  passivation: { idleMs: number; residentActorsMax: number };
  info: Record<string, Json>;
}

const schema = z
  .object({
    store: z.custom<Store>((v) => typeof v === "object" && v !== null && typeof (v as Store).commitSteps === "function", "a Store"),
    agents: z
      .array(z.custom<AgentDefinition>((v) => typeof v === "object" && v !== null && "machine" in v, "an agent from defineAgent"))
      .min(1),
    model: z
      .custom<ModelClient>((v) => typeof v === "object" && v !== null && typeof (v as ModelClient).complete === "function")
      .optional(),
    transport: z.custom<Transport>().optional(),
    clock: z.custom<Clock>((v) => typeof v === "object" && v !== null && typeof (v as Clock).now === "function").optional(),
    tracerProvider: z.custom<TracerProvider>().optional(),
    logger: z.custom<Logger>().optional(),
    limits: limitsSchema.optional(),
    nodeId: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,64}$/)
      .optional(),
    retry: z
      .object({ baseDelayMs: z.number().int().min(0).max(3_600_000), maxDelayMs: z.number().int().min(0).max(86_400_000) })
      .partial()
      .strict()
      .optional(),
    statusPollMs: z.number().int().min(1).max(60_000).optional(),
    recoveryConcurrency: z.number().int().min(1).max(1024).optional(),
    identity: z
      .custom<NodeIdentityOptions>(
        (v) => typeof v === "object" && v !== null && (v as NodeIdentityOptions).authorities instanceof Map,
        "identity options with an `authorities` map",
      )
      .optional(),
    cluster: z
      .object({
        leaseTtlMs: z.number().int().min(100).max(3_600_000),
        renewIntervalMs: z.number().int().min(10).max(1_800_000),
        sweepIntervalMs: z.number().int().min(10).max(3_600_000),
        sweepPageSize: z.number().int().min(1).max(10_000),
      })
      .partial()
      .strict()
      .optional(),
    passivation: z
      .object({ idleMs: z.number().int().min(1).max(86_400_000), residentActorsMax: z.number().int().min(1).max(10_000_000) })
      .partial()
      .strict()
      .optional(),
    info: z.record(z.string(), z.custom<Json>()).optional(),
  })
  .strict();

/** @internal Parses node options once, at construction. */
export function resolveNodeOptions(options: NodeOptions): ResolvedNodeOptions {
  const parsed = schema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`invalid node option ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}`, {
      details: { issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), code: i.code, message: i.message })) },
    });
  }
  const o = parsed.data;
  return {
    store: o.store,
    agents: o.agents,
    model: o.model,
    transport: o.transport,
    clock: o.clock,
    tracerProvider: o.tracerProvider,
    logger: o.logger,
    limits: resolveLimits(o.limits),
    nodeId: o.nodeId ?? newId("node"),
    retry: { baseDelayMs: o.retry?.baseDelayMs ?? 100, maxDelayMs: o.retry?.maxDelayMs ?? 30_000 },
    statusPollMs: o.statusPollMs ?? 200,
    recoveryConcurrency: o.recoveryConcurrency ?? 16,
    identity: o.identity,
    cluster: resolveCluster(o.cluster ?? {}),
    passivation: { idleMs: o.passivation?.idleMs ?? 120_000, residentActorsMax: o.passivation?.residentActorsMax ?? 50_000 },
    info: o.info ?? {},
  };
}

function resolveCluster(c: ClusterOptions): ResolvedNodeOptions["cluster"] {
  const leaseTtlMs = c.leaseTtlMs ?? 10_000;
  const renewIntervalMs = c.renewIntervalMs ?? Math.floor(leaseTtlMs / 3);
  if (renewIntervalMs * 2 > leaseTtlMs) {
    throw new ConfigError(`cluster.renewIntervalMs (${renewIntervalMs}) must be at most half of cluster.leaseTtlMs (${leaseTtlMs})`, {
      details: { renewIntervalMs, leaseTtlMs },
    });
  }
  return { leaseTtlMs, renewIntervalMs, sweepIntervalMs: c.sweepIntervalMs ?? 2_000, sweepPageSize: c.sweepPageSize ?? 500 };
}
