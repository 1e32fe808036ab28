import { AgentError } from "../../core/errors.js";
import type { AgentErrorOptions } from "../../core/errors.js";

/** The codes a {@link TransportError} carries. */
export type TransportErrorCode = "ERR_TRANSPORT" | "ERR_TRANSPORT_CLOSED" | "ERR_NO_RESPONDERS";

/**
 * A transport could not carry a message: the connection is down or closed (`ERR_TRANSPORT`,
 * retryable when a reconnect may help), the transport was closed (`ERR_TRANSPORT_CLOSED`), or a
 * request found nobody subscribed (`ERR_NO_RESPONDERS`). The driver's error, if any, is the `cause`.
 *
 * @example
 * ```ts
 * try { await transport.request("tools.search", data, { timeoutMs: 5000 }) }
 * catch (e) { if (e instanceof TransportError && e.code === "ERR_NO_RESPONDERS") startWorker() }
 * ```
 */
export class TransportError extends AgentError {
  /**
   * @param code - one of {@link TransportErrorCode}
   * @param message - what failed, naming the subject or server
   * @param options - cause, details and retryable flag
   */
  constructor(code: TransportErrorCode, message: string, options: AgentErrorOptions = {}) {
    super(code, message, options);
  }
}
