import { connect, headers as natsHeaders } from "@nats-io/transport-node";
import type { Msg, MsgHdrs, NatsConnection, Subscription as NatsSubscription } from "@nats-io/transport-node";
import { assert } from "../../../core/assert.js";
import type {
  MessageHandler,
  PublishOptions,
  RequestOptions,
  Subscription,
  SubscribeOptions,
  Transport,
  TransportMessage,
} from "../../../core/ports/transport.js";
import { invokeHandler, report } from "../internal/handler.js";
import {
  checkData,
  checkPayloadBytes,
  checkRequestTimeout,
  emptyHeaders,
  encodedMessageBytes,
  normalizeHeaders,
} from "../internal/message-checks.js";
import { checkQueueName, checkSubject, createPrefixer } from "../internal/subjects.js";
import { TransportError } from "../transport-error.js";
import { translateNatsError } from "./nats-errors.js";
import type { NatsTransportOptions, ResolvedNatsTransportOptions } from "./nats-options.js";
import { resolveNatsOptions, toConnectionOptions } from "./nats-options.js";
import { createRequestMux } from "./nats-requests.js";
import { trackStatus } from "./nats-status.js";
import type { NatsTransportStatus } from "./nats-status.js";

/** The NATS transport: a {@link Transport} that reports its connection status and is `AsyncDisposable`. */
export type NatsTransport = Transport & AsyncDisposable & { status(): NatsTransportStatus };

/**
 * Connects to NATS and returns a {@link Transport} over NATS core: prefixed subjects, queue
 * groups, request/reply with a timeout that abandons the request, headers, and NATS errors
 * translated into {@link AgentError} codes with the original as `cause`. The client reconnects
 * on its own and re-subscribes. While it reconnects, `publish`, `request`, `respond` and `flush`
 * fail fast with retryable `ERR_TRANSPORT` (the client would drop such messages anyway); what was
 * in flight when the connection broke, or published before a silent peer was detected by pings,
 * is lost. The store is the system of record and re-derives it (DESIGN.md §7).
 *
 * @param options - servers, prefix, timeouts, limits, reconnection and error listener
 * @returns the connected transport
 * @throws ConfigError `ERR_CONFIG` naming the bad option
 * @throws TransportError `ERR_TRANSPORT` (retryable) when no server answers within `connectTimeoutMs`; the message names the URLs and how to start NATS
 * @example
 * ```ts
 * const transport = await createNatsTransport({ servers: "nats://127.0.0.1:4222", subjectPrefix: "acme" });
 * transport.subscribe("tools.search", (m) => m.respond(search(m.data)), { queue: "search-workers" });
 * const reply = await transport.request("tools.search", query, { timeoutMs: 5000 });
 * await transport.close();
 * ```
 */
export async function createNatsTransport(options: NatsTransportOptions): Promise<NatsTransport> {
  const resolved = resolveNatsOptions(options);
  const nc = await connectWithin(resolved);
  return wrapConnection(nc, resolved);
}

async function connectWithin(o: ResolvedNatsTransportOptions): Promise<NatsConnection> {
  const servers = o.servers.join(", ");
  const fail = (why: string, cause?: unknown): TransportError =>
    new TransportError(
      "ERR_TRANSPORT",
      `NATS at ${servers} is not answering (${why}). Start NATS, for example \`nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server &\`, ` +
        "or pass the right `servers`.",
      { retryable: true, details: { servers: o.servers, connectTimeoutMs: o.connectTimeoutMs }, ...(cause === undefined ? {} : { cause }) },
    );
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const attempt = connect(toConnectionOptions(o));
  // The client bounds each dial by `timeout`, but not the whole list of servers; this bounds the whole.
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(fail(`no connection within connectTimeoutMs ${o.connectTimeoutMs}`));
    }, o.connectTimeoutMs);
  });
  try {
    return await Promise.race([attempt, deadline]);
  } catch (error) {
    if (timedOut) {
      // A connection that arrives after we gave up is closed at once rather than leaked.
      attempt.then((late) => late.close()).catch(() => {});
      throw error;
    }
    throw fail(error instanceof Error ? error.message : String(error), error);
  } finally {
    clearTimeout(timer);
  }
}

