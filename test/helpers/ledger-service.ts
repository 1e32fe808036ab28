/**
 * A ledger HTTP service for crash tests: an external system that counts effects by idempotency key,
 * the way Stripe does. It keeps everything in memory and runs either in the test process or as a
 * process of its own that outlives the node processes a crash test kills:
 *
 * ```sh
 * npx tsx test/helpers/ledger-service.ts --port 0
 * # {"ready":true,"url":"http://127.0.0.1:41234"}
 * ```
 *
 * Routes:
 * - `POST /effects[?delayMs=N]`, header `Idempotency-Key` (optional `X-Tessera-Epoch`), body
 *   `{ kind, payload }`. The first call with a key is applied: 201 `{ applied: true, id }`. A repeat
 *   is a duplicate attempt: 200 `{ applied: false, id }` with the first call's id. A repeat with a
 *   different body is a mismatch: 422 `{ applied: false, id, error: "ERR_IDEMPOTENCY_MISMATCH" }`.
 *   With `delayMs` the call is recorded (and applied) at once and answered after the delay, which is
 *   the window in which a crash leaves the caller not knowing the outcome.
 * - `GET /stats` → {@link LedgerStats}; `GET /records` → `{ records }`; `POST /reset` → 204.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { z } from "zod";
import { assert } from "../../core/assert.js";
import { canonicalJson } from "../../core/json.js";
import type { Json } from "../../core/json.js";

/** Largest request body accepted, in bytes. */
const requestBytesMax = 1024 * 1024;
/** Longest `delayMs` accepted, in milliseconds. */
const delayMsMax = 60_000;
/** Longest idempotency key accepted, in characters. */
const keyLengthMax = 256;

/** Options of {@link startLedger}. */
export interface LedgerOptions {
  /** Port to listen on; 0 picks a free one. @defaultValue 0 */
  port?: number;
  /** Address to listen on. @defaultValue "127.0.0.1" */
  host?: string;
  /** Calls recorded before the ledger answers 507. @defaultValue 100000 */
  recordsMax?: number;
}

/** Counts over every recorded `POST /effects` call since start or the last reset. */
export interface LedgerStats {
  /** Calls recorded, repeats and mismatches included. */
  calls: number;
  /** Distinct keys applied (each key is applied once, on its first call). */
  applied: number;
  /** Keys seen more than once. */
  duplicates: number;
  /** Calls that reused a key with a different `{ kind, payload }`. */
  mismatches: number;
  /** Calls per idempotency key. */
  byKey: Record<string, number>;
}

/** One recorded call. */
export interface LedgerRecord {
  /** Order of arrival, from 1. */
  seq: number;
  key: string;
  kind: string;
  payload: Json | undefined;
  /** The `X-Tessera-Epoch` header, when sent. */
  epoch: number | undefined;
  /** The id of the effect this key applied. */
  id: string;
  /** Whether this call applied the effect (only the first call of a key does). */
  applied: boolean;
  /** The status the ledger answered (or will answer, after a delay). */
  status: 200 | 201 | 422;
}

/** {@link LedgerStats} and the calls themselves. */
export interface LedgerSnapshot extends LedgerStats {
  records: LedgerRecord[];
}

/** A running ledger. */
export interface Ledger {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** A copy of the current counts and records. */
  snapshot(): LedgerSnapshot;
  /** Stops listening and drops open connections, pending delayed answers included. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const optionsSchema = z.strictObject({
  port: z.number().int().min(0).max(65_535).default(0),
  host: z.string().min(1).default("127.0.0.1"),
  recordsMax: z.number().int().positive().default(100_000),
});

const effectBodySchema = z.strictObject({ kind: z.string().min(1).max(256), payload: z.json().optional() });

/** The ledger's memory: every call in order, and the first call per key. */
class Book {
  records: LedgerRecord[] = [];
  private appliedByKey = new Map<string, { id: string; fingerprint: string }>();
  private nextId = 1;

  stats(): LedgerStats {
    const byKey: Record<string, number> = {};
    for (const record of this.records) byKey[record.key] = (byKey[record.key] ?? 0) + 1;
    return {
      calls: this.records.length,
      applied: this.appliedByKey.size,
      duplicates: Object.values(byKey).filter((count) => count > 1).length,
      mismatches: this.records.filter((record) => record.status === 422).length,
      byKey,
    };
  }

  record(key: string, body: EffectBody, epoch: number | undefined): LedgerRecord {
    const fingerprint = canonicalJson([body.kind, body.payload ?? null]);
    const seen = this.appliedByKey.get(key);
    const id = seen?.id ?? `led_${this.nextId++}`;
    if (seen === undefined) this.appliedByKey.set(key, { id, fingerprint });
    const status = seen === undefined ? 201 : seen.fingerprint === fingerprint ? 200 : 422;
    const record: LedgerRecord = {
      seq: this.records.length + 1,
      key,
      kind: body.kind,
      payload: body.payload,
      epoch,
      id,
      applied: seen === undefined,
      status,
    };
    this.records.push(record);
    assert(this.appliedByKey.size <= this.records.length, "every applied key has at least one call");
    return record;
  }

