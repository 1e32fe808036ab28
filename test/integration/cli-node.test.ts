import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { databaseUrl, natsUrl } from "../helpers/services.js";
import { createTestPgPool, dropSchemas, uniqueSchema } from "../helpers/sql.js";

/**
 * `tessera node` as a user runs it: a real process (`node --import tsx cli/tessera.ts node …`) on
 * the real PostgreSQL and NATS, driven over its HTTP API and stopped with real signals.
 */
const repoRoot = path.resolve(import.meta.dirname, "../..");
const agentsModule = path.join(repoRoot, "test/fixtures/cli-agents.ts");
const tenant = "acme";
/** How long a node may take to print its ready line (tsx compiles on the fly), in milliseconds. */
const readyTimeoutMs = 30_000;

const schemas: string[] = [];
const children = new Set<ChildProcess>();
const tempDirs: string[] = [];

afterEach(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
  }
  children.clear();
});

afterAll(async () => {
  const pool = createTestPgPool(1);
  await dropSchemas(pool, schemas);
  await pool.end();
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
});

interface ReadyLine {
  event: "ready";
  nodeId: string;
  http: string;
  pid: number;
  recovered: number;
  store: "pg" | "pglite";
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string[];
  stderr: string;
}

interface RunningNode {
  child: ChildProcess;
  ready: ReadyLine;
  stdout: string[];
  stderr: () => string;
  exited: Promise<Exit>;
}

/** Flags of a node on its own schema (created by --migrate) and its own NATS subject prefix. */
function clusterFlags(options: { schema?: string; cluster?: string } = {}): string[] {
  const schema = options.schema ?? uniqueSchema();
  if (!schemas.includes(schema)) schemas.push(schema);
  return [
    ...["--database-url", databaseUrl, "--schema", schema, "--migrate"],
    ...["--nats-url", natsUrl, "--cluster", options.cluster ?? `c${randomUUID().slice(0, 8)}`],
    ...["--agents", agentsModule, "--log-level", "warn"],
    ...["--lease-ttl-ms", "3000", "--renew-interval-ms", "1000", "--sweep-interval-ms", "500"],
  ];
}

