/**
 * A crash-test worker: one Tessera node in a process of its own, over a PostgreSQL schema or a
 * PGlite directory, running `--runs` crash-desk runs against the ledger. With `--crash <point>` it
 * SIGKILLs itself at that point (or waits there for its parent to kill it); with `--crash none` it
 * recovers whatever an earlier worker left and runs every run until it is final or waits on an
 * `unknown` effect. It prints JSON lines ({@link WorkerLine}) on stdout; logs go to stderr.
 *
 * ```sh
 * DATABASE_URL=postgresql://root@127.0.0.1:5432/test node --import tsx test/crash/worker.ts \
 *   --store pg --schema crash_ab12 --ledger http://127.0.0.1:41234 --node w1 --crash none \
 *   --seed 1 --runs 8 --tenant t1
 * ```
 */
import { parseArgs } from "node:util";
import { createNode, type TesseraNode } from "../../actors/node.js";
import type { Store } from "../../core/ports/store.js";
import { createPgStore } from "../../persistence/pg/index.js";
import { createPgliteStore } from "../../persistence/pglite/index.js";
import { deskAgentType, idempotentTools, makeCrashAgents, type CrashToolName } from "./agents.js";
import { parseGroupKill, wrapStore, type CrashContext } from "./crash-store.js";
import { crashPoints, runInputOf, runKeyOf, type CrashPoint, type UnknownEffect, type WorkerArgs, type WorkerLine } from "./protocol.js";

const finalStatuses = new Set(["completed", "failed", "stopped", "halted"]);

function print(line: WorkerLine): void {
  // Writes to a pipe are synchronous on Linux: a printed line is in the pipe before any SIGKILL.
  // `atMs` (since the process started) lets a reader see where a kill fell in the run.
  process.stdout.write(`${JSON.stringify({ ...line, atMs: Math.round(performance.now()) })}\n`);
}

function crashHere(point: CrashPoint, detail: Record<string, unknown>): never {
  print({ event: "crash", point, detail });
  process.kill(process.pid, "SIGKILL");
  // SIGKILL cannot be caught; this line is never reached, but the type system needs an end.
  throw new Error("unreachable: SIGKILL did not stop the process");
}

function parseWorkerArgs(argv: string[]): WorkerArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      store: { type: "string", default: "pg" },
      schema: { type: "string", default: "tessera" },
      "data-dir": { type: "string" },
      ledger: { type: "string" },
      node: { type: "string" },
      crash: { type: "string", default: "none" },
      seed: { type: "string", default: "0" },
      runs: { type: "string", default: "8" },
      tenant: { type: "string", default: "acme" },
      delay: { type: "string", multiple: true, default: [] },
      "settle-timeout": { type: "string", default: "60000" },
      "slow-read": { type: "string" },
      "group-kill": { type: "string", default: "ms:0" },
    },
    strict: true,
  });
  const crash = values.crash as CrashPoint;
  if (crash !== "none" && !(crashPoints as readonly string[]).includes(crash)) throw new Error(`unknown crash point ${crash}`);
  if (values.store !== "pg" && values.store !== "pglite") throw new Error(`--store must be pg or pglite`);
  if (values.ledger === undefined || values.node === undefined) throw new Error("--ledger and --node are required");
  const ledgerDelayMs: Partial<Record<CrashToolName, number>> = {};
  for (const item of values.delay) {
    const [tool, ms] = item.split("=");
    const tools: CrashToolName[] = tool === "all" ? ["lookup", "reserve", "charge"] : [tool as CrashToolName];
    for (const name of tools) ledgerDelayMs[name] = Number(ms);
  }
  const slowRead = values["slow-read"]?.split("=");
  return {
    slowRead: slowRead === undefined ? undefined : { prefix: slowRead[0]!, delayMs: Number(slowRead[1]) },
    groupKill: values["group-kill"],
    store: values.store,
    databaseUrl: process.env.DATABASE_URL,
    schema: values.schema,
    dataDir: values["data-dir"],
    ledgerUrl: values.ledger,
    nodeId: values.node,
    crash,
    seed: Number(values.seed),
    runs: Number(values.runs),
    tenantId: values.tenant,
    ledgerDelayMs,
    settleTimeoutMs: Number(values["settle-timeout"]),
  };
}

async function openStore(args: WorkerArgs): Promise<Store> {
  if (args.store === "pglite") {
    if (args.dataDir === undefined) throw new Error("--data-dir is required with --store pglite");
    return createPgliteStore({ dataDir: args.dataDir, schema: args.schema });
  }
  if (args.databaseUrl === undefined) throw new Error("DATABASE_URL is required with --store pg");
  return createPgStore({ connectionString: args.databaseUrl, schema: args.schema, poolSize: 8 });
}

