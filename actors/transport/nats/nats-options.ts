import type { NodeConnectionOptions } from "@nats-io/transport-node";
import { z } from "zod";
import type { TransportErrorListener } from "../error-listener.js";
import { logTransportError } from "../error-listener.js";
import { parseOptions } from "../internal/parse-options.js";
import { subjectPrefixSchema } from "../internal/subjects.js";

/** Options of {@link createNatsTransport}. */
export interface NatsTransportOptions {
  /** NATS server URLs (`nats://127.0.0.1:4222`) or host:port pairs. */
  servers: string | string[];
  /** Client name shown in the server's monitoring. @defaultValue "tessera" */
  name?: string;
  /** Prepended (with a dot) to every subject. @defaultValue "tessera" */
  subjectPrefix?: string;
  /** How long creating the transport may take before it fails, in milliseconds. @defaultValue 2000 */
  connectTimeoutMs?: number;
  /** Longest `timeoutMs` a request may ask for, in milliseconds. @defaultValue 120000 */
  requestTimeoutMsMax?: number;
  /** Largest message, data plus encoded headers, in bytes; never above the server's max_payload. @defaultValue the server's max_payload */
  payloadBytesMax?: number;
  /** Interval of client pings that detect a dead connection, in milliseconds. @defaultValue 10000 */
  pingIntervalMs?: number;
  /** Unanswered pings after which the connection counts as stale and is re-established. @defaultValue 2 */
  pingsOutstandingMax?: number;
  /** How long `close()` waits for published messages to reach the server, in milliseconds. @defaultValue 2000 */
  closeGraceMs?: number;
  /** Reconnection after a lost connection. */
  reconnect?: {
    /** Wait between attempts on one server, in milliseconds. @defaultValue 500 */
    waitMs?: number;
    /** Random extra wait added to `waitMs`, in milliseconds. @defaultValue 100 */
    jitterMs?: number;
    /** Attempts per server before the transport closes with the last error; -1 never gives up. @defaultValue 120 */
    attemptsMax?: number;
  };
  /** Receives handler errors and asynchronous connection errors. @defaultValue {@link logTransportError} */
  onError?: TransportErrorListener;
}

/** @internal {@link NatsTransportOptions} with every field resolved. */
export interface ResolvedNatsTransportOptions {
  servers: string[];
  name: string;
  subjectPrefix: string;
  connectTimeoutMs: number;
  requestTimeoutMsMax: number;
  payloadBytesMax: number | undefined;
  pingIntervalMs: number;
  pingsOutstandingMax: number;
  closeGraceMs: number;
  reconnect: { waitMs: number; jitterMs: number; attemptsMax: number };
  onError: TransportErrorListener;
}

const ms = (min: number, max: number) => z.number().int().min(min).max(max);
const schema = z
  .object({
    servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(64)]),
    name: z.string().min(1).max(256).optional(),
    subjectPrefix: subjectPrefixSchema.optional(),
    connectTimeoutMs: ms(1, 600_000).optional(),
    requestTimeoutMsMax: ms(1, 86_400_000).optional(),
    payloadBytesMax: z
      .number()
      .int()
      .min(1)
      .max(64 * 1024 * 1024)
      .optional(),
    pingIntervalMs: ms(100, 3_600_000).optional(),
    pingsOutstandingMax: z.number().int().min(1).max(100).optional(),
    closeGraceMs: ms(0, 600_000).optional(),
    reconnect: z
      .object({
        waitMs: ms(1, 600_000).optional(),
        jitterMs: ms(0, 600_000).optional(),
        attemptsMax: z.union([z.literal(-1), z.number().int().min(1).max(1_000_000)]).optional(),
      })
      .strict()
      .optional(),
    onError: z.custom<TransportErrorListener>((v) => typeof v === "function", "a function").optional(),
  })
  .strict();

/**
 * @internal Parses the options once, at construction.
 *
 * @throws ConfigError `ERR_CONFIG` naming the bad option by its path
 */
export function resolveNatsOptions(options: NatsTransportOptions): ResolvedNatsTransportOptions {
  const o = parseOptions(schema, options, "NATS transport");
  return {
    servers: typeof o.servers === "string" ? [o.servers] : o.servers,
    name: o.name ?? "tessera",
    subjectPrefix: o.subjectPrefix ?? "tessera",
    connectTimeoutMs: o.connectTimeoutMs ?? 2000,
    requestTimeoutMsMax: o.requestTimeoutMsMax ?? 120_000,
    payloadBytesMax: o.payloadBytesMax,
    pingIntervalMs: o.pingIntervalMs ?? 10_000,
    pingsOutstandingMax: o.pingsOutstandingMax ?? 2,
    closeGraceMs: o.closeGraceMs ?? 2000,
    reconnect: { waitMs: o.reconnect?.waitMs ?? 500, jitterMs: o.reconnect?.jitterMs ?? 100, attemptsMax: o.reconnect?.attemptsMax ?? 120 },
    onError: o.onError ?? logTransportError,
  };
}

/**
 * @internal The client options, every one that matters given explicitly so that a change of the
 * client's defaults cannot change our behaviour.
 */
export function toConnectionOptions(o: ResolvedNatsTransportOptions): NodeConnectionOptions {
  return {
    servers: o.servers,
    name: o.name,
    timeout: o.connectTimeoutMs,
    reconnect: true,
    maxReconnectAttempts: o.reconnect.attemptsMax,
    reconnectTimeWait: o.reconnect.waitMs,
    reconnectJitter: o.reconnect.jitterMs,
    reconnectJitterTLS: o.reconnect.jitterMs,
    waitOnFirstConnect: false,
    pingInterval: o.pingIntervalMs,
    maxPingOut: o.pingsOutstandingMax,
    noEcho: false,
    noRandomize: false,
    ignoreClusterUpdates: false,
    verbose: false,
    pedantic: false,
    debug: false,
  };
}
