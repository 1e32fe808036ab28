/**
 * One cell of `npm run bench:cluster`: `runs` runs of the `durable-steps` agent kept `concurrency`
 * at a time (a closed loop) over some node processes, with what every process spent on them.
 */
import type pg from "pg";
import { cpuSpent, sampleCpu, type CpuSample } from "./cluster-cpu.js";
import type { NodeStats } from "./cluster-node.js";
import type { BenchNode } from "./cluster-nodes.js";
import { loadAverage } from "./machine.js";
import { percentile } from "./stats.js";

/** How often the parent looks for finished runs, in milliseconds (one statement over the runs in flight). */
const pollIntervalMs = 10;
/** A cell fails when no run finishes for this long, in milliseconds. */
const stallMsMax = 60_000;

/** What one cell measured. CPU times are microseconds per tool step. */
export interface CellResult {
  nodes: number;
  concurrency: number;
  runs: number;
  wallMs: number;
  /** Tool steps: 10 per run, as bench/main.ts counts them. */
  toolSteps: number;
  /** Journal rows of the cell's runs, counted in the store (the tool steps plus each run's first transition). */
  journalRows: number;
  toolStepsPerSecond: number;
  journalRowsPerSecond: number;
  /** Run duration: the actor row's `updated_at` at completion minus its `created_at` (node wall clocks, ms). */
  runP50Ms: number;
  runP99Ms: number;
  /** Runs in flight on average by Little's law (throughput × mean duration): how full the closed loop kept the nodes. */
  meanRunsInFlight: number;
  /** Interval between consecutive tool calls of a run (all nodes), ms. */
  stepCycleP50Ms: number;
  stepCycleP99Ms: number;
  /** CPU time of each node process over the cell, µs (not per step), by node id. */
  nodeCpuMicros: Record<string, number>;
  /** The node processes, summed. */
  nodeCpuMicrosPerStep: number;
  /** PostgreSQL for the workload: the nodes' backends and the server's background processes (WAL writer, checkpointer, …). */
  pgCpuMicrosPerStep: number;
  /** The nodes' backends alone. */
  pgBackendCpuMicrosPerStep: number;
  natsCpuMicrosPerStep: number;
  /** The bench itself: this process (IPC, completion polls) and its PostgreSQL backends. */
  harnessCpuMicrosPerStep: number;
  /** Busy CPU time spent by anything else on the machine (other PostgreSQL clients included). */
  otherCpuMicrosPerStep: number;
  /** That CPU time as a share of all CPUs' time over the cell (0–1): how much someone else disturbed the cell. */
  otherShare: number;
  /** Busy share of all CPUs over the cell, from /proc/stat (0–1). */
  machineBusy: number;
  /** Share of all CPUs' time the hypervisor gave to someone else (steal, 0–1). */
  machineSteal: number;
  /** Journal rows by the node that wrote them: how placement spread the work. */
  journalRowsByNode: Record<string, number>;
  transactionsPerStep: number;
  statementsPerStep: number;
  /** Transactions the nodes' stores ran again after a serialization failure (40001 and kin), in all. */
  storeRetries: number;
  /** What the nodes' sweepers did during the cell (none of it is needed when no node leaves and NATS loses nothing). */
  sweeper: NodeStats["sweeper"];
  /** Step commits per group commit (batch), over the cell. */
  meanBatch: number;
  /** Wake-ups published to another node (a run placed elsewhere than the node that started it). */
  wakesSent: number;
  polls: number;
  pollMsMean: number;
  loadBefore: number;
  /** Lines the nodes wrote to stderr (warnings, errors) during the cell. */
  nodeLogLines: number;
  /** Runs that hashing placed on the node that started them (`local`) and on another node (`remote`). */
  placement: Record<"local" | "remote", PlacementSummary> & { movedRuns: number };
}

/** Durations of the runs of one kind of placement, ms. */
export interface PlacementSummary {
  runs: number;
  runP50Ms: number;
  runP99Ms: number;
  /** From the actor row's `created_at` to its first journal row (the first transition, on the owner node). */
  firstStepP50Ms: number;
  firstStepP99Ms: number;
}

/** What a cell runs. */
export interface CellOptions {
  nodes: readonly BenchNode[];
  /** The parent's pool: its connections carry `application_name` `${tag}_poll`. */
  pool: pg.Pool;
  /** The `application_name` of the nodes' connections. */
  tag: string;
  schema: string;
  tenantId: string;
  concurrency: number;
  runs: number;
  stepsPerRun: number;
}

/**
 * Runs one cell. Runs are started through the nodes in turn (so each node starts the same number,
 * and rendezvous hashing places each on one of the live nodes); the parent polls the store for
 * finished runs and starts one new run for each.
 *
 * @throws Error when a run ends other than `completed`, a start fails, or no run finishes for a minute
 */
