import type { z } from "zod";
import { ConfigError } from "../../../core/errors.js";

/**
 * @internal Parses options with a zod schema once, at construction.
 *
 * @throws ConfigError `ERR_CONFIG` naming the first bad option by its path; `details.issues` keeps every zod issue
 */
export function parseOptions<Schema extends z.ZodType>(schema: Schema, input: unknown, what: string): z.output<Schema> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = issue?.path.join(".") || "(root)";
  throw new ConfigError(`invalid ${what} option ${path}: ${issue?.message ?? "invalid"}`, {
    details: { issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), code: i.code, message: i.message })) },
  });
}
