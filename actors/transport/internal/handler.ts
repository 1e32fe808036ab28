import type { MessageHandler, TransportMessage } from "../../../core/ports/transport.js";
import type { TransportErrorContext, TransportErrorListener } from "../error-listener.js";

/**
 * @internal Runs a handler so that neither a throw nor a rejection escapes: both go to `onError`.
 * An async handler is not awaited, as with a NATS callback subscription: the next message does not
 * wait for it.
 */
export function invokeHandler(
  handler: MessageHandler,
  message: TransportMessage,
  onError: TransportErrorListener,
  context: TransportErrorContext,
): void {
  try {
    const result = handler(message);
    if (result !== undefined && typeof (result as Promise<void>).then === "function") {
      (result as Promise<void>).then(undefined, (error: unknown) => report(onError, error, context));
    }
  } catch (error) {
    report(onError, error, context);
  }
}

/** @internal Calls the listener; a listener that throws is a bug we must not turn into a crash of the delivery loop. */
export function report(onError: TransportErrorListener, error: unknown, context: TransportErrorContext): void {
  try {
    onError(error, context);
  } catch {
    // The listener broke its contract ("must not throw"); there is nowhere left to report to.
  }
}
