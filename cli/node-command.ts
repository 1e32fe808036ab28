import type { Command } from "commander";
import { createJsonLogger, type Logger } from "../actors/logger.js";
import { createNode, type TesseraNode } from "../actors/node.js";
import type { NodeOptions } from "../actors/node-options.js";
import { createNatsTransport } from "../actors/transport/nats/index.js";
import { AgentError, serializeError } from "../core/errors.js";
import type { Store } from "../core/ports/store.js";
import type { Transport } from "../core/ports/transport.js";
import { createPgStore } from "../persistence/pg/index.js";
import { createPgliteStore } from "../persistence/pglite/index.js";
import { loadAgentsModule, type AgentsModule } from "./agents-module.js";
import { exitCodes, exitWithError, writeJsonLine } from "./cli-output.js";
import { createHttpApi, type NodeProcessState } from "./http-api.js";
import { resolveNodeConfig, type NodeConfigInput, type ResolvedNodeConfig } from "./node-config.js";
import { createOffsetClock } from "./offset-clock.js";

/** How long closing the transport, the HTTP API and the store may take after the drain, in milliseconds. */
export const closeTimeoutMs = 15_000;

/** The ready line on stdout: the only thing `tessera node` prints there before it stops. */
export interface ReadyLine {
  event: "ready";
  nodeId: string;
  http: string;
  pid: number;
  recovered: number;
  store: "pg" | "pglite";
}

