import { LimitError, ValidationError } from "./errors.js";

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** What {@link encodeBounded} checks. */
export interface JsonBounds {
  /** Largest serialized size in bytes (UTF-8). */
  bytesMax: number;
  /** Deepest nesting of objects and arrays. */
  depthMax: number;
  /** What the value is, for the error message ("event", "tool result lookupOrder"). */
  what: string;
}

/**
 * Checks depth first (iteratively, so hostile input cannot exhaust the stack), then size, and
 * returns the serialized JSON.
 *
 * @param value - the value to encode; must be plain JSON (no functions, no cycles, finite numbers)
 * @param bounds - limits and a name for messages
 * @returns the JSON text
 * @throws LimitError `ERR_PAYLOAD_TOO_DEEP` or `ERR_PAYLOAD_TOO_LARGE`
 * @throws ValidationError `ERR_VALIDATION` when the value is not plain JSON
 */
export function encodeBounded(value: unknown, bounds: JsonBounds): string {
  checkDepth(value, bounds);
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (cause) {
    throw new ValidationError("ERR_VALIDATION", `${bounds.what} is not serializable as JSON`, { cause });
  }
  if (text === undefined) throw new ValidationError("ERR_VALIDATION", `${bounds.what} is not a JSON value`);
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > bounds.bytesMax) {
    throw new LimitError("ERR_PAYLOAD_TOO_LARGE", `${bounds.what} is ${bytes} bytes, over the limit of ${bounds.bytesMax}`, {
      details: { limit: "bytesMax", max: bounds.bytesMax, actual: bytes, what: bounds.what },
    });
  }
  return text;
}

function checkDepth(root: unknown, bounds: JsonBounds): void {
  // Shared references are fine (JSON writes them twice); a cycle shows up as a depth past the limit.
  // Every value costs at least one byte of JSON, so more values than bytesMax cannot fit either:
  // that bounds the walk even on a structure that shares references to blow up exponentially.
  const stack: Array<[unknown, number]> = [[root, 0]];
  let visited = 0;
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (++visited > bounds.bytesMax) {
      throw new LimitError("ERR_PAYLOAD_TOO_LARGE", `${bounds.what} has more values than fit in ${bounds.bytesMax} bytes`, {
        details: { limit: "bytesMax", max: bounds.bytesMax, what: bounds.what },
      });
    }
    if (value === null || typeof value !== "object") {
      if (typeof value === "number" && !Number.isFinite(value)) {
        throw new ValidationError("ERR_VALIDATION", `${bounds.what} contains a non-finite number`);
      }
      if (typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") {
        throw new ValidationError("ERR_VALIDATION", `${bounds.what} contains a ${typeof value}, which is not JSON`);
      }
      continue;
    }
    if (depth >= bounds.depthMax) {
      throw new LimitError("ERR_PAYLOAD_TOO_DEEP", `${bounds.what} is nested deeper than ${bounds.depthMax} levels`, {
        details: { limit: "jsonDepthMax", max: bounds.depthMax, what: bounds.what },
      });
    }
    const children = Array.isArray(value) ? value : Object.values(value);
    for (const child of children) stack.push([child, depth + 1]);
  }
}

/**
 * JSON with object keys sorted, so that equal values give equal text (for hashes).
 *
 * @param value - a plain JSON value
 * @returns canonical JSON text
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

/**
 * A deep copy of a JSON value with object keys in sorted order (the order {@link canonicalJson} writes).
 *
 * @param value - a plain JSON value
 * @returns the same value with every object's keys sorted
 */
export function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    // A null prototype keeps an own "__proto__" key an ordinary member instead of a prototype.
    const out = Object.create(null) as Record<string, unknown>;
    for (const key of Object.keys(value).sort()) {
      const child = (value as Record<string, unknown>)[key];
      if (child !== undefined) out[key] = sortKeys(child);
    }
    return out;
  }
  return value;
}
