import { z } from "zod";
import { assert } from "../../../core/assert.js";
import { TimeoutError } from "../../../core/errors.js";
import type {
  MessageHandler,
  PublishOptions,
  RequestOptions,
  Subscription,
  SubscribeOptions,
  Transport,
  TransportMessage,
} from "../../../core/ports/transport.js";
import { logTransportError } from "../error-listener.js";
import type { TransportErrorListener } from "../error-listener.js";
import { invokeHandler } from "../internal/handler.js";
import { checkData, checkPayloadBytes, checkRequestTimeout, encodedMessageBytes, normalizeHeaders } from "../internal/message-checks.js";
import { parseOptions } from "../internal/parse-options.js";
import { checkQueueName, checkSubject, createPrefixer, subjectPrefixSchema } from "../internal/subjects.js";
import { TransportError } from "../transport-error.js";
import { createInProcessBus } from "./in-process-bus.js";
import type { BusReply, BusSubscription, InProcessBus } from "./in-process-bus.js";

/** Largest message (data plus headers) the in-process transport accepts by default: nats-server's default max_payload. */
export const inProcessPayloadBytesMaxDefault = 1024 * 1024;
/** Longest request timeout accepted by default, in milliseconds. */
export const requestTimeoutMsMaxDefault = 120_000;

/** Options of {@link createInProcessTransport}. */
export interface InProcessTransportOptions {
  /** The bus shared with other in-process transports; a private one when absent. */
  bus?: InProcessBus;
  /** Prepended (with a dot) to every subject, to keep tenants and tests apart. @defaultValue "tessera" */
  subjectPrefix?: string;
  /** Largest message, data plus encoded headers, in bytes. @defaultValue 1048576 */
  payloadBytesMax?: number;
  /** Longest `timeoutMs` a request may ask for, in milliseconds. @defaultValue 120000 */
  requestTimeoutMsMax?: number;
  /** Receives handler errors. @defaultValue {@link logTransportError} */
  onError?: TransportErrorListener;
}

/** The in-process transport: a {@link Transport} that is also `AsyncDisposable`. */
export type InProcessTransport = Transport & AsyncDisposable & { readonly bus: InProcessBus };

const isFunction = (value: unknown): boolean => typeof value === "function";
const optionsSchema = z
  .object({
    bus: z
      .custom<InProcessBus>(
        (v) => typeof v === "object" && v !== null && isFunction((v as InProcessBus).route),
        "a bus from createInProcessBus",
      )
      .optional(),
    subjectPrefix: subjectPrefixSchema.optional(),
    payloadBytesMax: z
      .number()
      .int()
      .min(1)
      .max(64 * 1024 * 1024)
      .optional(),
    requestTimeoutMsMax: z.number().int().min(1).max(86_400_000).optional(),
    onError: z.custom<TransportErrorListener>(isFunction, "a function").optional(),
  })
  .strict();

interface PendingRequest {
  fail(error: unknown): void;
}

/**
 * Makes the embedded transport: NATS core semantics inside one process. Subjects with `*` and
 * `>`, queue groups (round-robin), request/reply with timeout and no-responders, headers, and
 * deliveries that never run inside `publish`. Transports on one {@link InProcessBus} simulate
 * several nodes of a cluster.
 *
 * @param options - bus, subject prefix, limits and error listener
 * @returns an open transport
 * @throws ConfigError `ERR_CONFIG` naming the bad option
 * @example
 * ```ts
 * const transport = createInProcessTransport({ subjectPrefix: "acme" });
 * transport.subscribe("wake.*", (message) => wake(message.subject));
 * await transport.publish("wake.a1", new Uint8Array());
 * ```
 */
