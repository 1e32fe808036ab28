import { LimitError, ValidationError } from "../core/errors.js";
import { sha256 } from "../core/ids.js";

/** Bounds of {@link canonicalize}. */
export interface CanonicalizeBounds {
  /** Deepest nesting of objects and arrays. */
  readonly depthMax: number;
  /** Largest output, in UTF-16 code units; callers that cap bytes check the UTF-8 length of the result. */
  readonly charsMax: number;
}

const defaultBounds: CanonicalizeBounds = { depthMax: 32, charsMax: 4 * 1024 * 1024 };

// A lone surrogate: a high surrogate not followed by a low one, or a low one not preceded by a high one.
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * RFC 8785 JSON Canonicalization Scheme (JCS), strict: the input must be I-JSON. Object members are
 * sorted by UTF-16 code units, numbers use the ECMAScript shortest form (`-0` becomes `0`, `1e21`
 * becomes `1e+21`), strings use JSON.stringify's minimal escaping. Lone surrogates, non-finite
 * numbers, `undefined`, functions, class instances and cycles are refused rather than silently
 * changed: two different inputs must never share a canonical form, because `args_h` and approval
 * intents are hashes of it. (core's `canonicalJson` drops `undefined` members and would treat an
 * own `__proto__` member as a prototype, so it is not used for hashes that authorise.)
 *
 * @param value - a plain JSON value
 * @param bounds - depth and size limits
 * @defaultValue bounds `{ depthMax: 32, charsMax: 4194304 }`
 * @returns the canonical JSON text
 * @throws ValidationError `ERR_JCS_INVALID` for values that are not I-JSON
 * @throws LimitError `ERR_PAYLOAD_TOO_LARGE` or `ERR_PAYLOAD_TOO_DEEP` beyond the bounds
 * @example
 * ```ts
 * canonicalize({ b: 1, a: [-0, 1e21] }) // '{"a":[0,1e+21],"b":1}'
 * ```
 */
export function canonicalize(value: unknown, bounds: CanonicalizeBounds = defaultBounds): string {
  const parts: string[] = [];
  let chars = 0;
  const emit = (text: string): void => {
    chars += text.length;
    if (chars > bounds.charsMax) {
      throw new LimitError("ERR_PAYLOAD_TOO_LARGE", `canonical JSON is longer than ${bounds.charsMax} characters`, {
        details: { limit: "charsMax", max: bounds.charsMax },
      });
    }
    parts.push(text);
  };
  const open = new Set<object>();
  const write = (node: unknown, depth: number): void => {
    if (node === null || typeof node === "boolean") return emit(String(node));
    if (typeof node === "number") {
      if (!Number.isFinite(node)) invalid("non-finite number");
      return emit(JSON.stringify(node));
    }
    if (typeof node === "string") {
      if (loneSurrogate.test(node)) invalid("string with a lone surrogate");
      return emit(JSON.stringify(node));
    }
    if (typeof node !== "object") return invalid(`a ${typeof node} is not JSON`);
    if (depth >= bounds.depthMax) {
      throw new LimitError("ERR_PAYLOAD_TOO_DEEP", `canonical JSON nested deeper than ${bounds.depthMax} levels`, {
        details: { limit: "depthMax", max: bounds.depthMax },
      });
    }
    if (open.has(node)) invalid("cycle");
    open.add(node);
    if (Array.isArray(node)) {
      emit("[");
      for (let index = 0; index < node.length; index++) {
        if (!(index in node)) invalid("sparse array");
        if (index > 0) emit(",");
        write(node[index], depth + 1);
      }
      emit("]");
    } else {
      const proto: unknown = Object.getPrototypeOf(node);
      if (proto !== Object.prototype && proto !== null) invalid("not a plain object");
      const keys = Object.keys(node).sort();
      emit("{");
      keys.forEach((key, index) => {
        if (loneSurrogate.test(key)) invalid("member name with a lone surrogate");
        if (index > 0) emit(",");
        emit(JSON.stringify(key));
        emit(":");
        write((node as Record<string, unknown>)[key], depth + 1);
      });
      emit("}");
    }
    open.delete(node);
  };
  write(value, 0);
  return parts.join("");
}

/**
 * The args hash of an invocation: base64url SHA-256 of the JCS form of the args (IDENTITY.md §7).
 *
 * @param args - the exact args the tool will execute with
 * @param bounds - depth and size limits of the args
 * @returns 43 characters of base64url
 * @throws ValidationError `ERR_JCS_INVALID`, LimitError `ERR_PAYLOAD_TOO_LARGE` / `ERR_PAYLOAD_TOO_DEEP`
 * @example
 * ```ts
 * argsHash({ amount: 30, customer: "c_123" })
 * ```
 */
export function argsHash(args: unknown, bounds?: CanonicalizeBounds): string {
  return sha256(canonicalize(args, bounds));
}

function invalid(what: string): never {
  throw new ValidationError("ERR_JCS_INVALID", `value is not canonicalizable I-JSON: ${what}`);
}
