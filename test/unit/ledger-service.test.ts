import { spawn } from "node:child_process";
import type { ChildProcessByStdio } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startLedger } from "../helpers/ledger-service.js";
import type { Ledger } from "../helpers/ledger-service.js";

interface PostOptions {
  key?: string;
  epoch?: string;
  body?: unknown;
  query?: string;
}

async function postEffect(url: string, options: PostOptions = {}): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (options.key !== undefined) headers["Idempotency-Key"] = options.key;
  if (options.epoch !== undefined) headers["X-Tessera-Epoch"] = options.epoch;
  const body = options.body === undefined ? { kind: "refund", payload: { amount: 20 } } : options.body;
  const response = await fetch(`${url}/effects${options.query ?? ""}`, {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: response.status, body: await response.json() };
}

async function getJson(url: string): Promise<unknown> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  expect(response.status).toBe(200);
  return response.json();
}

describe("ledger service (in process)", () => {
  let ledger: Ledger;

  beforeEach(async () => {
    ledger = await startLedger({ port: 0 });
  });
  afterEach(async () => {
    await ledger.close();
  });

  it("listens on a free loopback port", () => {
    expect(ledger.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it("applies the first call per key with 201 and answers repeats with 200 and the same id", async () => {
    const first = await postEffect(ledger.url, { key: "k-1" });
    expect(first).toEqual({ status: 201, body: { applied: true, id: "led_1" } });
    const repeat = await postEffect(ledger.url, { key: "k-1" });
    expect(repeat).toEqual({ status: 200, body: { applied: false, id: "led_1" } });
    const again = await postEffect(ledger.url, { key: "k-1" });
    expect(again.status).toBe(200);
    const other = await postEffect(ledger.url, { key: "k-2" });
    expect(other).toEqual({ status: 201, body: { applied: true, id: "led_2" } });

    const stats = { calls: 4, applied: 2, duplicates: 1, mismatches: 0, byKey: { "k-1": 3, "k-2": 1 } };
    expect(await getJson(`${ledger.url}/stats`)).toEqual(stats);
    expect(ledger.snapshot()).toMatchObject(stats);
  });

  it("records kind, payload and the X-Tessera-Epoch header of every call", async () => {
    await postEffect(ledger.url, { key: "k-1", epoch: "3", body: { kind: "charge", payload: { cents: 500 } } });
    await postEffect(ledger.url, { key: "k-1", epoch: "4", body: { kind: "charge", payload: { cents: 500 } } });
    await postEffect(ledger.url, { key: "k-2", body: { kind: "email" } });
    const records = [
      {
        seq: 1,
        key: "k-1",
        kind: "charge",
        payload: { cents: 500 },
        epoch: 3,
        id: "led_1",
        applied: true,
        status: 201,
      },
      {
        seq: 2,
        key: "k-1",
        kind: "charge",
        payload: { cents: 500 },
        epoch: 4,
        id: "led_1",
        applied: false,
        status: 200,
      },
      { seq: 3, key: "k-2", kind: "email", id: "led_2", applied: true, status: 201 },
    ];
    expect(await getJson(`${ledger.url}/records`)).toEqual({ records });
    expect(ledger.snapshot().records).toEqual(records.map((record) => ({ payload: undefined, epoch: undefined, ...record })));
  });

  it("answers 422 when a key is reused with a different request, and counts it", async () => {
    await postEffect(ledger.url, { key: "k-1", body: { kind: "refund", payload: { amount: 20 } } });
    // Key order does not matter; values do.
    const same = await postEffect(ledger.url, { key: "k-1", body: { payload: { amount: 20 }, kind: "refund" } });
    expect(same.status).toBe(200);
    const different = await postEffect(ledger.url, { key: "k-1", body: { kind: "refund", payload: { amount: 2000 } } });
    expect(different).toEqual({
      status: 422,
      body: { applied: false, id: "led_1", error: "ERR_IDEMPOTENCY_MISMATCH" },
    });
    expect(ledger.snapshot()).toMatchObject({ calls: 3, applied: 1, duplicates: 1, mismatches: 1 });
  });

  it.each([
    ["no Idempotency-Key", { body: { kind: "refund" } }],
    ["an Idempotency-Key too long", { key: "k".repeat(257) }],
    ["a body that is not JSON", { key: "k", body: "{nope" }],
    ["a body without kind", { key: "k", body: { payload: 1 } }],
    ["a body with unknown fields", { key: "k", body: { kind: "refund", amount: 1 } }],
    ["a non-integer epoch", { key: "k", epoch: "two" }],
    ["a negative delay", { key: "k", query: "?delayMs=-1" }],
    ["a delay over the limit", { key: "k", query: "?delayMs=60001" }],
  ])("rejects %s with 400 and records nothing", async (_what, options) => {
    const response = await postEffect(ledger.url, options);
    expect(response.status).toBe(400);
    expect(response.body).toEqual({ error: expect.any(String) });
    expect(ledger.snapshot()).toMatchObject({ calls: 0, applied: 0 });
  });

  it("records a delayed call at once and answers after delayMs", async () => {
    let answered = false;
    const pending = postEffect(ledger.url, { key: "k-slow", query: "?delayMs=1000" }).finally(() => {
      answered = true;
    });
    await expect.poll(() => ledger.snapshot().applied, { timeout: 2_000, interval: 10 }).toBe(1);
    expect(answered).toBe(false);
    expect(await pending).toEqual({ status: 201, body: { applied: true, id: "led_1" } });
  });

  it("keeps the effect applied when the caller disconnects during the delay, like a crashed node", async () => {
    const caller = new AbortController();
    const pending = fetch(`${ledger.url}/effects?delayMs=5000`, {
      method: "POST",
      headers: { "Idempotency-Key": "k-crash", "Content-Type": "application/json" },
      body: JSON.stringify({ kind: "refund" }),
      signal: caller.signal,
    });
    await expect.poll(() => ledger.snapshot().calls, { timeout: 2_000, interval: 10 }).toBe(1);
    caller.abort();
    await expect(pending).rejects.toThrow();
    const retry = await postEffect(ledger.url, { key: "k-crash", body: { kind: "refund" } });
    expect(retry).toEqual({ status: 200, body: { applied: false, id: "led_1" } });
    expect(ledger.snapshot()).toMatchObject({ calls: 2, applied: 1, duplicates: 1, byKey: { "k-crash": 2 } });
  });

  it("forgets everything on POST /reset", async () => {
    await postEffect(ledger.url, { key: "k-1" });
    await postEffect(ledger.url, { key: "k-1" });
    const reset = await fetch(`${ledger.url}/reset`, { method: "POST" });
    expect(reset.status).toBe(204);
    expect(await getJson(`${ledger.url}/stats`)).toEqual({
      calls: 0,
      applied: 0,
      duplicates: 0,
      mismatches: 0,
      byKey: {},
    });
    expect(await postEffect(ledger.url, { key: "k-1" })).toEqual({ status: 201, body: { applied: true, id: "led_1" } });
  });

  it("answers 404 for unknown routes and methods", async () => {
    expect((await fetch(`${ledger.url}/nope`)).status).toBe(404);
    expect((await fetch(`${ledger.url}/effects`)).status).toBe(404);
    expect((await fetch(`${ledger.url}/stats`, { method: "DELETE" })).status).toBe(404);
  });

  it("answers 507 once recordsMax calls are recorded", async () => {
    const small = await startLedger({ recordsMax: 2 });
    try {
      expect((await postEffect(small.url, { key: "a" })).status).toBe(201);
      expect((await postEffect(small.url, { key: "a" })).status).toBe(200);
      expect((await postEffect(small.url, { key: "b" })).status).toBe(507);
      expect(small.snapshot().calls).toBe(2);
    } finally {
      await small.close();
    }
  });

  it("returns a snapshot that later calls do not change", async () => {
    await postEffect(ledger.url, { key: "k-1" });
    const before = ledger.snapshot();
    await postEffect(ledger.url, { key: "k-1" });
    expect(before).toMatchObject({ calls: 1, byKey: { "k-1": 1 } });
    expect(before.records).toHaveLength(1);
  });

  it("closes idempotently, dropping callers still waiting on a delay", async () => {
    const pending = postEffect(ledger.url, { key: "k-wait", query: "?delayMs=30000" });
    await expect.poll(() => ledger.snapshot().calls, { timeout: 2_000, interval: 10 }).toBe(1);
    // A 30 s delay that was not dropped would outlast the test's timeout.
    await Promise.all([ledger.close(), ledger.close()]);
    await expect(pending).rejects.toThrow();
  });

  it("rejects bad options", async () => {
    await expect(startLedger({ port: -1 })).rejects.toThrow();
    await expect(startLedger({ recordsMax: 0 })).rejects.toThrow();
  });
});

describe("ledger service (standalone process)", () => {
  const script = fileURLToPath(new URL("../helpers/ledger-service.ts", import.meta.url));
  let child: ChildProcessByStdio<null, Readable, Readable> | undefined;

  afterEach(async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
    }
    child = undefined;
  });

  async function readyLine(process: ChildProcessByStdio<null, Readable, Readable>): Promise<unknown> {
    const lines = createInterface({ input: process.stdout });
    const timeout = AbortSignal.timeout(20_000);
    const [line] = (await once(lines, "line", { signal: timeout })) as [string];
    lines.close();
    return JSON.parse(line);
  }

  it("prints one ready line with its URL, serves calls, and exits cleanly on SIGTERM", async () => {
    // `node --import tsx` is what `npx tsx` runs, as a single process whose pid we own.
    const started = spawn(process.execPath, ["--import", "tsx", script, "--port", "0"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = started;
    const ready = (await readyLine(started)) as { ready: boolean; url: string };
    expect(ready).toEqual({ ready: true, url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) });

    expect((await postEffect(ready.url, { key: "k-1", epoch: "1" })).status).toBe(201);
    expect((await postEffect(ready.url, { key: "k-1", epoch: "2" })).status).toBe(200);
    expect(await getJson(`${ready.url}/stats`)).toEqual({
      calls: 2,
      applied: 1,
      duplicates: 1,
      mismatches: 0,
      byKey: { "k-1": 2 },
    });

    const exited = once(started, "exit");
    started.kill("SIGTERM");
    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
  });

  it("fails with a JSON line and exit code 1 when the port is taken", async () => {
    const holder = await startLedger();
    try {
      const port = new URL(holder.url).port;
      const started = spawn(process.execPath, ["--import", "tsx", script, "--port", port], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      child = started;
      const exited = once(started, "exit");
      const stderr: Buffer[] = [];
      started.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
      const [code] = (await exited) as [number | null];
      expect(code).toBe(1);
      expect(JSON.parse(Buffer.concat(stderr).toString("utf8").trim())).toEqual({
        ready: false,
        error: expect.stringContaining("EADDRINUSE"),
      });
    } finally {
      await holder.close();
    }
  });
});
