/**
 * How nodes reach each other quickly: wake-ups and broadcasts. Never the system of record:
 * everything it carries can be re-derived from the {@link Store}. The embedded default is an
 * in-process transport; NATS comes with the cluster work.
 */
export interface Transport {
  /** Publishes a small payload on a subject. Delivery is best-effort. */
  publish(subject: string, payload: Uint8Array): Promise<void>;
  /** Subscribes to a subject; returns a function that unsubscribes. */
  subscribe(subject: string, handler: (payload: Uint8Array) => void): () => void;
  /** Releases resources. Idempotent. */
  close(): Promise<void>;
}
