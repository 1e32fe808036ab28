import type { IncomingMessage, ServerResponse } from "node:http";
import { AgentError, serializeError, type AgentErrorOptions, type SerializedError } from "../core/errors.js";

/**
 * An error the HTTP layer itself raises (a missing route, a wrong method, an oversized or non-JSON
 * body), with the status it answers with.
 */
export class HttpError extends AgentError {
  /** The HTTP status of the response. */
  readonly status: number;

  constructor(status: number, code: string, message: string, options: AgentErrorOptions = {}) {
    super(code, message, options);
    this.status = status;
  }
}

/**
 * The HTTP status of an error code: 400 for rejected input (`ERR_VALIDATION*`, `ERR_UNKNOWN_*`,
 * `ERR_PAYLOAD_*`), 403 for `ERR_AUTHZ_*`, 404 for `*_NOT_FOUND`, 409 for
 * `ERR_IDEMPOTENCY_MISMATCH`, `ERR_ACTOR_NOT_ACTIVE` and `ERR_KILL_SWITCH`, 429 for `ERR_MAILBOX_FULL`, 503 for
 * `ERR_NODE_CLOSED` and `ERR_NODE_NOT_READY`, 504 for `ERR_TIMEOUT`, 500 for anything else.
 *
 * @param code - an {@link AgentError} code
 * @returns the status
 * @example
 * ```ts
 * statusOfCode("ERR_MAILBOX_FULL"); // 429
 * ```
 */
export function statusOfCode(code: string): number {
  if (code.startsWith("ERR_VALIDATION") || code.startsWith("ERR_UNKNOWN_") || code.startsWith("ERR_PAYLOAD_")) return 400;
  if (code.startsWith("ERR_AUTHZ_")) return 403;
  if (code.endsWith("_NOT_FOUND")) return 404;
  if (code === "ERR_IDEMPOTENCY_MISMATCH" || code === "ERR_ACTOR_NOT_ACTIVE" || code === "ERR_KILL_SWITCH") return 409;
  if (code === "ERR_MAILBOX_FULL") return 429;
  if (code === "ERR_NODE_CLOSED" || code === "ERR_NODE_NOT_READY") return 503;
  if (code === "ERR_TIMEOUT") return 504;
  return 500;
}

/** The status and JSON body that answer an error: `{ error: { code, message, details } }`. */
export function errorResponse(error: unknown): { status: number; body: { error: SerializedError } } {
  if (error instanceof HttpError) return { status: error.status, body: { error: error.toJSON() } };
  const serialized = serializeError(error);
  return { status: error instanceof AgentError ? statusOfCode(error.code) : 500, body: { error: serialized } };
}

/** Writes a JSON response, unless the response has already been sent or its socket is gone. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(text)),
    "cache-control": "no-store",
    ...headers,
  });
  res.end(text);
}

/** How much of a too-large body is read and dropped before the connection is cut, as a multiple of the limit. */
export const discardFactor = 8;

const jsonContentType = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/**
 * Reads a request body of at most `bytesMax` bytes and parses it as JSON.
 *
 * @param req - the request; its Content-Type must be `application/json` (or `…+json`)
 * @param bytesMax - the largest body accepted, in bytes
 * @returns the parsed body
 * @throws HttpError 413 `ERR_PAYLOAD_TOO_LARGE` when the body is larger; 400 `ERR_VALIDATION` when it is not JSON
 * @example
 * ```ts
 * const body = await readJsonBody(req, httpRequestBytesMax);
 * ```
 */
export async function readJsonBody(req: IncomingMessage, bytesMax: number): Promise<unknown> {
  const contentType = req.headers["content-type"] ?? "";
  if (!jsonContentType.test(contentType))
    throw new HttpError(400, "ERR_VALIDATION", `the request body must be JSON (Content-Type: application/json), not "${contentType}"`, {
      details: { contentType },
    });
  const tooLarge = (actual: number): HttpError =>
    new HttpError(413, "ERR_PAYLOAD_TOO_LARGE", `the request body exceeds httpRequestBytesMax (${bytesMax} bytes)`, {
      details: { limit: "httpRequestBytesMax", max: bytesMax, actual },
    });
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > bytesMax) {
    discardBody(req, bytesMax);
    throw tooLarge(declared);
  }
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= bytesMax) return void chunks.push(chunk);
      req.off("data", onData);
      discardBody(req, bytesMax, size);
      reject(tooLarge(size));
    };
    req.on("data", onData);
    req.once("end", () => resolve(Buffer.concat(chunks)));
    req.once("error", reject);
  });
  try {
    return JSON.parse(body.toString("utf8")) as unknown;
  } catch (cause) {
    throw new HttpError(400, "ERR_VALIDATION", `the request body is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Reads and drops the rest of a refused body, so that the client, still sending, receives the
 * response instead of a reset connection; a body beyond {@link discardFactor} times the limit cuts
 * the connection instead.
 */
function discardBody(req: IncomingMessage, bytesMax: number, alreadyRead = 0): void {
  let size = alreadyRead;
  req.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size > discardFactor * bytesMax) req.destroy();
  });
  req.resume();
}
