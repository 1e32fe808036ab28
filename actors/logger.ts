/** The logging interface a node uses: pino-compatible (`logger.warn({ actorId }, "message")`). */
export interface Logger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

type Level = "debug" | "info" | "warn" | "error" | "silent";
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/**
 * A JSON-lines logger writing to stderr, for when none is injected.
 *
 * @param level - the lowest level written. @defaultValue "warn"
 * @returns a {@link Logger}
 * @example
 * ```ts
 * createNode({ store, agents, logger: createJsonLogger("info") })
 * ```
 */
export function createJsonLogger(level: Level = "warn"): Logger {
  const write = (at: Exclude<Level, "silent">) => (fields: Record<string, unknown>, message: string) => {
    if (order[at] < order[level]) return;
    process.stderr.write(`${JSON.stringify({ level: at, time: Date.now(), msg: message, ...fields })}\n`);
  };
  return { debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error") };
}