function spawnNode(args: readonly string[]): { child: ChildProcess; stdout: string[]; stderr: () => string; exited: Promise<Exit> } {
  const child = spawn(process.execPath, ["--import", "tsx", "cli/tessera.ts", "node", ...args], {
    cwd: repoRoot,
    env: { ...process.env, DATABASE_URL: "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const stdout: string[] = [];
  let stdoutRest = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (stdoutRest + chunk).split("\n");
    stdoutRest = parts.pop()!;
    stdout.push(...parts);
    child.emit("stdout-line");
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
    child.emit("stderr-data");
  });
  const exited = new Promise<Exit>((resolve) =>
    child.once("close", (code, signal) => resolve({ code, signal, stdout: stdoutRest === "" ? stdout : [...stdout, stdoutRest], stderr })),
  );
  return { child, stdout, stderr: () => stderr, exited };
}

/** Starts a node and waits for its ready line; fails with its stderr when it exits first. */
async function startNode(args: readonly string[]): Promise<RunningNode> {
  const spawned = spawnNode(args);
  const ready = await new Promise<ReadyLine>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ready line within ${readyTimeoutMs} ms; stderr:\n${spawned.stderr()}`)),
      readyTimeoutMs,
    );
    spawned.child.on("stdout-line", () => {
      if (spawned.stdout.length === 0) return;
      clearTimeout(timer);
      resolve(JSON.parse(spawned.stdout[0]!) as ReadyLine);
    });
    void spawned.exited.then((exit) => {
      clearTimeout(timer);
      reject(new Error(`the node exited (${exit.code ?? exit.signal}) before it was ready; stderr:\n${exit.stderr}`));
    });
  });
  return { ...spawned, ready };
}

/** Runs a node that is expected to fail, and returns how it ended. */
async function runToExit(args: readonly string[]): Promise<Exit> {
  return spawnNode(args).exited;
}

/** The JSON error line a failed command printed: its last stderr line. */
function errorLine(exit: Exit): { error: { code: string; message: string; details?: unknown } } {
  const lines = exit.stderr.trim().split("\n");
  return JSON.parse(lines.at(-1)!) as { error: { code: string; message: string } };
}

async function call(node: RunningNode, method: "GET" | "POST", route: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${node.ready.http}${route}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
  });
  const text = await response.text();
  return { status: response.status, body: text === "" ? undefined : JSON.parse(text) };
}

function waitForStderr(node: { child: ChildProcess; stderr: () => string }, pattern: RegExp): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (!pattern.test(node.stderr())) return;
      node.child.off("stderr-data", check);
      resolve();
    };
    node.child.on("stderr-data", check);
    check();
  });
}

describe("tessera node", () => {
  it("prints exactly one ready line and answers /healthz and /readyz", async () => {
    const nodeId = `n-${randomUUID().slice(0, 8)}`;
    const node = await startNode([...clusterFlags(), "--node-id", nodeId]);
    expect(node.ready).toEqual({
      event: "ready",
      nodeId,
      http: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
      pid: node.child.pid,
      recovered: 0,
      store: "pg",
    });
    expect(Number(new URL(node.ready.http).port)).toBeGreaterThan(0);
    expect(await call(node, "GET", "/healthz")).toEqual({ status: 200, body: { ok: true } });
    expect(await call(node, "GET", "/readyz")).toMatchObject({ status: 200, body: { ready: true } });
    expect(node.stdout).toHaveLength(1);
  });

  it("starts a run over HTTP, waits for it and reads its record and owner", async () => {
    const node = await startNode(clusterFlags());
    const start = { agentType: "cli-order", input: { orderId: "o-1" }, idempotencyKey: "order-o-1" };
    const first = await call(node, "POST", `/v1/tenants/${tenant}/runs`, start);
    expect(first).toMatchObject({ status: 201, body: { created: true, runId: expect.any(String) } });
    const runId = first.body.runId as string;
    expect(await call(node, "POST", `/v1/tenants/${tenant}/runs`, start)).toEqual({ status: 200, body: { runId, created: false } });

    const done = await call(node, "POST", `/v1/tenants/${tenant}/actors/${runId}/wait?timeoutMs=20000`);
    expect(done).toMatchObject({ status: 200, body: { actorId: runId, status: "completed", output: { total: 42 } } });

    const view = await call(node, "GET", `/v1/tenants/${tenant}/actors/${runId}`);
    expect(view).toMatchObject({ status: 200, body: { status: "completed", ownerNode: node.ready.nodeId, epoch: expect.any(Number) } });

    const journal = await call(node, "GET", `/v1/tenants/${tenant}/actors/${runId}/journal?afterSeq=0&limit=100`);
    expect(journal.status).toBe(200);
    expect(journal.body.entries.length).toBeGreaterThanOrEqual(2);
    expect(journal.body.entries[0]).toMatchObject({ seq: 1 });

    const effects = await call(node, "GET", `/v1/tenants/${tenant}/actors/${runId}/effects`);
    expect(effects.status).toBe(200);
    expect(effects.body.effects).toEqual([expect.objectContaining({ name: "lookupOrder", state: "completed" })]);
  });

  it("lists itself in /v1/nodes with the actors it owns, and applies an event sent over HTTP", async () => {
    const node = await startNode(clusterFlags());
    const { body: run } = await call(node, "POST", `/v1/tenants/${tenant}/runs`, {
      agentType: "cli-waiter",
      input: {},
      idempotencyKey: "wait-1",
    });
    const nodes = await call(node, "GET", "/v1/nodes");
    expect(nodes.status).toBe(200);
    expect(nodes.body.nodes).toEqual([
      expect.objectContaining({
        nodeId: node.ready.nodeId,
        state: "active",
        live: true,
        ownedActors: 1,
        // The registration's life id tells this process from a later one started under the same id.
        info: { http: node.ready.http, pid: node.ready.pid, life: expect.stringMatching(/^life_/) },
      }),
    ]);

    const event = { event: { type: "go", note: "from http" }, messageId: "m-1" };
    expect(await call(node, "POST", `/v1/tenants/${tenant}/actors/${run.runId}/events`, event)).toMatchObject({
      status: 202,
      body: { accepted: true },
    });
    const done = await call(node, "POST", `/v1/tenants/${tenant}/actors/${run.runId}/wait?timeoutMs=20000`);
    expect(done.body).toMatchObject({ status: "completed", output: { note: "from http" } });
  });

  it("answers bad requests with typed JSON errors", async () => {
    const node = await startNode(clusterFlags());
    expect(await call(node, "GET", `/v1/tenants/${tenant}/actors/nobody`)).toMatchObject({
      status: 404,
      body: { error: { code: "ERR_ACTOR_NOT_FOUND" } },
    });
    expect(
      await call(node, "POST", `/v1/tenants/${tenant}/runs`, { agentType: "no-such-agent", input: {}, idempotencyKey: "k-1" }),
    ).toMatchObject({ status: 400, body: { error: { code: "ERR_UNKNOWN_AGENT_TYPE" } } });
    expect(await call(node, "POST", `/v1/tenants/${tenant}/runs`, { agentType: "cli-order" })).toMatchObject({
      status: 400,
      body: { error: { code: "ERR_VALIDATION" } },
    });
    const notJson = await fetch(`${node.ready.http}/v1/tenants/${tenant}/runs`, {
      method: "POST",
      body: "agentType=cli-order",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: { code: string } }).error.code).toBe("ERR_VALIDATION");
    const tooLarge = await fetch(`${node.ready.http}/v1/tenants/${tenant}/runs`, {
      method: "POST",
      body: JSON.stringify({ agentType: "cli-order", input: { pad: "x".repeat(1024 * 1024) }, idempotencyKey: "k-2" }),
      headers: { "content-type": "application/json" },
    });
    expect(tooLarge.status).toBe(413);
    expect(((await tooLarge.json()) as { error: { code: string; details: { limit: string } } }).error).toMatchObject({
      code: "ERR_PAYLOAD_TOO_LARGE",
      details: { limit: "httpRequestBytesMax" },
    });
    expect(await call(node, "POST", `/v1/tenants/${tenant}/actors/a-1/journal`)).toMatchObject({
      status: 405,
      body: { error: { code: "ERR_METHOD_NOT_ALLOWED" } },
    });
    expect(await call(node, "GET", "/v2/anything")).toMatchObject({ status: 404, body: { error: { code: "ERR_ROUTE_NOT_FOUND" } } });
    expect(await call(node, "GET", `/v1/tenants/${tenant}/actors/a-1/journal?limit=0`)).toMatchObject({
      status: 400,
      body: { error: { code: "ERR_VALIDATION" } },
    });
  });

  it("reads its settings from a config file, flags winning over it", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tessera-cli-"));
    tempDirs.push(dir);
    const schema = uniqueSchema();
    schemas.push(schema);
    const file = path.join(dir, "node.json");
    await writeFile(
      file,
      JSON.stringify({
        databaseUrl,
        schema,
        migrate: true,
        agents: path.relative(dir, agentsModule),
        nodeId: "from-file",
        http: "127.0.0.1:0",
        logLevel: "warn",
        leaseTtlMs: 3000,
        idleMs: 60_000,
        residentMax: 100,
        drainGraceMs: 2000,
        clockOffsetMs: 0,
      }),
    );
    const node = await startNode(["--config", file, "--node-id", "from-flag"]);
    expect(node.ready).toMatchObject({ nodeId: "from-flag", store: "pg", recovered: 0 });
  });

  it("drains on SIGTERM, prints the stopped line and exits 0", async () => {
    const node = await startNode(clusterFlags());
    const { body: run } = await call(node, "POST", `/v1/tenants/${tenant}/runs`, {
      agentType: "cli-order",
      input: { orderId: "o-1" },
      idempotencyKey: "before-stop",
    });
    await call(node, "POST", `/v1/tenants/${tenant}/actors/${run.runId}/wait?timeoutMs=20000`);
    node.child.kill("SIGTERM");
    const exit = await node.exited;
    expect(exit.code).toBe(0);
    expect(exit.stdout.map((line) => JSON.parse(line))).toEqual([node.ready, { event: "stopped", nodeId: node.ready.nodeId }]);
  });

  it("exits at once with 130 on a second signal during a drain", async () => {
    const node = await startNode([...clusterFlags(), "--log-level", "info", "--drain-grace-ms", "60000"]);
    const { body: run } = await call(node, "POST", `/v1/tenants/${tenant}/runs`, {
      agentType: "cli-slow",
      input: { ms: 60_000 },
      idempotencyKey: "slow-1",
    });
    // The drain has something to wait for once the tool is running.
    for (;;) {
      const { body } = await call(node, "GET", `/v1/tenants/${tenant}/actors/${run.runId}/effects`);
      if (body.effects.some((e: { state: string }) => e.state === "running")) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    node.child.kill("SIGTERM");
    await waitForStderr(node, /"msg":"draining"/);
    expect(await call(node, "GET", "/readyz")).toMatchObject({ status: 503, body: { ready: false, state: "draining" } });
    node.child.kill("SIGTERM");
    const exit = await node.exited;
    expect(exit.code).toBe(130);
    expect(exit.stdout).toHaveLength(1);
  });

  it("exits 1 with a typed JSON error line on a bad flag", async () => {
    const exit = await runToExit([...clusterFlags(), "--lease-ttl-ms", "-5"]);
    expect(exit.code).toBe(1);
    expect(exit.stdout).toEqual([]);
    expect(errorLine(exit)).toMatchObject({ error: { code: "ERR_CONFIG", message: expect.stringContaining("--lease-ttl-ms") } });

    const unknown = await runToExit([...clusterFlags(), "--no-such-flag"]);
    expect(unknown.code).toBe(1);
    expect(errorLine(unknown).error.code).toBe("ERR_CONFIG");
    expect(unknown.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("exits 1 with a typed JSON error line when the config file has an unknown key", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tessera-cli-"));
    tempDirs.push(dir);
    const file = path.join(dir, "node.json");
    await writeFile(file, JSON.stringify({ databaseUrl, agents: agentsModule, leaseTTL: 5 }));
    const exit = await runToExit(["--config", file]);
    expect(exit.code).toBe(1);
    expect(errorLine(exit)).toMatchObject({ error: { code: "ERR_CONFIG", message: expect.stringContaining(file) } });
  });

  it("exits 1 when the agents module is missing or exports no agents", async () => {
    const flags = clusterFlags().filter((_, i, all) => all[i] !== "--agents" && all[i - 1] !== "--agents");
    const missing = await runToExit([...flags, "--agents", "test/fixtures/no-such-module.ts"]);
    expect(missing.code).toBe(1);
    expect(errorLine(missing)).toMatchObject({ error: { code: "ERR_AGENTS_MODULE_NOT_FOUND" } });

    const invalid = await runToExit([...flags, "--agents", "test/helpers/services.ts"]);
    expect(invalid.code).toBe(1);
    expect(errorLine(invalid)).toMatchObject({ error: { code: "ERR_AGENTS_MODULE_INVALID" } });
  });

  it("exits 2 with a typed JSON error line when the store is unreachable", async () => {
    const exit = await runToExit([
      "--database-url",
      "postgresql://root@127.0.0.1:1/test",
      "--agents",
      agentsModule,
      "--log-level",
      "silent",
    ]);
    expect(exit.code).toBe(2);
    expect(exit.stdout).toEqual([]);
    expect(errorLine(exit).error.code).toMatch(/^ERR_STORE/);
  });
});
