import { z } from "zod";
import { assert } from "../../../core/assert.js";
import { parseOptions } from "../internal/parse-options.js";
import { subjectMatches } from "../internal/subjects.js";
import { TransportError } from "../transport-error.js";

/** @internal One subscription as the bus sees it: a wire-subject pattern and where to deliver. */
export interface BusSubscription {
  /** Tokens of the pattern, prefix included. */
  readonly pattern: readonly string[];
  readonly queue: string | undefined;
  /** Called from the bus's delivery loop, never inside `route`. */
  deliver(wireSubject: string, data: Uint8Array, headers: Readonly<Record<string, string>>, reply: BusReply | undefined): void;
}

/** @internal The way back to a requester. */
export interface BusReply {
  respond(data: Uint8Array, headers: Readonly<Record<string, string>>): void;
}

/**
 * The shared medium of in-process transports: one bus per simulated cluster. Transports made on
 * the same bus reach each other's subscriptions and share queue groups, as nodes on one NATS
 * server do. Deliveries run from a FIFO queue on `setImmediate`, so a publisher never runs a
 * handler, and messages from one publisher reach one subscriber in order.
 */
export interface InProcessBus {
  /** Deliveries a bus holds before `publish` is refused. @defaultValue 1048576 */
  readonly pendingDeliveriesMax: number;
  /** Bytes of message data a bus holds before `publish` is refused. @defaultValue 268435456 */
  readonly pendingBytesMax: number;
  /** Deliveries accepted and not yet handed to a handler. */
  pendingDeliveries(): number;
  /** Bytes of message data accepted and not yet handed to a handler. */
  pendingBytes(): number;
  /** Live subscriptions of every transport on the bus. */
  subscriptionCount(): number;
  /** @internal Adds a subscription; the returned function removes it. */
  attach(subscription: BusSubscription): () => void;
  /**
   * @internal Queues the message for every matching subscription outside a queue group and one
   * member of each matching queue group; returns how many deliveries it queued.
   */
  route(wireSubject: string, data: Uint8Array, headers: Readonly<Record<string, string>>, reply?: BusReply): number;
  /** @internal Resolves once every delivery queued so far was handed to its handler. */
  whenDelivered(): Promise<void>;
}

/** Options of {@link createInProcessBus}. */
export interface InProcessBusOptions {
  /** Deliveries a bus holds before `publish` is refused with retryable `ERR_TRANSPORT`. @defaultValue 1048576 */
  pendingDeliveriesMax?: number;
  /** Bytes of message data (one copy per delivery) a bus holds before `publish` is refused likewise. @defaultValue 268435456 */
  pendingBytesMax?: number;
}

type Item =
  | {
      kind: "delivery";
      subscription: BusSubscription;
      subject: string;
      data: Uint8Array;
      headers: Readonly<Record<string, string>>;
      reply: BusReply | undefined;
    }
  | { kind: "marker"; done: () => void };

const optionsSchema = z
  .object({
    pendingDeliveriesMax: z.number().int().min(1).max(67_108_864).optional(),
    pendingBytesMax: z
      .number()
      .int()
      .min(1)
      .max(2 ** 40)
      .optional(),
  })
  .strict();

// Deliveries handed out per macrotask, so that a burst does not starve timers and I/O.
const deliveriesPerTurn = 4096;

/**
 * Makes a bus for in-process transports that should reach each other.
 *
 * @param options - the bound on queued deliveries
 * @returns a bus to pass as `bus` to {@link createInProcessTransport}
 * @throws ConfigError `ERR_CONFIG` when an option is invalid
 * @example
 * ```ts
 * const bus = createInProcessBus();
 * const nodeA = createInProcessTransport({ bus });
 * const nodeB = createInProcessTransport({ bus });
 * ```
 */
