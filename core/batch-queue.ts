/**
 * @internal The queue behind a group commit: items pushed while one batch is being sent wait, and
 * the next batch takes all of them (at most `batchMax`). Under load batches grow by themselves;
 * alone, an item goes out at once. One batch is in flight at a time, in push order.
 *
 * The store's grouped statements and the node's step commits both use it; the node adds a wait
 * before each batch (`beforeBatch`) to let more commits in under load.
 */
export class BatchQueue<T> {
  #items: T[] = [];
  #flushing = false;
  readonly #batchMax: number;
  readonly #send: (batch: T[]) => Promise<void>;
  readonly #beforeBatch: (() => Promise<void>) | undefined;

  /**
   * @param batchMax - the most items in one batch
   * @param send - sends one batch and settles every item's caller; it must not reject
   * @param beforeBatch - awaited before each batch is taken from the queue
   */
  constructor(batchMax: number, send: (batch: T[]) => Promise<void>, beforeBatch?: () => Promise<void>) {
    this.#batchMax = batchMax;
    this.#send = send;
    this.#beforeBatch = beforeBatch;
  }

  /** Items waiting for a batch. */
  get length(): number {
    return this.#items.length;
  }

  /** Queues an item; starts sending when no batch is in flight. */
  push(item: T): void {
    this.#items.push(item);
    if (!this.#flushing) void this.#flush();
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#items.length > 0) {
        if (this.#beforeBatch !== undefined) await this.#beforeBatch();
        await this.#send(this.#items.splice(0, this.#batchMax));
      }
    } finally {
      this.#flushing = false;
    }
  }
}