/** The tool hooks: a progress line per call, and the crash points that live inside tools. */
function toolHooks(args: WorkerArgs): Parameters<typeof makeCrashAgents>[0]["hooks"] {
  let answers = 0;
  const target = args.crash === "idempotent-applied" ? idempotentTools[args.seed % idempotentTools.length] : "charge";
  const occurrence = 1 + (args.seed % 4);
  return {
    beforeCall(tool, context) {
      print({
        event: "tool",
        phase: "start",
        tool,
        key: context.idempotencyKey,
        actorId: context.actorId,
        effectId: context.effectId,
        epoch: context.epoch,
        attempt: context.attempt,
      });
    },
    afterCall(tool, context, answer) {
      const line = {
        event: "tool",
        phase: "answer",
        tool,
        key: context.idempotencyKey,
        actorId: context.actorId,
        effectId: context.effectId,
        epoch: context.epoch,
        attempt: context.attempt,
        applied: answer.applied,
      } as const;
      print(line);
      const armed = args.crash === "idempotent-applied" || args.crash === "non-idempotent-applied";
      if (armed && tool === target && ++answers === occurrence)
        crashHere(args.crash, {
          tool,
          key: context.idempotencyKey,
          actorId: context.actorId,
          effectId: context.effectId,
          applied: answer.applied,
        });
    },
  };
}

/** The unknown effects of a run's tree (the root and its children). */
async function unknownEffectsOf(node: TesseraNode, tenantId: string, runId: string): Promise<UnknownEffect[]> {
  const children = await node.listChildren(tenantId, runId);
  const actors = [runId, ...children.map((child) => child.actorId)];
  const lists = await Promise.all(actors.map((actorId) => node.listEffects(tenantId, actorId)));
  return lists
    .flat()
    .filter((e) => e.state === "unknown")
    .map((e) => ({ runId, actorId: e.actorId, effectId: e.effectId, tool: e.name, key: e.idempotencyKey }));
}

/** Waits until every run is final or waits on an unknown effect, which only a reconciliation can settle. */
async function settle(node: TesseraNode, args: WorkerArgs, runs: Array<{ index: number; runId: string }>): Promise<void> {
  const started = Date.now();
  const deadline = started + (args.settleTimeoutMs ?? 60_000);
  for (;;) {
    const views = await Promise.all(runs.map((run) => node.getActor(args.tenantId, run.runId)));
    const unknown: UnknownEffect[] = [];
    let open = 0;
    for (const view of views) {
      if (finalStatuses.has(view.status)) continue;
      const blocked = await unknownEffectsOf(node, args.tenantId, view.actorId);
      if (blocked.length === 0) open += 1;
      unknown.push(...blocked);
    }
    if (open === 0) {
      const summary = runs.map((run, i) => ({
        index: run.index,
        runId: run.runId,
        status: views[i]!.status,
        revision: views[i]!.revision,
      }));
      print({ event: "settled", runs: summary, unknown, ms: Date.now() - started });
      return;
    }
    if (Date.now() > deadline) {
      const stuck = views.filter((v) => !finalStatuses.has(v.status)).map((v) => `${v.actorId}@${String(v.stateValue)}#${v.revision}`);
      throw new Error(`runs did not settle within ${args.settleTimeoutMs} ms: ${stuck.join(", ")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main(): Promise<void> {
  const args = parseWorkerArgs(process.argv.slice(2));
  const opening = performance.now();
  const store = await openStore(args);
  await store.migrate();
  print({ event: "open", storeKind: store.kind, openMs: Math.round(performance.now() - opening) });
  const context: CrashContext = {
    point: args.crash,
    seed: args.seed,
    print,
    crash: (detail) => crashHere(args.crash, detail),
    slowRead: args.slowRead,
    groupKill: parseGroupKill(args.groupKill ?? "ms:0"),
  };
  const { agents } = makeCrashAgents({ ledgerUrl: args.ledgerUrl, ledgerDelayMs: args.ledgerDelayMs, hooks: toolHooks(args) });
  const node = createNode({
    store: wrapStore(store, context),
    agents,
    nodeId: args.nodeId,
    retry: { baseDelayMs: 10, maxDelayMs: 100 },
    statusPollMs: 50,
    // A killed worker's lease must expire before another node may take its actors (PostgreSQL is a
    // shared store); a short lease keeps the trials quick. PGlite is embedded: no waiting there, so
    // its lease is longer — its one connection runs on the event loop, and on a loaded machine a
    // 1 s lease was lost mid-recovery (correctly fencing a running charge into `unknown`).
    cluster: { leaseTtlMs: args.store === "pglite" ? 5_000 : 1_000, renewIntervalMs: 250, sweepIntervalMs: 100 },
  });
  const starting = performance.now();
  const { recovered } = await node.start();
  print({ event: "ready", nodeId: args.nodeId, recovered, startMs: Math.round(performance.now() - starting) });
  // Started together, so that their first steps share group-commit batches.
  const runs = await Promise.all(
    Array.from({ length: args.runs }, async (_, index) => {
      const { runId, created } = await node.startRun({
        tenantId: args.tenantId,
        agentType: deskAgentType,
        input: runInputOf(args.seed, index),
        idempotencyKey: runKeyOf(args.seed, index),
      });
      print({ event: "run", index, runId, created });
      return { index, runId };
    }),
  );
  await settle(node, args, runs);
  await node.close();
  await store.close();
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    print({ event: "error", message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
