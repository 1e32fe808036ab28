/**
 * A cluster-test node: one Tessera node in a process of its own, on a PostgreSQL schema shared with
 * the other nodes of the test, with an optional NATS transport, running `cluster-worker` runs
 * against the ledger service. It prints JSON lines ({@link WorkerLine}) on stdout, logs on stderr,
 * and takes {@link WorkerCommand}s from its parent over the IPC channel, answering each with a
 * {@link WorkerReply}. Run it as `node --import tsx` (not `npx tsx`, whose launcher would survive a
 * SIGKILL of its pid), with an IPC channel:
 *
 * ```ts
 * spawn(process.execPath, ["--import", "tsx", "test/cluster/node-worker.ts", "--schema", "t_…", "--node", "n1",
 *   "--nats", "nats://127.0.0.1:4222", "--subject-prefix", "c_ab12", "--ledger", ledger.url, …],
 *   { stdio: ["ignore", "pipe", "pipe", "ipc"], env: { ...process.env, DATABASE_URL } });
 * ```
 *
 * When the parent goes away (the IPC channel closes) the worker kills itself at once: a test that
 * dies leaves no node behind.
 */
import { parseArgs } from "node:util";
import { createNode, type TesseraNode } from "../../actors/node.js";
import { createNatsTransport, type NatsTransport } from "../../actors/transport/nats/index.js";
import { createJsonLogger } from "../../actors/logger.js";
import { createPgStore, type SqlStore } from "../../persistence/pg/index.js";
import { clusterAgentType, makeClusterAgents } from "./cluster-agents.js";
import type { CommandResults, ItemError, NodeWorkerArgs, WorkerCommand, WorkerLine, WorkerReply, WorkerStats } from "./protocol.js";

/** Items of a batch command in flight at once: enough to fill group commits, few enough for the pool. */
const batchConcurrency = 16;

