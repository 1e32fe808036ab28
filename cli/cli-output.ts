import { AgentError, serializeError } from "../core/errors.js";

/**
 * Exit codes of the `tessera` command: 0 after a clean stop, 1 for a configuration error (a bad
 * flag, config file or agents module: fix the command), 2 for a fatal error at run time (the store
 * or NATS unreachable, a failed migration, the HTTP address in use), 130 when a second SIGTERM or
 * SIGINT cut a graceful stop short.
 */
export const exitCodes = Object.freeze({ stopped: 0, config: 1, fatal: 2, interrupted: 130 });

/** Error codes that mean "the command was given something wrong" (exit code 1). */
const configErrorCodes: ReadonlySet<string> = new Set([
  "ERR_CONFIG",
  "ERR_AGENTS_MODULE_NOT_FOUND",
  "ERR_AGENTS_MODULE_FAILED",
  "ERR_AGENTS_MODULE_INVALID",
]);

/**
 * The exit code for an error: {@link exitCodes}`.config` for configuration errors, `.fatal` otherwise.
 *
 * @param error - what ended the command
 * @returns 1 or 2
 * @example
 * ```ts
 * exitCodeOf(new ConfigError("bad")); // 1
 * ```
 */
export function exitCodeOf(error: unknown): number {
  return error instanceof AgentError && configErrorCodes.has(error.code) ? exitCodes.config : exitCodes.fatal;
}

/**
 * Writes one JSON line and resolves once the stream has taken it, so that a `process.exit` after
 * it cannot cut it off.
 *
 * @param stream - stdout or stderr
 * @param value - a JSON-serialisable value
 * @returns a promise of the write
 * @example
 * ```ts
 * await writeJsonLine(process.stdout, { event: "ready" });
 * ```
 */
export function writeJsonLine(stream: NodeJS.WritableStream, value: unknown): Promise<void> {
  return new Promise((resolve) => {
    stream.write(`${JSON.stringify(value)}\n`, () => resolve());
  });
}

/**
 * Writes `{"error":{"code","message","details"?}}` on stderr and exits with `exitCode`.
 *
 * @param error - what ended the command; anything that is not an {@link AgentError} gets `ERR_UNCAUGHT`
 * @param exitCode - @defaultValue {@link exitCodeOf}(error)
 * @returns never
 * @example
 * ```ts
 * main().catch((error) => exitWithError(error));
 * ```
 */
export async function exitWithError(error: unknown, exitCode = exitCodeOf(error)): Promise<never> {
  const { code, message, details } = serializeError(error);
  const hasDetails = details !== undefined && Object.keys(details).length > 0;
  await writeJsonLine(process.stderr, { error: hasDetails ? { code, message, details } : { code, message } });
  process.exit(exitCode);
}
