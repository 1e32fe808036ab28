/**
 * One node of `npm run bench:cluster`: a Tessera node in a process of its own, on the PostgreSQL
 * schema of the bench (migrated by the parent) and a NATS transport, hosting the `durable-steps`
 * agent (bench/stepper-agent.ts). It takes {@link NodeCommand}s from its parent over the IPC
 * channel and answers each with a {@link NodeReply}. Spawn it as `node --import tsx
 * bench/cluster-node.ts --schema … --node … --nats … --subject-prefix …` with an IPC channel and
 * DATABASE_URL in the environment (not `npx tsx`, whose launcher would outlive a SIGKILL of its pid).
 *
 * When the parent goes away (the IPC channel closes) the node kills itself: a bench that dies
 * leaves no node behind.
 */
import { parseArgs } from "node:util";
import { createJsonLogger, createNode } from "../index.js";
import { createNatsTransport } from "../actors/transport/nats/index.js";
import { createPgStore } from "../persistence/pg/index.js";
import { stepperAgent, type StepClock } from "./stepper-agent.js";

/** Commands from the parent; each reply repeats the command's id. */
export type NodeCommand =
  | { id: number; op: "stats" }
  | { id: number; op: "start"; tenantId: string; runIds: string[]; steps: number }
  | { id: number; op: "close" };

/** What a node says about itself: its CPU time so far and its counters. */
export interface NodeStats {
  nodeId: string;
  pid: number;
  /** `process.cpuUsage()` since the process started, in microseconds. */
  cpu: { user: number; system: number };
  /** The live nodes this node's placement hashes over. */
  liveNodes: readonly string[];
  residentActors: number;
  commitStats: { batches: number; commits: number; largestBatch: number };
  storeStats: { transactions: number; statements: number; roundTrips: number; retries: number };
  wakesSent: number;
  wakesReceived: number;
  /** Actors the sweeper claimed, re-activated or refreshed, and activations deferred for room (cumulative). */
  sweeper: { claimed: number; reactivated: number; refreshed: number; deferredActivations: number };
  /**
   * Milliseconds between consecutive tool calls of one run on this node since the last `stats`
   * (the step cycle: commit of a result, transition, next call), then forgotten.
   */
  stepCycleMs: number[];
}

/** Results per command. */
export interface NodeResults {
  stats: NodeStats;
  start: { started: number; ms: number };
  close: { ms: number };
}

/** A reply to a command, or the ready notice (id 0) once the node has started. */
export type NodeReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { code: string; message: string } }
  | { id: 0; ok: true; ready: { nodeId: string; pid: number; startMs: number } };

function parseNodeArgs(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      schema: { type: "string" },
      node: { type: "string" },
      nats: { type: "string" },
      "subject-prefix": { type: "string" },
      "pool-size": { type: "string", default: "8" },
    },
    strict: true,
  });
  const { schema, node, nats } = values;
  const subjectPrefix = values["subject-prefix"];
  if (schema === undefined || node === undefined || nats === undefined || subjectPrefix === undefined) {
    throw new Error("--schema, --node, --nats and --subject-prefix are required");
  }
  const poolSize = Number(values["pool-size"]);
  if (!Number.isSafeInteger(poolSize) || poolSize < 1)
    throw new Error(`--pool-size must be a positive integer, not ${values["pool-size"]}`);
  return { schema, nodeId: node, natsUrl: nats, subjectPrefix, poolSize };
}

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error("cluster-node needs an IPC channel (spawn it with stdio [..., 'ipc'])");
  // The parent is gone: die at once rather than run on unobserved.
  process.on("disconnect", () => process.kill(process.pid, "SIGKILL"));
  const args = parseNodeArgs(process.argv.slice(2));
  const databaseUrl = process.env.DATABASE_URL;
  if (databaseUrl === undefined || databaseUrl === "") throw new Error("DATABASE_URL is required");
  const logger = createJsonLogger("warn");
  const store = createPgStore({ connectionString: databaseUrl, schema: args.schema, poolSize: args.poolSize });
  const transport = await createNatsTransport({
    servers: args.natsUrl,
    subjectPrefix: args.subjectPrefix,
    name: args.nodeId,
    connectTimeoutMs: 5_000,
    closeGraceMs: 1_000,
  });
  const clock: StepClock = { stamps: new Map() };
  const node = createNode({
    store,
    transport,
    agents: [stepperAgent(clock)],
    nodeId: args.nodeId,
    logger,
    cluster: { leaseTtlMs: 10_000, renewIntervalMs: 3_000, sweepIntervalMs: 2_000 },
    passivation: { idleMs: 120_000, residentActorsMax: 50_000 },
    info: { pid: process.pid },
  });
  const starting = performance.now();
  await node.start();
  const startMs = Math.round(performance.now() - starting);

  const stats = (): NodeStats => {
    const stepCycleMs: number[] = [];
    for (const stamps of clock.stamps.values()) for (let i = 1; i < stamps.length; i++) stepCycleMs.push(stamps[i]! - stamps[i - 1]!);
    clock.stamps.clear();
    const cluster = node.clusterStats;
    return {
      nodeId: node.nodeId,
      pid: process.pid,
      cpu: process.cpuUsage(),
      liveNodes: cluster.liveNodes,
      residentActors: node.residentActors,
      commitStats: node.commitStats,
      storeStats: store.stats,
      wakesSent: cluster.wakesSent,
      wakesReceived: cluster.wakesReceived,
      sweeper: {
        claimed: cluster.claimed,
        reactivated: cluster.reactivated,
        refreshed: cluster.refreshed,
        deferredActivations: cluster.deferredActivations,
      },
      stepCycleMs,
    };
  };

  let closing = false;
  const handle = async (command: NodeCommand): Promise<NodeResults[NodeCommand["op"]]> => {
    const begun = performance.now();
    switch (command.op) {
      case "stats":
        return stats();
      case "start": {
        // Each start resolves once its run is durable; the run itself goes on, here or on the node
        // that rendezvous hashing placed it on.
        await Promise.all(
          command.runIds.map((runId) =>
            node.startRun({
              tenantId: command.tenantId,
              agentType: "stepper",
              input: { steps: command.steps },
              idempotencyKey: runId,
              runId,
            }),
          ),
        );
        return { started: command.runIds.length, ms: performance.now() - begun };
      }
      case "close":
        closing = true;
        await node.close();
        await transport.close();
        await store.close();
        return { ms: performance.now() - begun };
    }
  };

  process.on("message", (raw: unknown) => {
    const command = raw as NodeCommand;
    const reply = (message: NodeReply): void => {
      if (process.connected) process.send!(message);
    };
    if (closing) {
      reply({ id: command.id, ok: false, error: { code: "ERR_NODE_CLOSED", message: `node ${args.nodeId} is closing` } });
      return;
    }
    handle(command).then(
      (result) => {
        reply({ id: command.id, ok: true, result });
        // Exit once the reply has left.
        if (command.op === "close") setTimeout(() => process.exit(0), 50);
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
  process.send({ id: 0, ok: true, ready: { nodeId: args.nodeId, pid: process.pid, startMs } } satisfies NodeReply);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
