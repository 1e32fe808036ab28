import { context as otelContext, propagation } from "@opentelemetry/api";
import type { Context, TextMapGetter } from "@opentelemetry/api";

// Header names are matched without regard to case: NATS keeps the case a publisher used, and a
// client in another language may send `Traceparent`.
const caseInsensitiveGetter: TextMapGetter<Readonly<Record<string, string>>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const exact = carrier[key];
    if (exact !== undefined) return exact;
    const lower = key.toLowerCase();
    for (const [name, value] of Object.entries(carrier)) if (name.toLowerCase() === lower) return value;
    return undefined;
  },
};

/**
 * Adds the trace context of `context` (the active one by default) to message headers, using
 * whatever propagator is registered with `@opentelemetry/api` (none: nothing is added).
 *
 * @param headers - headers to publish with; not modified
 * @param context - the context whose span to propagate. @defaultValue `context.active()`
 * @returns a new header record with the propagator's fields (`traceparent`, `tracestate` for W3C)
 * @throws nothing: propagators swallow their own errors
 * @example
 * ```ts
 * await transport.publish("deliver.a1", data, { headers: injectTraceHeaders({ "tessera-message-id": id }) });
 * ```
 */
export function injectTraceHeaders(
  headers: Readonly<Record<string, string>> = {},
  context: Context = otelContext.active(),
): Record<string, string> {
  const carrier: Record<string, string> = { ...headers };
  propagation.inject(context, carrier);
  return carrier;
}

/**
 * Reads the trace context a publisher put in message headers, for a span that continues its trace.
 *
 * @param headers - the received message's headers
 * @param base - the context to extend. @defaultValue `context.active()`
 * @returns `base` with the remote span context, or `base` unchanged when the headers carry none
 * @throws nothing: propagators swallow their own errors
 * @example
 * ```ts
 * transport.subscribe("deliver.*", (message) =>
 *   tracer.startActiveSpan("receive", {}, extractTraceContext(message.headers), (span) => { handle(message); span.end() }));
 * ```
 */
export function extractTraceContext(headers: Readonly<Record<string, string>>, base: Context = otelContext.active()): Context {
  return propagation.extract(base, headers, caseInsensitiveGetter);
}
