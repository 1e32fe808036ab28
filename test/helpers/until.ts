/**
 * Waits until `check` holds, polling every `pollMs`. The timeout is a hang guard, not an
 * assertion about time: a condition that never holds fails the test with "condition not reached".
 *
 * @param check - the condition, sync or async
 * @param timeoutMs - how long to wait at most. @defaultValue 10000
 * @param pollMs - how often to look. @defaultValue 5
 */
export async function until(check: () => Promise<boolean> | boolean, timeoutMs = 10_000, pollMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