function print(line: WorkerLine): void {
  // Writes to a pipe are synchronous on Linux: a printed line is in the pipe before any SIGKILL.
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function parseWorkerArgs(argv: string[]): NodeWorkerArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      schema: { type: "string" },
      node: { type: "string" },
      nats: { type: "string" },
      "subject-prefix": { type: "string", default: "tessera" },
      ledger: { type: "string" },
      "ledger-delay-ms": { type: "string", default: "0" },
      tenant: { type: "string", default: "acme" },
      "lease-ttl-ms": { type: "string", default: "3000" },
      "renew-ms": { type: "string", default: "1000" },
      "sweep-ms": { type: "string", default: "500" },
      "idle-ms": { type: "string", default: "120000" },
      "resident-max": { type: "string", default: "50000" },
      "pool-size": { type: "string", default: "6" },
    },
    strict: true,
  });
  if (values.schema === undefined || values.node === undefined || values.ledger === undefined) {
    throw new Error("--schema, --node and --ledger are required");
  }
  const int = (name: string, text: string): number => {
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} must be a non-negative integer, not ${text}`);
    return value;
  };
  return {
    schema: values.schema,
    nodeId: values.node,
    natsUrl: values.nats,
    subjectPrefix: values["subject-prefix"],
    ledgerUrl: values.ledger,
    ledgerDelayMs: int("ledger-delay-ms", values["ledger-delay-ms"]),
    tenantId: values.tenant,
    leaseTtlMs: int("lease-ttl-ms", values["lease-ttl-ms"]),
    renewIntervalMs: int("renew-ms", values["renew-ms"]),
    sweepIntervalMs: int("sweep-ms", values["sweep-ms"]),
    idleMs: int("idle-ms", values["idle-ms"]),
    residentActorsMax: int("resident-max", values["resident-max"]),
    poolSize: int("pool-size", values["pool-size"]),
  };
}

/** Attempts of one batch item while the error is retryable (`err.retryable`), the first included. */
const itemAttemptsMax = 30;

/** What a batch did: its failures, and how many attempts were repeated after a retryable error. */
interface BatchOutcome {
  errors: ItemError[];
  retries: number;
  /** Retryable errors seen, by code. */
  retriedCodes: Record<string, number>;
}

/**
 * Runs `work` over `items`, `batchConcurrency` at a time, collecting failures instead of stopping at
 * the first. An item whose error is retryable is tried again, as a client of the node would (the
 * work is idempotent: a run id, a message id), after a jittered pause.
 */
async function eachBounded<T>(items: readonly T[], idOf: (item: T) => string, work: (item: T) => Promise<void>): Promise<BatchOutcome> {
  const outcome: BatchOutcome = { errors: [], retries: 0, retriedCodes: {} };
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      for (let attempt = 1; ; attempt++) {
        try {
          await work(item);
          break;
        } catch (error) {
          const code = typeof (error as { code?: unknown }).code === "string" ? (error as { code: string }).code : "ERR_UNKNOWN";
          if ((error as { retryable?: unknown }).retryable === true && attempt < itemAttemptsMax) {
            outcome.retries++;
            outcome.retriedCodes[code] = (outcome.retriedCodes[code] ?? 0) + 1;
            await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * Math.min(500, 20 * 2 ** attempt)));
            continue;
          }
          outcome.errors.push({ id: idOf(item), code, message: error instanceof Error ? error.message : String(error) });
          break;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(batchConcurrency, items.length) }, lane));
  return outcome;
}

function statsOf(node: TesseraNode, store: SqlStore, transport: NatsTransport | undefined): WorkerStats {
  const status = transport?.status();
  return {
    nodeId: node.nodeId,
    storeStats: store.stats,
    clusterStats: node.clusterStats,
    residentActors: node.residentActors,
    commitStats: node.commitStats,
    transport:
      status === undefined
        ? null
        : {
            state: status.state,
            disconnects: status.disconnects,
            reconnects: status.reconnects,
            lastError: status.lastError?.message ?? null,
          },
  };
}

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error("node-worker needs an IPC channel (spawn it with stdio [..., 'ipc'])");
  // The parent is gone: die at once, as a crashed node would, rather than run on unobserved.
  process.on("disconnect", () => process.kill(process.pid, "SIGKILL"));
  const args = parseWorkerArgs(process.argv.slice(2));
  const databaseUrl = process.env.DATABASE_URL;
  if (databaseUrl === undefined || databaseUrl === "") throw new Error("DATABASE_URL is required");
  const logger = createJsonLogger("warn");
  // A transaction left open by a paused node ends well before its lease does (see the store option).
  const store = createPgStore({
    connectionString: databaseUrl,
    schema: args.schema,
    poolSize: args.poolSize ?? 6,
    idleInTransactionTimeoutMs: Math.max(100, Math.floor(args.leaseTtlMs / 2)),
  });
  const transport =
    args.natsUrl === undefined
      ? undefined
      : await createNatsTransport({
          servers: args.natsUrl,
          subjectPrefix: args.subjectPrefix,
          name: args.nodeId,
          connectTimeoutMs: 5_000,
          // A test restarts NATS within seconds: come back quickly, and never give up while the test runs.
          reconnect: { waitMs: 250, jitterMs: 100, attemptsMax: -1 },
          pingIntervalMs: 2_000,
          closeGraceMs: 500,
          onError: (error, context) =>
            logger.warn({ err: error instanceof Error ? error.message : String(error), ...context }, "NATS transport error"),
        });
  const agents = makeClusterAgents({
    ledgerUrl: args.ledgerUrl,
    ledgerDelayMs: args.ledgerDelayMs,
    hooks: {
      beforeCall(context, charge) {
        print({
          event: "tool",
          nodeId: args.nodeId,
          actorId: context.actorId,
          key: context.idempotencyKey,
          epoch: context.epoch,
          attempt: context.attempt,
          n: charge.n,
          at: Date.now(),
        });
      },
    },
  });
  const node = createNode({
    store,
    agents,
    nodeId: args.nodeId,
    transport,
    logger,
    statusPollMs: 50,
    retry: { baseDelayMs: 20, maxDelayMs: 250 },
    cluster: { leaseTtlMs: args.leaseTtlMs, renewIntervalMs: args.renewIntervalMs, sweepIntervalMs: args.sweepIntervalMs },
    passivation: { idleMs: args.idleMs, residentActorsMax: args.residentActorsMax },
    info: { pid: process.pid },
  });

  const starting = performance.now();
  const { recovered } = await node.start();
  print({
    event: "ready",
    nodeId: args.nodeId,
    pid: process.pid,
    recovered,
    startMs: Math.round(performance.now() - starting),
    at: Date.now(),
  });

  // The node's own view of its lease, as lines: a test sees when a paused node noticed its loss.
  let holdsLease = node.clusterStats.holdsLease;
  const leaseWatch = setInterval(() => {
    const now = node.clusterStats.holdsLease;
    if (now === holdsLease) return;
    holdsLease = now;
    print({ event: "lease", nodeId: args.nodeId, holdsLease: now, at: Date.now() });
  }, 20);
  leaseWatch.unref();

  let shuttingDown = false;
  const shutDown = async (how: "drain" | "close", graceMs: number): Promise<CommandResults["close"]> => {
    shuttingDown = true;
    const begun = performance.now();
    if (how === "drain") await node.drain({ graceMs });
    else await node.close();
    const stats = statsOf(node, store, transport);
    clearInterval(leaseWatch);
    await transport?.close();
    await store.close();
    return { ms: Math.round(performance.now() - begun), stats };
  };

  const handle = async (command: WorkerCommand): Promise<unknown> => {
    const begun = performance.now();
    switch (command.op) {
      case "startRuns": {
        let created = 0;
        const { errors, retries, retriedCodes } = await eachBounded(
          command.runs,
          (run) => run.runId,
          async (run) => {
            const result = await node.startRun({
              tenantId: args.tenantId,
              agentType: clusterAgentType,
              input: { runId: run.runId, pingsNeeded: run.pingsNeeded },
              idempotencyKey: run.runId,
              runId: run.runId,
            });
            if (result.created) created++;
          },
        );
        const result: CommandResults["startRuns"] = {
          created,
          existing: command.runs.length - created - errors.length,
          errors,
          retries,
          retriedCodes,
          ms: Math.round(performance.now() - begun),
        };
        return result;
      }
      case "sendEvents": {
        let accepted = 0;
        const { errors, retries, retriedCodes } = await eachBounded(
          command.events,
          (event) => event.messageId,
          async (event) => {
            const result = await node.sendEvent({
              tenantId: args.tenantId,
              actorId: event.actorId,
              event: { type: event.type },
              messageId: event.messageId,
            });
            if (result.accepted) accepted++;
          },
        );
        const result: CommandResults["sendEvents"] = {
          accepted,
          duplicate: command.events.length - accepted - errors.length,
          errors,
          retries,
          retriedCodes,
          ms: Math.round(performance.now() - begun),
        };
        return result;
      }
      case "stats":
        return statsOf(node, store, transport);
      case "drain":
        return shutDown("drain", command.graceMs);
      case "close":
        return shutDown("close", 0);
    }
  };

  process.on("message", (raw: unknown) => {
    const command = raw as WorkerCommand;
    const reply = (message: WorkerReply): void => {
      if (process.connected) process.send!(message);
    };
    if (shuttingDown && command.op !== "stats") {
      reply({ id: command.id, ok: false, error: { code: "ERR_NODE_CLOSED", message: `node ${args.nodeId} is shutting down` } });
      return;
    }
    handle(command).then(
      (result) => {
        reply({ id: command.id, ok: true, result });
        if (command.op === "drain" || command.op === "close") {
          // Exit once the reply has left: the channel is flushed before the process ends.
          setTimeout(() => process.exit(0), 50);
        }
      },
      (error: unknown) => {
        const code = typeof (error as { code?: unknown }).code === "string" ? (error as { code: string }).code : "ERR_UNKNOWN";
        reply({
          id: command.id,
          ok: false,
          error: { code, message: error instanceof Error ? (error.stack ?? error.message) : String(error) },
        });
      },
    );
  });
}

process.on("unhandledRejection", (error: unknown) => {
  print({
    event: "error",
    message: `unhandled rejection: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    at: Date.now(),
  });
});

main().catch((error: unknown) => {
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  print({ event: "error", message, at: Date.now() });
  process.stderr.write(`${message}\n`);
  process.exit(1);
});
