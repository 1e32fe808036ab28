import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { z } from "zod";
import type { Logger } from "../actors/logger.js";
import type { TesseraNode } from "../actors/node.js";
import { AgentError } from "../core/errors.js";
import type { Json } from "../core/json.js";
import { defaultLimits } from "../core/limits.js";
import { errorResponse, HttpError, readJsonBody, sendJson } from "./http-io.js";

/** Largest request body, in bytes: an event of `eventBytesMax` plus room for its envelope and chain. */
export const httpRequestBytesMax = 2 * defaultLimits.eventBytesMax;
/** `timeoutMs` of a wait when none is given, in milliseconds. */
export const waitTimeoutMsDefault = 30_000;
/** Longest `timeoutMs` a wait may ask for, in milliseconds. */
export const waitTimeoutMsMax = 300_000;
/** Most journal entries one read returns. */
export const journalPageMax = 1000;
/** How long closing waits for in-flight requests before cutting their connections, in milliseconds. */
export const httpCloseGraceMs = 2000;
/** How long a client may take to send a request's headers, in milliseconds. */
export const httpHeadersTimeoutMs = 10_000;
/** How long an idle keep-alive connection stays open, in milliseconds. */
export const httpKeepAliveTimeoutMs = 5000;

/** What the HTTP API needs of a node. */
export type NodeApi = Pick<
  TesseraNode,
  "getActor" | "startRun" | "sendEvent" | "waitForStatus" | "readJournal" | "listEffects" | "listNodes" | "engageKillSwitch"
>;

/** Where the process is: `/readyz` answers 200 only when `ready`. */
export type NodeProcessState = "starting" | "ready" | "draining" | "stopped";

/** Options of {@link createHttpApi}. */
export interface HttpApiOptions {
  /** The node, once it exists; until then every `/v1` request answers 503 `ERR_NODE_NOT_READY`. */
  node: () => NodeApi | undefined;
  /** The process state, for `/readyz`. */
  state: () => NodeProcessState;
  logger: Logger;
}

/** A listening HTTP API. */
export interface HttpApi {
  /** `http://host:port` with the port really bound. */
  readonly url: string;
  readonly port: number;
  /** Stops listening, aborts in-flight requests (503 `ERR_NODE_CLOSED`) and closes connections. Idempotent. */
  close(): Promise<void>;
}

interface RequestContext {
  req: IncomingMessage;
  url: URL;
  params: Record<string, string>;
  node: NodeApi;
  signal: AbortSignal;
}
type Reply = { status: number; body: unknown };
interface Route {
  method: "GET" | "POST";
  segments: string[];
  needsNode: boolean;
  handle: (context: RequestContext) => Promise<Reply>;
}

const startRunBody = z
  .object({
    agentType: z.string().min(1),
    input: z.json(),
    idempotencyKey: z.string().min(1),
    runId: z.string().min(1).optional(),
    chain: z.array(z.string().min(1)).optional(),
  })
  .strict();
const sendEventBody = z
  .object({
    event: z.object({ type: z.string().min(1) }).catchall(z.json()),
    messageId: z.string().min(1),
    chain: z.array(z.string().min(1)).optional(),
  })
  .strict();

function parseBody<Schema extends z.ZodType>(schema: Schema, body: unknown): z.output<Schema> {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new AgentError("ERR_VALIDATION", `invalid request body at ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}`, {
    details: { issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), code: i.code, message: i.message })) },
  });
}

function intParam(url: URL, name: string, range: { min: number; max: number }): number | undefined {
  const raw = url.searchParams.get(name);
  if (raw === null) return undefined;
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < range.min || value > range.max)
    throw new AgentError("ERR_VALIDATION", `query parameter ${name} must be an integer from ${range.min} to ${range.max}`, {
      details: { parameter: name, value: raw },
    });
  return value;
}

const killSwitchBody = z.object({ agentType: z.string().min(1), reason: z.string().min(1).max(512) }).strict();

