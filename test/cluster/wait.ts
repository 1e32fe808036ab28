/** Waiting in cluster tests: bounded polls that say what they waited for. */

/** Milliseconds to wait, as a promise. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Waits until `check` returns a value other than `undefined` or `false`, polling every `intervalMs`.
 *
 * @returns what `check` returned
 * @throws Error naming `what` (and what `describe` says) when `timeoutMs` passes first
 */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs: number; intervalMs?: number; describe?: () => Promise<string> | string },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) {
      const detail = options.describe === undefined ? "" : `: ${await options.describe()}`;
      throw new Error(`${what}: not reached within ${options.timeoutMs} ms${detail}`);
    }
    await sleep(options.intervalMs ?? 50);
  }
}
