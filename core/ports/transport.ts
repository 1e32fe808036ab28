/**
 * How nodes reach each other quickly: delivery notices to an actor's owner, wake-ups, broadcast
 * control (kill switch, directory and revocation epochs) and tool worker pools. Never the system
 * of record: everything it carries can be re-derived from the {@link Store}, so a lost message
 * costs latency, never correctness. The embedded default is an in-process transport; the cluster
 * uses NATS (`actors/transport/nats`). Both pass one conformance suite.
 *
 * Subjects are dot-separated tokens; subscriptions may use NATS wildcards (`*` one token, `>` the
 * rest). Every transport is created with a subject prefix so that tests and tenants stay apart.
 */
export interface Transport {
  /** A short name of the adapter ("in-process", "nats"). */
  readonly kind: string;
  /**
   * Publishes a message. Resolves when the transport accepted it (not when anyone received it).
   *
   * @throws AgentError `ERR_TRANSPORT_CLOSED`, `ERR_PAYLOAD_TOO_LARGE`, `ERR_TRANSPORT`
   */
  publish(subject: string, data: Uint8Array, options?: PublishOptions): Promise<void>;
  /**
   * Subscribes to a subject (wildcards allowed). With `queue`, each message goes to one member of
   * the queue group (a worker pool); without it, to every subscriber.
   */
  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): Subscription;
  /**
   * Sends a request and waits for the first reply (a tool worker pool, a node-to-node query).
   *
   * @throws AgentError `ERR_TIMEOUT` (the request is abandoned), `ERR_NO_RESPONDERS`, `ERR_TRANSPORT_CLOSED`
   */
  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<TransportMessage>;
  /** Resolves once everything published so far reached the server (NATS) or the handlers (in-process). */
  flush(): Promise<void>;
  /** Stops delivery and releases resources. Idempotent. */
  close(): Promise<void>;
  /** Resolves when the transport closed: with the error that closed it, or undefined. Never rejects. */
  closed(): Promise<Error | undefined>;
}

/** A received message. `reply` is set for requests: answer with {@link TransportMessage.respond}. */
export interface TransportMessage {
  subject: string;
  data: Uint8Array;
  headers: Readonly<Record<string, string>>;
  /** Answers a request; a no-op (returns false) for a plain publish. */
  respond(data: Uint8Array, options?: PublishOptions): boolean;
}

/** Called for every message of a subscription. A thrown error or rejection is logged, not fatal. */
export type MessageHandler = (message: TransportMessage) => void | Promise<void>;

/** Headers travel with the message (trace context, tenant, message ids). */
export interface PublishOptions {
  headers?: Record<string, string>;
}

/** Options of {@link Transport.subscribe}. */
export interface SubscribeOptions {
  /** Queue group: each message goes to one member. */
  queue?: string;
}

/** Options of {@link Transport.request}. */
export interface RequestOptions {
  timeoutMs: number;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** A live subscription. */
export interface Subscription {
  /** Stops delivery to this subscription. Idempotent. */
  unsubscribe(): void;
}