const actorPath = "v1/tenants/:tenant/actors/:actorId";
const routes: Route[] = [
  {
    method: "GET",
    segments: ["v1", "nodes"],
    needsNode: true,
    handle: async ({ node }) => ({ status: 200, body: { nodes: await node.listNodes() } }),
  },
  {
    method: "POST",
    segments: ["v1", "tenants", ":tenant", "runs"],
    needsNode: true,
    handle: async ({ req, params, node }) => {
      const body = parseBody(startRunBody, await readJsonBody(req, httpRequestBytesMax));
      const result = await node.startRun({ ...body, input: body.input as Json, tenantId: params.tenant! });
      return { status: result.created ? 201 : 200, body: result };
    },
  },
  {
    method: "POST",
    segments: ["v1", "tenants", ":tenant", "kill-switches"],
    needsNode: true,
    handle: async ({ req, params, node }) => {
      const body = parseBody(killSwitchBody, await readJsonBody(req, httpRequestBytesMax));
      const result = await node.engageKillSwitch({ ...body, tenantId: params.tenant! });
      return { status: result.engaged ? 201 : 200, body: result };
    },
  },
  {
    method: "GET",
    segments: actorPath.split("/"),
    needsNode: true,
    handle: async ({ params, node }) => ({ status: 200, body: await node.getActor(params.tenant!, params.actorId!) }),
  },
  {
    method: "POST",
    segments: [...actorPath.split("/"), "events"],
    needsNode: true,
    handle: async ({ req, params, node }) => {
      const body = parseBody(sendEventBody, await readJsonBody(req, httpRequestBytesMax));
      const event = body.event as { type: string } & Record<string, Json>;
      const result = await node.sendEvent({ ...body, event, tenantId: params.tenant!, actorId: params.actorId! });
      return { status: 202, body: result };
    },
  },
  {
    method: "POST",
    segments: [...actorPath.split("/"), "wait"],
    needsNode: true,
    handle: async ({ url, params, node, signal }) => {
      const timeoutMs = intParam(url, "timeoutMs", { min: 1, max: waitTimeoutMsMax }) ?? waitTimeoutMsDefault;
      return { status: 200, body: await node.waitForStatus(params.tenant!, params.actorId!, { timeoutMs, signal }) };
    },
  },
  {
    method: "GET",
    segments: [...actorPath.split("/"), "journal"],
    needsNode: true,
    handle: async ({ url, params, node }) => {
      const afterSeq = intParam(url, "afterSeq", { min: 0, max: Number.MAX_SAFE_INTEGER }) ?? 0;
      const limit = intParam(url, "limit", { min: 1, max: journalPageMax }) ?? journalPageMax;
      return { status: 200, body: { entries: await node.readJournal(params.tenant!, params.actorId!, { afterSeq, limit }) } };
    },
  },
  {
    method: "GET",
    segments: [...actorPath.split("/"), "effects"],
    needsNode: true,
    handle: async ({ params, node }) => ({ status: 200, body: { effects: await node.listEffects(params.tenant!, params.actorId!) } }),
  },
];

function match(route: Route, segments: readonly string[]): Record<string, string> | undefined {
  if (route.segments.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, expected] of route.segments.entries()) {
    const actual = segments[i]!;
    if (expected.startsWith(":")) params[expected.slice(1)] = actual;
    else if (expected !== actual) return undefined;
  }
  return params;
}

function pathSegments(pathname: string): string[] {
  try {
    return pathname.split("/").slice(1).map(decodeURIComponent);
  } catch (cause) {
    throw new HttpError(400, "ERR_VALIDATION", `the path ${pathname} is not valid percent-encoding`, { cause });
  }
}

