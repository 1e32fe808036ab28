import { systemClock, type Clock } from "../core/clock.js";

/**
 * A wall clock shifted by a fixed offset, for tests that need a node whose clock runs ahead of or
 * behind the others (`tessera node --clock-offset-ms`). Timers are relative, so they are the
 * system clock's.
 *
 * @param offsetMs - added to `Date.now()`, in milliseconds; may be negative
 * @returns a {@link Clock} whose `now()` is `Date.now() + offsetMs`
 * @example
 * ```ts
 * createNode({ store, agents, clock: createOffsetClock(5_000) }); // five seconds ahead
 * ```
 */
export function createOffsetClock(offsetMs: number): Clock {
  if (offsetMs === 0) return systemClock;
  return Object.freeze({
    now: () => Date.now() + offsetMs,
    setTimer: (callback: () => void, delayMs: number) => systemClock.setTimer(callback, delayMs),
  });
}
