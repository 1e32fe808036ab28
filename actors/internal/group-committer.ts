import type { CommitOutcome, Store, StepCommit } from "../../core/ports/store.js";

/**
 * @internal Batches step commits of many actors into one store transaction. While one batch is in
 * flight, new commits queue up and go together in the next: under load the batch grows by itself
 * (the same idea as a database's group commit), with no added latency when idle.
 */
export class GroupCommitter {
  #queue: Array<{ commit: StepCommit; resolve: (outcome: CommitOutcome) => void }> = [];
  #flushing = false;
  readonly #store: Store;
  readonly #batchMax: number;
  /** Batches and commits, for benchmarks and tests. */
  readonly stats = { batches: 0, commits: 0, largestBatch: 0 };

  constructor(store: Store, batchMax: number) {
    this.#store = store;
    this.#batchMax = batchMax;
  }

  /** Queues a commit; resolves when its batch committed (or was refused). Never rejects. */
  submit(commit: StepCommit): Promise<CommitOutcome> {
    return new Promise((resolve) => {
      this.#queue.push({ commit, resolve });
      if (!this.#flushing) void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#batchMax);
        this.stats.batches += 1;
        this.stats.commits += batch.length;
        this.stats.largestBatch = Math.max(this.stats.largestBatch, batch.length);
        let outcomes: CommitOutcome[];
        try {
          outcomes = await this.#store.commitSteps(batch.map((item) => item.commit));
        } catch (error) {
          outcomes = batch.map(() => ({ ok: false, error: error as Error }));
        }
        batch.forEach((item, i) => item.resolve(outcomes[i] ?? { ok: false, error: new Error("store returned too few outcomes") }));
      }
    } finally {
      this.#flushing = false;
    }
  }
}