/**
 * Serves a node over HTTP (node:http, JSON in and out). Endpoints; every tenant-scoped one takes
 * the tenant from its path:
 *
 * - `GET /healthz` → 200 `{ ok: true }` while the process is up
 * - `GET /readyz` → 200 `{ ready: true }` after `start()` and before draining, else 503 `{ ready: false, state }`
 * - `GET /v1/nodes` → `{ nodes }`: every registered node with `ownedActors`
 * - `POST /v1/tenants/:tenant/runs` `{ agentType, input, idempotencyKey, runId?, chain? }` → 201 (new) or 200 `{ runId, created }`
 * - `GET /v1/tenants/:tenant/actors/:actorId` → the actor's view (status, output, `ownerNode`, `epoch`)
 * - `POST /v1/tenants/:tenant/actors/:actorId/events` `{ event, messageId, chain? }` → 202 `{ accepted }`
 * - `POST /v1/tenants/:tenant/actors/:actorId/wait?timeoutMs=` → the view once final (504 `ERR_TIMEOUT` otherwise)
 * - `GET /v1/tenants/:tenant/actors/:actorId/journal?afterSeq=&limit=` → `{ entries }`
 * - `GET /v1/tenants/:tenant/actors/:actorId/effects` → `{ effects }`
 *
 * Errors are `{ error: { code, message, details } }` with the status of {@link statusOfCode}.
 *
 * @param options - the node (once created), the process state and a logger
 * @param listen - the address; port 0 takes an ephemeral port
 * @returns the API, listening
 * @throws Error when the address cannot be bound (in use, not local)
 * @example
 * ```ts
 * const api = await createHttpApi({ node: () => node, state: () => "ready", logger }, { host: "127.0.0.1", port: 0 });
 * console.log(api.url); // http://127.0.0.1:41234
 * ```
 */
export async function createHttpApi(options: HttpApiOptions, listen: { host: string; port: number }): Promise<HttpApi> {
  const inflight = new Set<AbortController>();
  let closing = false;

  const handle = async (req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const segments = pathSegments(url.pathname);
    if (req.method === "GET" && segments.length === 1 && segments[0] === "healthz") return sendJson(res, 200, { ok: true });
    if (req.method === "GET" && segments.length === 1 && segments[0] === "readyz") {
      const state = options.state();
      return sendJson(res, state === "ready" ? 200 : 503, { ready: state === "ready", state });
    }
    const candidates = routes.map((route) => ({ route, params: match(route, segments) })).filter((c) => c.params !== undefined);
    if (candidates.length === 0) throw new HttpError(404, "ERR_ROUTE_NOT_FOUND", `no endpoint ${url.pathname}`);
    const found = candidates.find((c) => c.route.method === req.method);
    if (found === undefined) {
      const allow = candidates.map((c) => c.route.method).join(", ");
      res.setHeader("allow", allow);
      throw new HttpError(405, "ERR_METHOD_NOT_ALLOWED", `${req.method} is not allowed on ${url.pathname} (allowed: ${allow})`);
    }
    const node = options.node();
    if (node === undefined || options.state() === "starting")
      throw new HttpError(503, "ERR_NODE_NOT_READY", "the node is still starting", { retryable: true });
    const reply = await found.route.handle({ req, url, params: found.params!, node, signal });
    sendJson(res, reply.status, reply.body);
  };

  const server: Server = createServer((req, res) => {
    const started = Date.now();
    const controller = new AbortController();
    inflight.add(controller);
    // A client that goes away cancels what it waited for (a wait, in particular).
    res.on("close", () => {
      inflight.delete(controller);
      if (!res.writableFinished) controller.abort(new AgentError("ERR_ABORTED", "the client closed the connection"));
    });
    if (closing) controller.abort(new AgentError("ERR_NODE_CLOSED", "the node is stopping"));
    handle(req, res, controller.signal)
      .catch((error: unknown) => {
        const { status, body } = errorResponse(error);
        if (status >= 500 && status !== 503 && status !== 504)
          options.logger.error({ err: body.error, path: req.url }, "HTTP request failed");
        sendJson(res, status, body);
      })
      .finally(() => options.logger.debug({ method: req.method, path: req.url, status: res.statusCode, ms: Date.now() - started }, "HTTP"));
  });
  server.headersTimeout = httpHeadersTimeoutMs;
  server.requestTimeout = waitTimeoutMsMax + httpHeadersTimeoutMs;
  server.keepAliveTimeout = httpKeepAliveTimeoutMs;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (error) => options.logger.error({ err: (error as Error).message }, "HTTP server error"));
  const { port } = server.address() as AddressInfo;
  const host = listen.host.includes(":") ? `[${listen.host}]` : listen.host;

  let closed: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    port,
    close() {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const controller of inflight) controller.abort(new AgentError("ERR_NODE_CLOSED", "the node is stopping"));
        server.closeIdleConnections();
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([stopped, new Promise<void>((resolve) => (timer = setTimeout(resolve, httpCloseGraceMs)))]);
        clearTimeout(timer);
        server.closeAllConnections();
        await stopped;
      })();
      return closed;
    },
  };
}
