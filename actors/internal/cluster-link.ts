import { z } from "zod";
import { serializeError } from "../../core/errors.js";
import type { Json } from "../../core/json.js";
import type { Subscription, Transport, TransportMessage } from "../../core/ports/transport.js";
import type { Logger } from "../logger.js";
import { extractTraceContext, injectTraceHeaders } from "../transport/trace-headers.js";
import { context as otelContext } from "@opentelemetry/api";

/**
 * A wake-up for an actor's owner: the actor has work in the store (it was created there, or a
 * message reached its mailbox: then its id rides along). The owner reads the message from the
 * store, which stays the record: a lost wake-up costs one sweep interval, never the message, and a
 * forged or corrupted one cannot change what is applied.
 */
export interface WakeNotice {
  tenantId: string;
  actorId: string;
  message?: { messageId: string };
}

/** Broadcast control between nodes. */
export type ControlNotice =
  /** A node joined: place new runs on it from now on. */
  | { kind: "node-joined"; nodeId: string }
  /** A node left (drained or closed): its actors are orphans now, claim them without waiting for a sweep. */
  | { kind: "node-left"; nodeId: string }
  /** A revocation made on one node, for every node's revocation list (IDENTITY.md §9). */
  | { kind: "revoke"; tenantId: string; target: Json; expiresAt: number }
  /** A kill switch was engaged: re-read the switches and halt resident actors of the type. */
  | { kind: "kill"; tenantId: string; agentType: string };

const wakeSchema = z
  .object({
    tenantId: z.string().min(1).max(256),
    actorId: z.string().min(1).max(256),
    message: z
      .object({ messageId: z.string().min(1).max(256) })
      .strict()
      .optional(),
  })
  .strict();
const controlSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("node-joined"), nodeId: z.string().min(1).max(64) }).strict(),
  z.object({ kind: z.literal("kill"), tenantId: z.string().min(1).max(64), agentType: z.string().min(1).max(256) }).strict(),
  z.object({ kind: z.literal("node-left"), nodeId: z.string().min(1).max(64) }).strict(),
  z.object({ kind: z.literal("revoke"), tenantId: z.string().min(1).max(64), target: z.unknown(), expiresAt: z.number() }).strict(),
]);

/** @internal Handlers of what other nodes send. */
export interface ClusterHandlers {
  wake(notice: WakeNotice): void;
  control(notice: ControlNotice): void;
}

/**
 * @internal The node's end of the transport: one subject per node for wake-ups (`node.<id>`), one
 * broadcast subject for control (`control`). Node ids are base64url-encoded into one subject
 * token. Trace context travels in headers. Publishing is best effort: a failure is logged and the
 * sweeper re-derives the work from the store.
 */
export class ClusterLink {
  readonly #transport: Transport;
  readonly #logger: Logger;
  readonly #subscriptions: Subscription[] = [];
  readonly #encoder = new TextEncoder();
  readonly #decoder = new TextDecoder();
  /** Wake-ups published and failed to publish, for tests and metrics. */
  readonly stats = { wakesSent: 0, wakesReceived: 0, publishFailures: 0, malformed: 0 };

  constructor(transport: Transport, logger: Logger) {
    this.#transport = transport;
    this.#logger = logger;
  }

  /** Subscribes this node's wake-up subject and the control subject. */
  listen(nodeId: string, handlers: ClusterHandlers): void {
    this.#subscriptions.push(
      this.#transport.subscribe(subjectOfNode(nodeId), (message) => {
        const notice = this.#decode(message, wakeSchema);
        if (notice === undefined) return;
        this.stats.wakesReceived++;
        otelContext.with(extractTraceContext(message.headers), () => handlers.wake(notice as WakeNotice));
      }),
      this.#transport.subscribe("control", (message) => {
        const notice = this.#decode(message, controlSchema);
        if (notice !== undefined) handlers.control(notice as ControlNotice);
      }),
    );
  }

  /** Tells `nodeId` that an actor it owns has work. Never throws. */
  wake(nodeId: string, notice: WakeNotice): void {
    this.stats.wakesSent++;
    this.#publish(subjectOfNode(nodeId), notice as unknown as Json);
  }

  /** Tells every node. Never throws. */
  broadcast(notice: ControlNotice): void {
    this.#publish("control", notice as unknown as Json);
  }

  /** Waits until what was published reached the transport's server, at most `timeoutMs`. */
  async flush(timeoutMs = 1_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#transport.flush().catch(() => undefined),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
  }

  /** Stops listening. The transport itself belongs to whoever created it. */
  close(): void {
    for (const subscription of this.#subscriptions.splice(0)) subscription.unsubscribe();
  }

  #publish(subject: string, body: Json): void {
    const data = this.#encoder.encode(JSON.stringify(body));
    this.#transport.publish(subject, data, { headers: injectTraceHeaders() }).catch((error: unknown) => {
      this.stats.publishFailures++;
      this.#logger.debug({ err: serializeError(error), subject }, "publish failed; the sweeper will find the work in the store");
    });
  }

  #decode(message: TransportMessage, schema: z.ZodTypeAny): unknown {
    try {
      const parsed = schema.safeParse(JSON.parse(this.#decoder.decode(message.data)));
      if (parsed.success) return parsed.data;
    } catch {
      // fall through: counted and logged below
    }
    this.stats.malformed++;
    this.#logger.warn({ subject: message.subject }, "dropped a malformed cluster message");
    return undefined;
  }
}

/** The subject of one node's wake-ups: its id as one base64url token. */
export function subjectOfNode(nodeId: string): string {
  return `node.${Buffer.from(nodeId, "utf8").toString("base64url")}`;
}