export async function runCell(options: CellOptions): Promise<CellResult> {
  const { nodes, pool, concurrency, runs, stepsPerRun, tenantId, tag } = options;
  const loadBefore = loadAverage();
  const logLinesBefore = nodes.reduce((sum, node) => sum + node.stderrLines, 0);
  const before = await sample(nodes, pool, tag);
  const loop = await closedLoop(options);
  const after = await sample(nodes, pool, tag);

  const toolSteps = runs * stepsPerRun;
  const { rows } = await pool.query<{ node_id: string; n: string }>(
    `SELECT node_id, count(*) AS n FROM "${options.schema}".journal WHERE tenant_id = $1 GROUP BY node_id ORDER BY node_id`,
    [tenantId],
  );
  const journalRows = rows.reduce((sum, row) => sum + Number(row.n), 0);
  const durations = [...loop.durationsMs].sort((a, b) => a - b);
  const meanDurationMs = durations.reduce((a, b) => a + b, 0) / durations.length;
  const cycles = after.nodes.flatMap((s) => s.stepCycleMs).sort((a, b) => a - b);
  const nodeDelta = (f: (s: NodeStats) => number): number => after.nodes.reduce((sum, s, i) => sum + f(s) - f(before.nodes[i]!), 0);
  return {
    nodes: nodes.length,
    concurrency,
    runs,
    wallMs: loop.wallMs,
    toolSteps,
    journalRows,
    toolStepsPerSecond: toolSteps / (loop.wallMs / 1000),
    journalRowsPerSecond: journalRows / (loop.wallMs / 1000),
    runP50Ms: percentile(durations, 50),
    runP99Ms: percentile(durations, 99),
    meanRunsInFlight: (runs / loop.wallMs) * meanDurationMs,
    stepCycleP50Ms: percentile(cycles, 50),
    stepCycleP99Ms: percentile(cycles, 99),
    ...cpuPerStep(before, after, toolSteps),
    journalRowsByNode: Object.fromEntries(rows.map((row) => [row.node_id, Number(row.n)])),
    transactionsPerStep: nodeDelta((s) => s.storeStats.transactions) / toolSteps,
    statementsPerStep: nodeDelta((s) => s.storeStats.statements) / toolSteps,
    storeRetries: nodeDelta((s) => s.storeStats.retries),
    sweeper: {
      claimed: nodeDelta((s) => s.sweeper.claimed),
      reactivated: nodeDelta((s) => s.sweeper.reactivated),
      refreshed: nodeDelta((s) => s.sweeper.refreshed),
      deferredActivations: nodeDelta((s) => s.sweeper.deferredActivations),
    },
    meanBatch: nodeDelta((s) => s.commitStats.commits) / nodeDelta((s) => s.commitStats.batches),
    wakesSent: nodeDelta((s) => s.wakesSent),
    polls: loop.polls,
    pollMsMean: loop.pollMs / loop.polls,
    loadBefore,
    nodeLogLines: nodes.reduce((sum, node) => sum + node.stderrLines, 0) - logLinesBefore,
    placement: await placementOf(pool, options.schema, tenantId, loop.starters),
  };
}

/** Splits the cell's runs by whether they ran on the node that started them, from the journal. */
async function placementOf(
  pool: pg.Pool,
  schema: string,
  tenantId: string,
  starters: ReadonlyMap<string, string>,
): Promise<CellResult["placement"]> {
  const { rows } = await pool.query<{
    actor_id: string;
    created_at: string;
    updated_at: string;
    first_at: string;
    owner: string;
    writers: string;
  }>(
    `SELECT a.actor_id, a.created_at, a.updated_at, min(j.created_at) AS first_at, min(j.node_id) AS owner, count(DISTINCT j.node_id) AS writers
       FROM "${schema}".actors a JOIN "${schema}".journal j ON j.tenant_id = a.tenant_id AND j.actor_id = a.actor_id
      WHERE a.tenant_id = $1 GROUP BY a.actor_id, a.created_at, a.updated_at`,
    [tenantId],
  );
  const summarize = (kind: "local" | "remote"): PlacementSummary => {
    const mine = rows.filter((row) => (row.owner === starters.get(row.actor_id)) === (kind === "local"));
    const runs = mine.map((row) => Number(row.updated_at) - Number(row.created_at)).sort((a, b) => a - b);
    const first = mine.map((row) => Number(row.first_at) - Number(row.created_at)).sort((a, b) => a - b);
    return {
      runs: mine.length,
      runP50Ms: percentile(runs, 50),
      runP99Ms: percentile(runs, 99),
      firstStepP50Ms: percentile(first, 50),
      firstStepP99Ms: percentile(first, 99),
    };
  };
  // An actor moves only when its node leaves or loses its lease: in this bench, never.
  const moved = rows.filter((row) => Number(row.writers) !== 1).length;
  return { local: summarize("local"), remote: summarize("remote"), movedRuns: moved };
}

type CpuFields =
  | "nodeCpuMicros"
  | "nodeCpuMicrosPerStep"
  | "pgCpuMicrosPerStep"
  | "pgBackendCpuMicrosPerStep"
  | "natsCpuMicrosPerStep"
  | "harnessCpuMicrosPerStep"
  | "otherCpuMicrosPerStep"
  | "otherShare"
  | "machineBusy"
  | "machineSteal";

