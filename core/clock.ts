/**
 * Where time comes from. Tests use {@link SimulatedClock}; production uses {@link systemClock}.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /**
   * Calls `callback` once `delayMs` have passed on this clock.
   *
   * @returns a function that cancels the timer
   */
  setTimer(callback: () => void, delayMs: number): () => void;
}

/** The wall clock, with `unref()`ed Node timers so a pending timer never keeps a process alive. */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  setTimer(callback: () => void, delayMs: number) {
    // Node caps timers at 2^31-1 ms; longer delays re-arm in chunks.
    const maxChunkMs = 2_147_483_647;
    let handle: NodeJS.Timeout;
    const due = Date.now() + delayMs;
    const arm = (): void => {
      const remainingMs = due - Date.now();
      if (remainingMs <= 0) return callback();
      handle = setTimeout(arm, Math.min(remainingMs, maxChunkMs));
      handle.unref();
    };
    handle = setTimeout(arm, Math.max(0, Math.min(delayMs, maxChunkMs)));
    handle.unref();
    return () => clearTimeout(handle);
  },
});

/**
 * A clock that moves only when told to, for tests.
 *
 * @example
 * ```ts
 * const clock = new SimulatedClock(0);
 * clock.advance(1000); // fires every timer due within the second
 * ```
 */
export class SimulatedClock implements Clock {
  #nowMs: number;
  #timers = new Map<number, { dueMs: number; callback: () => void }>();
  #nextId = 1;

  /** @param startMs - the initial time, in milliseconds since the epoch. @defaultValue 0 */
  constructor(startMs = 0) {
    this.#nowMs = startMs;
  }

  now(): number {
    return this.#nowMs;
  }

  setTimer(callback: () => void, delayMs: number): () => void {
    const id = this.#nextId++;
    this.#timers.set(id, { dueMs: this.#nowMs + Math.max(0, delayMs), callback });
    return () => this.#timers.delete(id);
  }

  /** Moves time forward by `ms`, firing due timers in deadline order. */
  advance(ms: number): void {
    const target = this.#nowMs + ms;
    for (;;) {
      let next: [number, { dueMs: number; callback: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].dueMs <= target && (!next || entry[1].dueMs < next[1].dueMs)) next = entry;
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#nowMs = Math.max(this.#nowMs, next[1].dueMs);
      next[1].callback();
    }
    this.#nowMs = target;
  }
}
