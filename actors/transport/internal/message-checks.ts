import { LimitError, ValidationError } from "../../../core/errors.js";

/** @internal Most headers one message may carry. */
export const headerCountMax = 64;

const encoder = new TextEncoder();
// NATS header names are printable ASCII without the colon (RFC 822 field names).
const headerName = /^[\u0021-\u0039\u003b-\u007e]+$/;
const lineBreak = /[\r\n]/;

/**
 * @internal Validates headers and returns a frozen copy with values trimmed, which is what NATS
 * delivers (it trims values on both ends).
 *
 * @throws ValidationError `ERR_VALIDATION` for a bad name, a value with CR or LF, or too many headers
 */
export function normalizeHeaders(headers: Record<string, string> | undefined): Readonly<Record<string, string>> {
  if (headers === undefined) return emptyHeaders;
  const entries = Object.entries(headers);
  if (entries.length > headerCountMax) {
    throw new ValidationError("ERR_VALIDATION", `a message carries at most ${headerCountMax} headers, got ${entries.length}`, {
      details: { limit: "headerCountMax", max: headerCountMax, actual: entries.length },
    });
  }
  const copy: Record<string, string> = {};
  for (const [name, value] of entries) {
    if (!headerName.test(name)) {
      throw new ValidationError("ERR_VALIDATION", `invalid header name "${name}": printable ASCII without ':'`, {
        details: { header: name },
      });
    }
    if (typeof value !== "string" || lineBreak.test(value)) {
      throw new ValidationError("ERR_VALIDATION", `invalid value of header "${name}": a string without CR or LF`, {
        details: { header: name },
      });
    }
    copy[name] = value.trim();
  }
  return Object.freeze(copy);
}

/** @internal The frozen empty header set. */
export const emptyHeaders: Readonly<Record<string, string>> = Object.freeze({});

/**
 * @internal Bytes a message takes against a server's max_payload: the data plus the NATS header
 * block (`NATS/1.0\r\n`, `name: value\r\n` per header, `\r\n`) when there are headers.
 */
export function encodedMessageBytes(data: Uint8Array, headers: Readonly<Record<string, string>>): number {
  let headerBytes = 0;
  for (const [name, value] of Object.entries(headers)) headerBytes += name.length + encoder.encode(value).length + 4;
  return data.byteLength + (headerBytes === 0 ? 0 : headerBytes + 12);
}

/**
 * @internal Refuses a message larger than the limit.
 *
 * @throws LimitError `ERR_PAYLOAD_TOO_LARGE` with `details.limit`, `max` and `actual`
 */
export function checkPayloadBytes(subject: string, bytes: number, max: number, limit = "payloadBytesMax", cause?: unknown): void {
  if (bytes <= max) return;
  throw new LimitError("ERR_PAYLOAD_TOO_LARGE", `message on "${subject}" is ${bytes} bytes, more than ${limit} ${max}`, {
    details: { limit, max, actual: bytes, subject },
    ...(cause === undefined ? {} : { cause }),
  });
}

/**
 * @internal Checks that data is a Uint8Array.
 *
 * @throws ValidationError `ERR_VALIDATION`
 */
export function checkData(subject: string, data: unknown): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) {
    throw new ValidationError("ERR_VALIDATION", `data of a message on "${subject}" must be a Uint8Array`, { details: { subject } });
  }
}

/**
 * @internal Checks a request timeout: a whole number of milliseconds from 1 to the maximum.
 *
 * @throws ValidationError `ERR_VALIDATION` for a missing or non-positive timeout
 * @throws LimitError `ERR_LIMIT_EXCEEDED` above `requestTimeoutMsMax`
 */
export function checkRequestTimeout(subject: string, timeoutMs: unknown, max: number): asserts timeoutMs is number {
  if (typeof timeoutMs !== "number" || !Number.isInteger(timeoutMs) || timeoutMs < 1) {
    throw new ValidationError("ERR_VALIDATION", `request on "${subject}": timeoutMs must be a positive integer, got ${String(timeoutMs)}`, {
      details: { subject, timeoutMs },
    });
  }
  if (timeoutMs > max) {
    throw new LimitError("ERR_LIMIT_EXCEEDED", `request on "${subject}": timeoutMs ${timeoutMs} is above requestTimeoutMsMax ${max}`, {
      details: { limit: "requestTimeoutMsMax", max, actual: timeoutMs, subject },
    });
  }
}