/** Where the machine's CPU went between two samples, per tool step. */
function cpuPerStep(before: Sample, after: Sample, steps: number): Pick<CellResult, CpuFields> {
  const nodeCpuMicros = Object.fromEntries(after.nodes.map((s, i) => [s.nodeId, cpuOf(s) - cpuOf(before.nodes[i]!)]));
  const nodes = Object.values(nodeCpuMicros).reduce((a, b) => a + b, 0);
  const spent = cpuSpent(before.cpu, after.cpu);
  const pg = spent.postgres.nodes + spent.postgres.server;
  const harness = after.parent - before.parent + spent.postgres.poll;
  return {
    nodeCpuMicros,
    nodeCpuMicrosPerStep: nodes / steps,
    pgCpuMicrosPerStep: pg / steps,
    pgBackendCpuMicrosPerStep: spent.postgres.nodes / steps,
    natsCpuMicrosPerStep: spent.nats / steps,
    harnessCpuMicrosPerStep: harness / steps,
    otherCpuMicrosPerStep: (spent.machineBusy - nodes - pg - spent.nats - harness) / steps,
    otherShare: (spent.machineBusy - nodes - pg - spent.nats - harness) / spent.machineTotal,
    machineBusy: spent.machineBusy / spent.machineTotal,
    machineSteal: spent.machineSteal / spent.machineTotal,
  };
}

/** The closed loop: keeps `concurrency` runs in flight until `runs` have finished. */
async function closedLoop(
  options: CellOptions,
): Promise<{ wallMs: number; durationsMs: number[]; polls: number; pollMs: number; starters: Map<string, string> }> {
  const { nodes, pool, concurrency, runs, stepsPerRun, tenantId } = options;
  const inFlight = new Set<string>();
  /** The node each run was started through. */
  const starters = new Map<string, string>();
  const starts: Array<Promise<unknown>> = [];
  let startError: unknown;
  let next = 0;
  let turn = 0;
  const dispatch = (count: number): void => {
    const batches = nodes.map((): string[] => []);
    for (let i = 0; i < count && next < runs; i++) {
      const runId = `${tenantId}-${next++}`;
      inFlight.add(runId);
      starters.set(runId, nodes[turn % nodes.length]!.nodeId);
      batches[turn++ % nodes.length]!.push(runId);
    }
    batches.forEach((runIds, i) => {
      if (runIds.length === 0) return;
      starts.push(
        nodes[i]!.request("start", { tenantId, runIds, steps: stepsPerRun }, 120_000).catch((error: unknown) => (startError ??= error)),
      );
    });
  };
  const durationsMs: number[] = [];
  let polls = 0;
  let pollMs = 0;
  const started = performance.now();
  let progressAt = started;
  dispatch(concurrency);
  while (inFlight.size > 0) {
    if (startError !== undefined) throw startError;
    const pollStarted = performance.now();
    const { rows } = await pool.query<{ actor_id: string; status: string; created_at: string; updated_at: string }>(
      `SELECT actor_id, status, created_at, updated_at FROM "${options.schema}".actors
        WHERE tenant_id = $1 AND actor_id = ANY($2::text[]) AND status <> 'active'`,
      [tenantId, [...inFlight]],
    );
    const now = performance.now();
    polls++;
    pollMs += now - pollStarted;
    for (const row of rows) {
      if (row.status !== "completed") throw new Error(`run ${row.actor_id} ended ${row.status}`);
      inFlight.delete(row.actor_id);
      durationsMs.push(Number(row.updated_at) - Number(row.created_at));
    }
    if (rows.length > 0) {
      progressAt = now;
      dispatch(rows.length);
    } else if (now - progressAt > stallMsMax) {
      throw new Error(`no run of ${tenantId} finished for ${stallMsMax} ms; ${inFlight.size} in flight, ${next} of ${runs} started`);
    }
    const rest = pollIntervalMs - (performance.now() - pollStarted);
    if (rest > 0 && inFlight.size > 0) await new Promise((resolve) => setTimeout(resolve, rest));
  }
  const wallMs = performance.now() - started;
  await Promise.all(starts);
  if (startError !== undefined) throw startError;
  if (durationsMs.length !== runs) throw new Error(`${durationsMs.length} of ${runs} runs seen finished`);
  return { wallMs, durationsMs, polls, pollMs, starters };
}

interface Sample {
  nodes: NodeStats[];
  cpu: CpuSample;
  parent: number;
}

async function sample(nodes: readonly BenchNode[], pool: pg.Pool, tag: string): Promise<Sample> {
  const [stats, cpu] = await Promise.all([Promise.all(nodes.map((node) => node.stats())), sampleCpu(pool, tag)]);
  const own = process.cpuUsage();
  return { nodes: stats, cpu, parent: own.user + own.system };
}

function cpuOf(stats: NodeStats): number {
  return stats.cpu.user + stats.cpu.system;
}