export function createInProcessBus(options: InProcessBusOptions = {}): InProcessBus {
  const parsed = parseOptions(optionsSchema, options, "in-process bus");
  const pendingDeliveriesMax = parsed.pendingDeliveriesMax ?? 1_048_576;
  const pendingBytesMax = parsed.pendingBytesMax ?? 256 * 1024 * 1024;
  const subscriptions = new Set<BusSubscription>();
  const queueCursors = new Map<string, number>();
  let queue: (Item | undefined)[] = [];
  let head = 0;
  let deliveries = 0;
  let bytes = 0;
  let scheduled = false;

  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(drain);
  };

  const drain = (): void => {
    scheduled = false;
    const stop = Math.min(queue.length, head + deliveriesPerTurn);
    while (head < stop) {
      const item = queue[head];
      queue[head] = undefined;
      head++;
      assert(item !== undefined, "a queued item is delivered once");
      if (item.kind === "marker") {
        item.done();
        continue;
      }
      deliveries--;
      bytes -= item.data.byteLength;
      // A subscription removed after the message was queued gets nothing, as with NATS UNSUB.
      if (subscriptions.has(item.subscription)) item.subscription.deliver(item.subject, item.data, item.headers, item.reply);
    }
    if (head === queue.length) {
      queue = [];
      head = 0;
      assert(deliveries === 0 && bytes === 0, "no delivery is pending once the queue is empty");
      return;
    }
    if (head >= deliveriesPerTurn * 4) {
      queue = queue.slice(head);
      head = 0;
    }
    schedule();
  };

  const pickRecipients = (tokens: readonly string[]): BusSubscription[] => {
    const recipients: BusSubscription[] = [];
    const groups = new Map<string, BusSubscription[]>();
    for (const subscription of subscriptions) {
      if (!subjectMatches(subscription.pattern, tokens)) continue;
      if (subscription.queue === undefined) recipients.push(subscription);
      else {
        const members = groups.get(subscription.queue);
        if (members === undefined) groups.set(subscription.queue, [subscription]);
        else members.push(subscription);
      }
    }
    for (const [name, members] of groups) {
      // Round-robin per queue name across every matching member, as nats-server groups queue subscribers by name.
      const cursor = queueCursors.get(name) ?? 0;
      queueCursors.set(name, (cursor + 1) % Number.MAX_SAFE_INTEGER);
      const member = members[cursor % members.length];
      assert(member !== undefined, "a queue group has a member");
      recipients.push(member);
    }
    return recipients;
  };

  const refuseOverflow = (addedDeliveries: number, addedBytes: number): void => {
    const overflow =
      deliveries + addedDeliveries > pendingDeliveriesMax
        ? { limit: "pendingDeliveriesMax", max: pendingDeliveriesMax, actual: deliveries + addedDeliveries }
        : bytes + addedBytes > pendingBytesMax
          ? { limit: "pendingBytesMax", max: pendingBytesMax, actual: bytes + addedBytes }
          : undefined;
    if (overflow === undefined) return;
    throw new TransportError("ERR_TRANSPORT", `in-process bus is full: ${overflow.limit} ${overflow.max} would be exceeded`, {
      retryable: true,
      details: overflow,
    });
  };

  return {
    pendingDeliveriesMax,
    pendingBytesMax,
    pendingDeliveries: () => deliveries,
    pendingBytes: () => bytes,
    subscriptionCount: () => subscriptions.size,
    attach(subscription) {
      assert(!subscriptions.has(subscription), "a subscription is attached once");
      subscriptions.add(subscription);
      return () => {
        if (!subscriptions.delete(subscription)) return;
        const queueName = subscription.queue;
        if (queueName !== undefined && ![...subscriptions].some((s) => s.queue === queueName)) queueCursors.delete(queueName);
      };
    },
    route(wireSubject, data, headers, reply) {
      const recipients = pickRecipients(wireSubject.split("."));
      refuseOverflow(recipients.length, recipients.length * data.byteLength);
      for (const subscription of recipients) {
        // Each recipient gets its own copy, as each NATS subscriber gets its own buffer.
        queue.push({ kind: "delivery", subscription, subject: wireSubject, data: data.slice(), headers, reply });
      }
      deliveries += recipients.length;
      bytes += recipients.length * data.byteLength;
      if (recipients.length > 0) schedule();
      return recipients.length;
    },
    whenDelivered() {
      return new Promise<void>((resolve) => {
        queue.push({ kind: "marker", done: resolve });
        schedule();
      });
    },
  };
}
