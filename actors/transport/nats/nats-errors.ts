import { errors } from "@nats-io/transport-node";
import { AgentError, LimitError, TimeoutError, ValidationError } from "../../../core/errors.js";
import { TransportError } from "../transport-error.js";

/** @internal What was being done when a NATS error happened, for the message and `details`. */
export interface NatsErrorContext {
  operation: "connect" | "publish" | "subscribe" | "request" | "respond" | "flush" | "close" | "connection";
  subject?: string;
}

/**
 * @internal Translates an error of the NATS client into an {@link AgentError}, keeping it as
 * `cause`. Our own errors pass through unchanged.
 */
export function translateNatsError(error: unknown, context: NatsErrorContext): AgentError {
  if (error instanceof AgentError) return error;
  const where = context.subject === undefined ? `NATS ${context.operation}` : `NATS ${context.operation} "${context.subject}"`;
  const message = error instanceof Error ? error.message : String(error);
  const details = { operation: context.operation, ...(context.subject === undefined ? {} : { subject: context.subject }) };
  const options = { cause: error, details };
  if (error instanceof errors.ClosedConnectionError || error instanceof errors.DrainingConnectionError) {
    return new TransportError("ERR_TRANSPORT_CLOSED", `${where}: the connection is closed`, options);
  }
  if (error instanceof errors.NoRespondersError || (error instanceof errors.RequestError && error.isNoResponders())) {
    return new TransportError("ERR_NO_RESPONDERS", `${where}: no responders`, options);
  }
  if (error instanceof errors.TimeoutError) return new TimeoutError(`${where}: timed out`, options);
  // The client reports max_payload only through the message of an InvalidArgumentError; the
  // adapter checks sizes before publishing, so this is the fallback for a server that lowered it.
  if (error instanceof errors.InvalidArgumentError && message.includes("max_payload")) {
    return new LimitError("ERR_PAYLOAD_TOO_LARGE", `${where}: larger than the server's max_payload`, {
      ...options,
      details: { ...details, limit: "max_payload" },
    });
  }
  if (error instanceof errors.InvalidArgumentError || error instanceof errors.InvalidSubjectError) {
    return new ValidationError("ERR_VALIDATION", `${where}: ${message}`, options);
  }
  const denied =
    error instanceof errors.PermissionViolationError ||
    error instanceof errors.AuthorizationError ||
    error instanceof errors.UserAuthenticationExpiredError;
  // Connection errors, disconnects ("connection disconnected") and protocol errors may pass once the client reconnects.
  return new TransportError("ERR_TRANSPORT", `${where}: ${message}`, { ...options, retryable: !denied });
}