/** A flag value that looks like an integer becomes a number; anything else stays a string for the schema to refuse. */
function integer(value: string): number | string {
  return /^-?\d+$/.test(value.trim()) ? Number(value) : value;
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/**
 * Adds `tessera node` to the program: a foreground node configured by flags or `--config file.json`.
 *
 * @param program - the `tessera` command
 * @returns nothing
 * @example
 * ```ts
 * registerNodeCommand(new Command("tessera"));
 * ```
 */
export function registerNodeCommand(program: Command): void {
  program
    .command("node")
    .description(
      "run a node in the foreground: prints one JSON ready line on stdout, logs JSON lines on stderr, serves HTTP; " +
        "SIGTERM/SIGINT drain it (a second signal exits at once with 130). Exit codes: 0 stopped, 1 configuration error, 2 fatal error",
    )
    .option("--config <file>", "a JSON file with the same settings in camelCase (leaseTtlMs, …); flags win over it")
    .option("--database-url <url>", "PostgreSQL or CockroachDB connection string (default: DATABASE_URL)")
    .option("--data-dir <dir>", "an embedded PGlite data directory, instead of --database-url")
    .option("--schema <name>", "schema that holds the tables (default: tessera)")
    .option("--pool-size <n>", "connections in the pg pool (default: 10)", integer)
    .option("--nats-url <url>", "NATS server URL; without it the node uses no transport")
    .option("--cluster <name>", "cluster name, the NATS subject prefix (default: tessera)")
    .option("--node-id <id>", "this node's id (default: random)")
    .option("--http <host:port>", "HTTP API listen address; port 0 is ephemeral (default: 127.0.0.1:0)")
    .option("--log-level <level>", "debug | info | warn | error | silent, JSON lines on stderr (default: info)")
    .option("--lease-ttl-ms <ms>", "node lease TTL in milliseconds", integer)
    .option("--renew-interval-ms <ms>", "lease renewal interval in milliseconds (at most half the TTL)", integer)
    .option("--sweep-interval-ms <ms>", "interval of the orphan and pending-work sweep in milliseconds", integer)
    .option("--idle-ms <ms>", "an actor idle this long leaves memory, in milliseconds", integer)
    .option("--resident-max <n>", "most actors resident in memory", integer)
    .option("--drain-grace-ms <ms>", "how long a drain waits for busy actors, in milliseconds (default: 10000)", integer)
    .option("--clock-offset-ms <ms>", "test only: the node's clock is Date.now() + this, in milliseconds", integer)
    .option("--agents <module>", "the ES module exporting `agents` (and optionally `model`, `identity`)")
    .option("--migrate", "run the store's migrations first")
    .action(async (flags: NodeConfigInput & { config?: string }) => {
      const config = await resolveNodeConfig(flags, process.env);
      const agentsModule = await loadAgentsModule(config.agentsPath);
      await runNodeProcess(config, agentsModule);
    });
}

async function openStore(config: ResolvedNodeConfig): Promise<Store> {
  if (config.store.kind === "pglite") return createPgliteStore({ dataDir: config.store.dataDir, schema: config.schema });
  return createPgStore(
    withoutUndefined({ connectionString: config.store.databaseUrl, schema: config.schema, poolSize: config.store.poolSize }),
  );
}

function nodeOptionsOf(
  config: ResolvedNodeConfig,
  parts: { store: Store; agentsModule: AgentsModule; transport: Transport | undefined; logger: Logger; http: string },
): NodeOptions {
  const cluster = withoutUndefined({
    leaseTtlMs: config.leaseTtlMs,
    renewIntervalMs: config.renewIntervalMs,
    sweepIntervalMs: config.sweepIntervalMs,
  });
  const passivation = withoutUndefined({ idleMs: config.idleMs, residentActorsMax: config.residentMax });
  return withoutUndefined({
    store: parts.store,
    agents: parts.agentsModule.agents,
    model: parts.agentsModule.model,
    identity: parts.agentsModule.identity,
    transport: parts.transport,
    nodeId: config.nodeId,
    logger: parts.logger,
    clock: config.clockOffsetMs === 0 ? undefined : createOffsetClock(config.clockOffsetMs),
    cluster: Object.keys(cluster).length === 0 ? undefined : cluster,
    passivation: Object.keys(passivation).length === 0 ? undefined : passivation,
    info: { http: parts.http, pid: process.pid },
  });
}

/**
 * Runs a node until SIGTERM or SIGINT: opens the store (migrating it with `--migrate`), connects
 * NATS, serves HTTP, starts the node (recovering what it owns), prints the ready line; on the first
 * signal drains the node, closes everything, prints `{"event":"stopped","nodeId":…}` and exits 0.
 * A second signal exits at once with 130. A failure while starting closes what was opened and
 * exits through the caller (1 for configuration errors, 2 otherwise).
 *
 * @param config - the resolved configuration
 * @param agentsModule - the user's agents, model and identity
 * @returns a promise that settles only when starting fails (the process exits otherwise)
 * @throws AgentError whatever made starting fail
 * @example
 * ```ts
 * await runNodeProcess(await resolveNodeConfig(flags, process.env), await loadAgentsModule(path));
 * ```
 */
export async function runNodeProcess(config: ResolvedNodeConfig, agentsModule: AgentsModule): Promise<void> {
  const logger = createJsonLogger(config.logLevel);
  let state: NodeProcessState = "starting";
  let node: TesseraNode | undefined;
  let stopping: Promise<void> | undefined;
  // What was opened, closed in reverse order; closing happens once whoever asks first.
  const opened: Array<{ name: string; close: () => Promise<unknown> }> = [];
  let closing: Promise<void> | undefined;
  const closeOpened = (): Promise<void> =>
    (closing ??= (async () => {
      for (const resource of opened.reverse()) {
        await resource
          .close()
          .catch((error: unknown) => logger.warn({ err: serializeError(error) }, `closing the ${resource.name} failed`));
      }
    })());

  const stop = async (startup: Promise<void>): Promise<void> => {
    // A failed start exits through the caller, with its own error and exit code.
    const startFailed = await startup.then(
      () => false,
      () => true,
    );
    if (startFailed) return;
    const limitMs = config.drainGraceMs + closeTimeoutMs;
    setTimeout(() => void exitWithError(new AgentError("ERR_TIMEOUT", `stopping took longer than ${limitMs} ms`)), limitMs).unref();
    state = "draining";
    if (node !== undefined) await node.drain({ graceMs: config.drainGraceMs });
    await closeOpened();
    state = "stopped";
    await writeJsonLine(process.stdout, { event: "stopped", nodeId: node?.nodeId ?? config.nodeId });
    process.exit(exitCodes.stopped);
  };

  let startup: Promise<void> = Promise.resolve();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping !== undefined) {
      logger.warn({ signal }, "second signal: exiting without finishing the drain");
      process.exit(exitCodes.interrupted);
    }
    logger.info({ signal, graceMs: config.drainGraceMs }, "draining");
    stopping = stop(startup).catch((error: unknown) => exitWithError(error, exitCodes.fatal));
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // A node in an unknown state must not linger: its actors are recovered by whoever runs next.
  process.on("uncaughtException", (error) => void exitWithError(error, exitCodes.fatal));
  process.on("unhandledRejection", (error) => void exitWithError(error, exitCodes.fatal));

  startup = (async () => {
    const store = await openStore(config);
    opened.push({ name: "store", close: () => store.close() });
    if (config.migrate) await store.migrate();
    let transport: Transport | undefined;
    if (config.natsUrl !== undefined) {
      const nats = await createNatsTransport({
        servers: config.natsUrl,
        subjectPrefix: config.cluster,
        name: `tessera-node-${process.pid}`,
        onError: (error, context) => logger.error({ ...context, err: serializeError(error) }, `transport ${context.source} error`),
      });
      transport = nats;
      opened.push({ name: "transport", close: () => nats.close() });
      void nats.closed().then((error) => {
        if (error !== undefined && state === "ready") logger.error({ err: serializeError(error) }, "the NATS transport closed");
      });
    }
    const api = await createHttpApi({ node: () => node, state: () => state, logger }, config.http);
    opened.push({ name: "HTTP API", close: () => api.close() });
    node = createNode(nodeOptionsOf(config, { store, agentsModule, transport, logger, http: api.url }));
    const started = node;
    opened.push({ name: "node", close: () => started.close() });
    const { recovered } = await started.start();
    if (stopping !== undefined) return;
    state = "ready";
    const ready: ReadyLine = {
      event: "ready",
      nodeId: started.nodeId,
      http: api.url,
      pid: process.pid,
      recovered,
      store: config.store.kind,
    };
    logger.info({ ...ready }, "node ready");
    await writeJsonLine(process.stdout, ready);
  })();

  try {
    await startup;
  } catch (error) {
    state = "stopped";
    await closeOpened();
    throw error;
  }
}