export function createInProcessTransport(options: InProcessTransportOptions = {}): InProcessTransport {
  const parsed = parseOptions(optionsSchema, options, "in-process transport");
  const bus = parsed.bus ?? createInProcessBus();
  const prefixer = createPrefixer(parsed.subjectPrefix ?? "tessera");
  const payloadBytesMax = parsed.payloadBytesMax ?? inProcessPayloadBytesMaxDefault;
  const requestTimeoutMsMax = parsed.requestTimeoutMsMax ?? requestTimeoutMsMaxDefault;
  const onError = parsed.onError ?? logTransportError;
  const detachers = new Set<() => void>();
  const pending = new Set<PendingRequest>();
  let isClosed = false;
  let resolveClosed: (value: Error | undefined) => void = () => {};
  const closedPromise = new Promise<Error | undefined>((resolve) => (resolveClosed = resolve));

  const ensureOpen = (operation: string, subject: string): void => {
    if (isClosed)
      throw new TransportError("ERR_TRANSPORT_CLOSED", `in-process transport is closed: cannot ${operation} "${subject}"`, {
        details: { subject },
      });
  };

  /** Validates an outgoing message; returns its normalized headers. */
  const checkOutgoing = (
    subject: string,
    data: Uint8Array,
    headers: Record<string, string> | undefined,
  ): Readonly<Record<string, string>> => {
    checkData(subject, data);
    const normalized = normalizeHeaders(headers);
    checkPayloadBytes(subject, encodedMessageBytes(data, normalized), payloadBytesMax);
    return normalized;
  };

  const makeMessage = (
    subject: string,
    data: Uint8Array,
    headers: Readonly<Record<string, string>>,
    reply: BusReply | undefined,
  ): TransportMessage => ({
    subject,
    data,
    headers,
    respond(replyData: Uint8Array, replyOptions?: PublishOptions): boolean {
      if (reply === undefined) return false;
      ensureOpen("respond to", subject);
      reply.respond(replyData.slice(), checkOutgoing(subject, replyData, replyOptions?.headers));
      return true;
    },
  });

  const transport: InProcessTransport = {
    kind: "in-process",
    bus,

    async publish(subject: string, data: Uint8Array, publishOptions?: PublishOptions): Promise<void> {
      ensureOpen("publish to", subject);
      checkSubject(subject, "publish");
      const headers = checkOutgoing(subject, data, publishOptions?.headers);
      bus.route(prefixer.add(subject), data, headers);
    },

    subscribe(subject: string, handler: MessageHandler, subscribeOptions?: SubscribeOptions): Subscription {
      ensureOpen("subscribe to", subject);
      checkSubject(subject, "subscribe");
      const queue = subscribeOptions?.queue;
      if (queue !== undefined) checkQueueName(queue);
      assert(typeof handler === "function", "subscribe needs a handler function");
      const context = { source: "handler" as const, subject, ...(queue === undefined ? {} : { queue }) };
      const subscription: BusSubscription = {
        pattern: prefixer.add(subject).split("."),
        queue,
        deliver: (wireSubject, data, headers, reply) =>
          invokeHandler(handler, makeMessage(prefixer.strip(wireSubject), data, headers, reply), onError, {
            ...context,
            subject: prefixer.strip(wireSubject),
          }),
      };
      const detach = bus.attach(subscription);
      detachers.add(detach);
      return {
        unsubscribe: () => {
          detachers.delete(detach);
          detach();
        },
      };
    },

    async request(subject: string, data: Uint8Array, requestOptions: RequestOptions): Promise<TransportMessage> {
      ensureOpen("request", subject);
      checkSubject(subject, "publish");
      checkRequestTimeout(subject, requestOptions?.timeoutMs, requestTimeoutMsMax);
      const headers = checkOutgoing(subject, data, requestOptions.headers);
      const signal = requestOptions.signal;
      if (signal?.aborted) throw signal.reason;
      return new Promise<TransportMessage>((resolve, reject) => {
        // A holder rather than a `let`: the entry may be disposed before the timer exists.
        const timing: { timer?: NodeJS.Timeout } = {};
        const onAbort = (): void => entry.fail(signal?.reason);
        const dispose = (): boolean => {
          if (!pending.delete(entry)) return false;
          clearTimeout(timing.timer);
          signal?.removeEventListener("abort", onAbort);
          return true;
        };
        const entry: PendingRequest = {
          fail: (error) => {
            if (dispose()) reject(error);
          },
        };
        const reply: BusReply = {
          respond: (replyData, replyHeaders) => {
            if (dispose()) resolve(makeMessage(subject, replyData, replyHeaders, undefined));
          },
        };
        pending.add(entry);
        try {
          if (bus.route(prefixer.add(subject), data, headers, reply) === 0) {
            entry.fail(new TransportError("ERR_NO_RESPONDERS", `no responders on "${subject}"`, { details: { subject } }));
            return;
          }
        } catch (error) {
          entry.fail(error);
          return;
        }
        // The timeout abandons the request: the entry goes, so a late reply finds nobody.
        timing.timer = setTimeout(() => {
          entry.fail(
            new TimeoutError(`request on "${subject}" got no reply within ${requestOptions.timeoutMs} ms`, {
              details: { subject, timeoutMs: requestOptions.timeoutMs },
            }),
          );
        }, requestOptions.timeoutMs);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    },

    async flush(): Promise<void> {
      ensureOpen("flush", "*");
      await bus.whenDelivered();
    },

    async close(): Promise<void> {
      if (isClosed) return;
      isClosed = true;
      for (const detach of detachers) detach();
      detachers.clear();
      const closedError = new TransportError("ERR_TRANSPORT_CLOSED", "in-process transport closed while the request was pending");
      for (const entry of [...pending]) entry.fail(closedError);
      assert(pending.size === 0, "close settles every pending request");
      resolveClosed(undefined);
    },

    closed: () => closedPromise,

    [Symbol.asyncDispose]: () => transport.close(),
  };
  return transport;
}
