import { createJsonLogger } from "../logger.js";

/** Where an error reported to a {@link TransportErrorListener} came from. */
export interface TransportErrorContext {
  /** `handler`: a message handler threw or rejected; `subscription`: the server ended a subscription; `connection`: the connection reported an error. */
  source: "handler" | "subscription" | "connection";
  /** The subject (without the transport's prefix), when the error concerns one. */
  subject?: string;
  /** The queue group, when the subscription has one. */
  queue?: string;
}

/** Receives errors that have no caller to reject: handler failures and asynchronous connection errors. Must not throw. */
export type TransportErrorListener = (error: unknown, context: TransportErrorContext) => void;

const logger = createJsonLogger("warn");

/**
 * The listener used when none is given: one JSON line on stderr per error.
 *
 * @param error - what was thrown or reported
 * @param context - where it came from
 * @returns nothing
 * @throws nothing: a listener must not throw
 * @example
 * ```ts
 * createInProcessTransport({ onError: (error, context) => { logTransportError(error, context); metrics.count() } })
 * ```
 */
export function logTransportError(error: unknown, context: TransportErrorContext): void {
  const message = error instanceof Error ? error.message : String(error);
  const code = typeof error === "object" && error !== null && "code" in error ? String((error as { code: unknown }).code) : undefined;
  logger.error({ ...context, code, error: message }, `transport ${context.source} error`);
}