function wrapConnection(nc: NatsConnection, o: ResolvedNatsTransportOptions): NatsTransport {
  const prefixer = createPrefixer(o.subjectPrefix);
  const status = trackStatus(nc, o.onError);
  const requests = createRequestMux(nc);
  const subscriptions = new Set<NatsSubscription>();
  let isClosed = false;
  let closing: Promise<void> | undefined;

  const closedPromise: Promise<Error | undefined> = nc.closed().then((error) => {
    isClosed = true;
    const closedError = error
      ? new TransportError("ERR_TRANSPORT", `NATS connection to ${o.servers.join(", ")} closed: ${error.message}`, {
          cause: error,
          details: { servers: o.servers },
        })
      : undefined;
    requests.failAll(closedError ?? new TransportError("ERR_TRANSPORT_CLOSED", "NATS transport closed while the request was pending"));
    subscriptions.clear();
    return closedError;
  });

  const ensureOpen = (operation: string, subject: string): void => {
    if (isClosed || nc.isClosed()) {
      throw new TransportError("ERR_TRANSPORT_CLOSED", `NATS transport is closed: cannot ${operation} "${subject}"`, {
        details: { subject },
      });
    }
  };

  // While disconnected the client would buffer the message, then discard its buffer at the next
  // dial attempt: everything published during an outage was lost in our crash test. Refusing it
  // tells the caller the truth (retry later, or leave it to the store's sweeper).
  const ensureConnected = (operation: string, subject: string): void => {
    ensureOpen(operation, subject);
    if (status.state() !== "reconnecting") return;
    throw new TransportError(
      "ERR_TRANSPORT",
      `NATS connection to ${nc.getServer()} is down, reconnecting: did not ${operation} "${subject}"`,
      {
        retryable: true,
        details: { subject, state: "reconnecting" },
      },
    );
  };

  /** Validates an outgoing message against our limit and the server's max_payload; returns NATS headers. */
  const checkOutgoing = (subject: string, data: Uint8Array, headers: Record<string, string> | undefined): MsgHdrs | undefined => {
    checkData(subject, data);
    const normalized = normalizeHeaders(headers);
    const bytes = encodedMessageBytes(data, normalized);
    if (o.payloadBytesMax !== undefined) checkPayloadBytes(subject, bytes, o.payloadBytesMax);
    checkPayloadBytes(subject, bytes, status.serverPayloadBytesMax(), "max_payload");
    return toNatsHeaders(normalized);
  };

  const toMessage = (msg: Msg, subject: string): TransportMessage => ({
    subject,
    // A plain Uint8Array view (no copy) rather than the socket's Buffer, whose slice() does not copy.
    data: new Uint8Array(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength),
    headers: fromNatsHeaders(msg.headers),
    respond(data: Uint8Array, respondOptions?: PublishOptions): boolean {
      if (!msg.reply) return false;
      ensureConnected("respond to", subject);
      const headers = checkOutgoing(subject, data, respondOptions?.headers);
      try {
        nc.publish(msg.reply, data, headers ? { headers } : {});
      } catch (error) {
        throw translateNatsError(error, { operation: "respond", subject });
      }
      return true;
    },
  });

  const transport: NatsTransport = {
    kind: "nats",

    async publish(subject: string, data: Uint8Array, publishOptions?: PublishOptions): Promise<void> {
      ensureConnected("publish to", subject);
      checkSubject(subject, "publish");
      const headers = checkOutgoing(subject, data, publishOptions?.headers);
      try {
        nc.publish(prefixer.add(subject), data, headers ? { headers } : {});
      } catch (error) {
        throw translateNatsError(error, { operation: "publish", subject });
      }
    },

    subscribe(subject: string, handler: MessageHandler, subscribeOptions?: SubscribeOptions): Subscription {
      ensureOpen("subscribe to", subject);
      checkSubject(subject, "subscribe");
      const queue = subscribeOptions?.queue;
      if (queue !== undefined) checkQueueName(queue);
      assert(typeof handler === "function", "subscribe needs a handler function");
      const queueContext = queue === undefined ? {} : { queue };
      let subscription: NatsSubscription;
      try {
        subscription = nc.subscribe(prefixer.add(subject), {
          ...queueContext,
          callback: (error, msg) => {
            if (error !== null) {
              report(o.onError, translateNatsError(error, { operation: "subscribe", subject }), {
                source: "subscription",
                subject,
                ...queueContext,
              });
              return;
            }
            const messageSubject = prefixer.strip(msg.subject);
            invokeHandler(handler, toMessage(msg, messageSubject), o.onError, {
              source: "handler",
              subject: messageSubject,
              ...queueContext,
            });
          },
        });
      } catch (error) {
        throw translateNatsError(error, { operation: "subscribe", subject });
      }
      subscriptions.add(subscription);
      return {
        unsubscribe: () => {
          if (!subscriptions.delete(subscription) || nc.isClosed()) return;
          subscription.unsubscribe();
        },
      };
    },

    async request(subject: string, data: Uint8Array, requestOptions: RequestOptions): Promise<TransportMessage> {
      ensureConnected("request", subject);
      checkSubject(subject, "publish");
      checkRequestTimeout(subject, requestOptions?.timeoutMs, o.requestTimeoutMsMax);
      const headers = checkOutgoing(subject, data, requestOptions.headers);
      const { signal, timeoutMs } = requestOptions;
      if (signal?.aborted) throw signal.reason;
      const reply = await requests.request({ subject, wireSubject: prefixer.add(subject), data, headers, timeoutMs, signal });
      return toMessage(reply, subject);
    },

    async flush(): Promise<void> {
      ensureConnected("flush", "*");
      try {
        await nc.flush();
      } catch (error) {
        throw translateNatsError(error, { operation: "flush" });
      }
    },

    close(): Promise<void> {
      closing ??= closeConnection();
      return closing;
    },

    closed: () => closedPromise,

    status: () => status.current(),

    [Symbol.asyncDispose]: () => transport.close(),
  };

  async function closeConnection(): Promise<void> {
    isClosed = true;
    if (!nc.isClosed()) {
      // Published messages may still sit in the client's buffer; give them a bounded chance to leave.
      if (status.state() === "connected") await flushWithin(nc, o.closeGraceMs);
      await nc.close().catch(() => {});
    }
    await closedPromise;
  }

  return transport;
}

async function flushWithin(nc: NatsConnection, graceMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const flushed = nc.flush().catch(() => {});
  await Promise.race([flushed, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
  clearTimeout(timer);
}

function toNatsHeaders(headers: Readonly<Record<string, string>>): MsgHdrs | undefined {
  const entries = Object.entries(headers);
  if (entries.length === 0) return undefined;
  const result = natsHeaders();
  for (const [name, value] of entries) result.set(name, value);
  return result;
}

function fromNatsHeaders(headers: MsgHdrs | undefined): Readonly<Record<string, string>> {
  if (headers === undefined) return emptyHeaders;
  const result: Record<string, string> = {};
  // NATS headers may repeat a name; joining with ", " is how HTTP folds repeated fields.
  for (const [name, values] of headers) result[name] = values.join(", ");
  return Object.freeze(result);
}
