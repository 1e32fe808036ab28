import { createInbox, errors } from "@nats-io/transport-node";
import type { Msg, MsgHdrs, NatsConnection, Subscription as NatsSubscription } from "@nats-io/transport-node";
import { assert } from "../../../core/assert.js";
import { TimeoutError } from "../../../core/errors.js";
import { TransportError } from "../transport-error.js";
import { translateNatsError } from "./nats-errors.js";

/** @internal One request as the mux sends it. */
export interface MuxRequest {
  /** The subject as the caller named it, for errors. */
  subject: string;
  wireSubject: string;
  data: Uint8Array;
  headers: MsgHdrs | undefined;
  timeoutMs: number;
  signal: AbortSignal | undefined;
}

/** @internal Requests multiplexed over one inbox subscription. */
export interface RequestMux {
  request(request: MuxRequest): Promise<Msg>;
  /** Rejects every pending request with `error` and forgets them. */
  failAll(error: unknown): void;
  pendingCount(): number;
}

interface Pending {
  subject: string;
  resolve(message: Msg): void;
  reject(error: unknown): void;
  dispose(): void;
}

/**
 * @internal Our own request mux rather than `nc.request`: one `_INBOX.<nuid>.*` subscription, a
 * token per request, and a timer and abort listener that really abandon the request (the entry
 * goes, so a late reply is dropped), which `nc.request` offers for timeouts but not for signals.
 */
export function createRequestMux(nc: NatsConnection): RequestMux {
  const inbox = createInbox();
  const pending = new Map<string, Pending>();
  let subscription: NatsSubscription | undefined;
  let nextToken = 0;

  const settle = (token: string): Pending | undefined => {
    const entry = pending.get(token);
    if (entry === undefined) return undefined;
    pending.delete(token);
    entry.dispose();
    return entry;
  };

  const onReply = (error: Error | null, message: Msg): void => {
    if (error !== null) {
      // The server ended the inbox subscription (permissions); nothing can be answered any more.
      mux.failAll(translateNatsError(error, { operation: "request" }));
      subscription = undefined;
      return;
    }
    const token = message.subject.slice(inbox.length + 1);
    const entry = settle(token);
    if (entry === undefined) return;
    // nats-server answers a request nobody listens to with an empty 503 status message.
    if (message.data.length === 0 && message.headers?.code === 503) {
      const cause = new errors.NoRespondersError(entry.subject);
      entry.reject(
        new TransportError("ERR_NO_RESPONDERS", `no responders on "${entry.subject}"`, { cause, details: { subject: entry.subject } }),
      );
      return;
    }
    entry.resolve(message);
  };

  const mux: RequestMux = {
    request(request) {
      try {
        subscription ??= nc.subscribe(`${inbox}.*`, { callback: onReply });
      } catch (error) {
        return Promise.reject(translateNatsError(error, { operation: "request", subject: request.subject }));
      }
      nextToken = (nextToken + 1) % Number.MAX_SAFE_INTEGER;
      const token = nextToken.toString(36);
      assert(!pending.has(token), "request tokens are unique among pending requests");
      return new Promise<Msg>((resolve, reject) => {
        const { signal, subject } = request;
        // A holder rather than a `let`: the entry may be disposed before the timer exists.
        const timing: { timer?: NodeJS.Timeout } = {};
        const onAbort = (): void => settle(token)?.reject(signal?.reason);
        pending.set(token, {
          subject,
          resolve,
          reject,
          dispose: () => {
            clearTimeout(timing.timer);
            signal?.removeEventListener("abort", onAbort);
          },
        });
        try {
          nc.publish(request.wireSubject, request.data, {
            reply: `${inbox}.${token}`,
            ...(request.headers ? { headers: request.headers } : {}),
          });
        } catch (error) {
          settle(token)?.reject(translateNatsError(error, { operation: "request", subject }));
          return;
        }
        timing.timer = setTimeout(() => {
          settle(token)?.reject(
            new TimeoutError(`request on "${subject}" got no reply within ${request.timeoutMs} ms`, {
              details: { subject, timeoutMs: request.timeoutMs },
            }),
          );
        }, request.timeoutMs);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    },
    failAll(error) {
      for (const token of [...pending.keys()]) settle(token)?.reject(error);
      assert(pending.size === 0, "failAll settles every pending request");
    },
    pendingCount: () => pending.size,
  };
  return mux;
}