  reset(): void {
    this.records = [];
    this.appliedByKey = new Map();
    this.nextId = 1;
  }
}

type EffectBody = z.output<typeof effectBodySchema>;

interface EffectCall {
  key: string;
  epoch: number | undefined;
  delayMs: number;
  body: EffectBody;
}

/** Checks a `POST /effects` call; returns it, or the status and message to refuse it with. */
async function parseEffectCall(
  request: http.IncomingMessage,
  query: URLSearchParams,
): Promise<EffectCall | { status: number; error: string }> {
  const key = request.headers["idempotency-key"];
  if (typeof key !== "string" || key.length === 0 || key.length > keyLengthMax) {
    return { status: 400, error: `Idempotency-Key header is required (1 to ${keyLengthMax} characters)` };
  }
  const epoch = request.headers["x-tessera-epoch"];
  if (epoch !== undefined && (typeof epoch !== "string" || !/^\d{1,15}$/.test(epoch))) {
    return { status: 400, error: "X-Tessera-Epoch must be a non-negative integer" };
  }
  const delayText = query.get("delayMs");
  const delayMs = delayText === null ? 0 : Number(delayText);
  if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > delayMsMax) {
    return { status: 400, error: `delayMs must be an integer from 0 to ${delayMsMax}` };
  }
  const text = await readText(request);
  if (text === undefined) return { status: 413, error: `body over ${requestBytesMax} bytes` };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { status: 400, error: "body is not JSON" };
  }
  const body = effectBodySchema.safeParse(json);
  if (!body.success) return { status: 400, error: "body must be { kind: string, payload?: JSON }" };
  return { key, epoch: epoch === undefined ? undefined : Number(epoch), delayMs, body: body.data };
}

/**
 * Starts a ledger on loopback.
 *
 * @param options - where to listen and how many calls to keep
 * @returns the running ledger; close it when done
 * @throws Error when the options are invalid or the port cannot be bound
 * @example
 * ```ts
 * await using ledger = await startLedger({ port: 0 });
 * await fetch(`${ledger.url}/effects`, {
 *   method: "POST",
 *   headers: { "Idempotency-Key": "k-1", "Content-Type": "application/json" },
 *   body: JSON.stringify({ kind: "refund", payload: { amount: 20 } }),
 * });
 * ledger.snapshot().applied; // 1
 * ```
 */
export async function startLedger(options: LedgerOptions = {}): Promise<Ledger> {
  const resolved = optionsSchema.parse(options);
  const book = new Book();
  const delays = new Set<NodeJS.Timeout>();

  async function handleEffect(request: http.IncomingMessage, response: http.ServerResponse, query: URLSearchParams): Promise<void> {
    const call = await parseEffectCall(request, query);
    if ("error" in call) return sendJson(response, call.status, { error: call.error });
    if (book.records.length >= resolved.recordsMax) return sendJson(response, 507, { error: "ledger is full" });
    // Recorded (and applied) now, answered after the delay: the window a crash test kills a node in.
    const record = book.record(call.key, call.body, call.epoch);
    const answer =
      record.status === 422
        ? { applied: false, id: record.id, error: "ERR_IDEMPOTENCY_MISMATCH" }
        : { applied: record.applied, id: record.id };
    if (call.delayMs === 0) return sendJson(response, record.status, answer);
    const timer = setTimeout(() => {
      delays.delete(timer);
      sendJson(response, record.status, answer);
    }, call.delayMs);
    delays.add(timer);
  }

  async function handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://ledger");
    const route = `${request.method ?? "GET"} ${url.pathname}`;
    switch (route) {
      case "POST /effects":
        return handleEffect(request, response, url.searchParams);
      case "GET /stats":
        return sendJson(response, 200, book.stats());
      case "GET /records":
        return sendJson(response, 200, { records: book.records });
      case "POST /reset":
        book.reset();
        response.writeHead(204).end();
        return;
      default:
        return sendJson(response, 404, { error: `no route ${route}` });
    }
  }

  const server = http.createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) sendJson(response, 500, { error: String(error) });
      else response.destroy();
    });
  });
  server.on("clientError", (_error, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(resolved.port, resolved.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  assert(address.port > 0, "the ledger listens on a real port");
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;

  let closing: Promise<void> | undefined;
  function close(): Promise<void> {
    closing ??= new Promise<void>((resolve) => {
      for (const timer of delays) clearTimeout(timer);
      delays.clear();
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  }

  return {
    url: `http://${host}:${address.port}`,
    snapshot: () => structuredClone({ ...book.stats(), records: book.records }),
    close,
    [Symbol.asyncDispose]: close,
  };
}

function sendJson(response: http.ServerResponse, status: number, body: unknown): void {
  if (response.destroyed || response.headersSent) return;
  const text = JSON.stringify(body);
  response.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  response.end(text);
}

/** Reads the body as text, or returns undefined (and stops reading) when it is over the limit. */
async function readText(request: http.IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    bytes += chunk.byteLength;
    if (bytes > requestBytesMax) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Standalone mode: listen, print one JSON line, and close on SIGTERM or SIGINT. */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: "0" },
      host: { type: "string", default: "127.0.0.1" },
      // For callers that want the ledger to die with them: exit when stdin closes.
      "exit-with-stdin": { type: "boolean", default: false },
    },
    strict: true,
  });
  const ledger = await startLedger({ port: Number(values.port), host: values.host });
  const stop = (): void => {
    void ledger.close().then(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  if (values["exit-with-stdin"]) {
    process.stdin.on("end", stop);
    process.stdin.on("close", stop);
    process.stdin.resume();
  }
  process.stdout.write(`${JSON.stringify({ ready: true, url: ledger.url })}\n`);
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main().catch((error: unknown) => {
    process.stderr.write(`${JSON.stringify({ ready: false, error: String(error) })}\n`);
    process.exit(1);
  });
}
