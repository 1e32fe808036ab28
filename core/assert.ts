import { AgentError } from "./errors.js";

/** A programmer bug: an invariant did not hold. Never caught or retried. */
export class InvariantError extends AgentError {
  constructor(message: string) {
    super("ERR_INVARIANT", message);
  }
}

/**
 * Asserts an invariant.
 *
 * @param condition - what must be true
 * @param message - what went wrong if it is not
 * @throws InvariantError when `condition` is falsy
 * @example
 * ```ts
 * assert(seq > 0, "journal seq starts at 1");
 * ```
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
