import type pg from "pg";
import { createNode, type Store } from "../index.js";
import { createPgStore } from "../persistence/pg/index.js";
import { countingAgent, stepperAgent, type StepClock } from "./stepper-agent.js";
import { percentile } from "./stats.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Untimed steps of a warm-up actor, and steps timed at each history size: the same window at every
 * size, so that sizes compare like with like. Sizes must be at least a window apart.
 */
export interface GrowthCounts {
  warmUpSteps: number;
  windowSteps: number;
}

/** Takeovers timed at each size; their median is reported (one sample moved by 2x between rounds). */
const takeovers = 5;
/** Longest wait for one event's step to commit before the bench gives up, in ms. */
const commitWaitMsMax = 30_000;

/**
 * Bytes stored per step and step latency as one actor's history grows, and the time and rows it
 * takes to rehydrate an actor of that history (a new node recovering it).
 *
 * At each size the actor is first brought to that many steps untimed; then new nodes take it over
 * {@link takeovers} times (the median is reported, and the journal reads of the measured actor are
 * counted), and the next `windowSteps` steps are timed and their bytes counted. Every size thus
 * measures the same number of steps, after a warm-up actor of `warmUpSteps` steps, so that the
 * smallest size measures a short history, not the first steps of a process (unoptimized code) nor
 * those of empty tables (first pages, no statistics). Only the measured actor is active when a node
 * takes over (the others are stopped), and the store's pool is opened to its full size before any
 * takeover is timed. Bytes are table sizes, which grow by 8 KiB pages: a window of W steps reads
 * them to 8192 / W bytes per step.
 */
export async function growth(
  pool: pg.Pool,
  databaseUrl: string,
  schema: string,
  sizes: number[],
  { warmUpSteps, windowSteps }: GrowthCounts,
  note: (name: string, value: string, context?: string) => void,
): Promise<unknown> {
  const out: Record<string, unknown> = {};
  const poolSize = 4;
  const inner = createPgStore({ connectionString: databaseUrl, schema, poolSize });
  await inner.migrate();
  const journalRows = { actorId: "", read: 0 };
  const store = countingJournalReads(inner, journalRows);
  // One actor steps at a time, so the count its step reached tells which send it answers.
  let waiting: { n: number; resolve: () => void } | undefined;
  const agent = countingAgent((n) => {
    if (n === waiting?.n) waiting.resolve();
  });
  let node = createNode({ store, agents: [agent], logger: silent });
  try {
    await node.start();
    const send = async (runId: string, n: number): Promise<void> => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const committed = new Promise<void>((resolve, reject) => {
        waiting = { n: n + 1, resolve };
        // A step applied by a replay (after a commit whose answer was lost) runs no after-commit
        // action: fail loudly rather than hang.
        timer = setTimeout(
          () => reject(new Error(`growth: step ${n + 1} of ${runId} did not commit within ${commitWaitMsMax} ms`)),
          commitWaitMsMax,
        );
      });
      try {
        await node.sendEvent({ tenantId: "bench", actorId: runId, event: { type: "tick" }, messageId: `tick-${n}` });
        await committed;
      } finally {
        clearTimeout(timer);
      }
    };
    const warm = await node.startRun({ tenantId: "bench", agentType: "counter", input: null, idempotencyKey: "growth-warm-up" });
    for (let n = 0; n < warmUpSteps; n++) await send(warm.runId, n);
    await node.stopActor("bench", warm.runId);
    // Every connection of the pool open before a takeover is timed: the first recovery's parallel
    // reads would otherwise time the opening of a connection.
    await Promise.all(Array.from({ length: poolSize }, () => inner.getActor("bench", warm.runId)));
    // Steps run so far, per actor.
    const sent = new Map<string, number>();
    const measureAt = async (runId: string, size: number, label: string): Promise<void> => {
      let n = sent.get(runId) ?? 0;
      if (n > size) throw new Error(`growth: the actor has ${n} steps already, past the size ${size} (sizes must be a window apart)`);
      while (n < size) await send(runId, n++);
      // Rehydration: a new node takes the actor over and rebuilds it from snapshot + journal tail.
      const takeoverMs: number[] = [];
      let rowsRead = 0;
      for (let k = 0; k < takeovers; k++) {
        await node.close();
        node = createNode({ store, agents: [agent], logger: silent });
        journalRows.actorId = runId;
        journalRows.read = 0;
        const t = performance.now();
        await node.start();
        takeoverMs.push(performance.now() - t);
        rowsRead = journalRows.read;
      }
      takeoverMs.sort((a, b) => a - b);
      const rehydrateMs = percentile(takeoverMs, 50);
      const latencies: number[] = [];
      const bytesBefore = await tableBytes(pool, schema);
      for (let i = 0; i < windowSteps; i++) {
        const t0 = performance.now();
        await send(runId, n++);
        latencies.push(performance.now() - t0);
      }
      sent.set(runId, n);
      latencies.sort((a, b) => a - b);
      const bytesPerStep = ((await tableBytes(pool, schema)) - bytesBefore) / windowSteps;
      out[label] = {
        latencyP50Ms: percentile(latencies, 50),
        bytesPerStep,
        rehydrateMs,
        takeoverMs,
        journalRowsRead: rowsRead,
        windowSteps,
      };
      note(
        `history ${label}: event→committed step p50, bytes/step`,
        `${percentile(latencies, 50).toFixed(3)} ms, ${bytesPerStep.toFixed(0)} B (±${Math.ceil(8192 / windowSteps)})`,
        `over the next ${windowSteps} steps; a takeover at ${size} steps ${rehydrateMs.toFixed(1)} ms (median of ${takeovers}) reading ${rowsRead} journal rows`,
      );
    };
    const { runId } = await node.startRun({ tenantId: "bench", agentType: "counter", input: null, idempotencyKey: "growth" });
    for (const size of sizes) await measureAt(runId, size, `${size} steps`);
    // The control: a new actor of the smallest history, measured last. Were it faster than the first
    // measure of that size, the difference between sizes would be the process warming, not history.
    await node.stopActor("bench", runId);
    const control = await node.startRun({ tenantId: "bench", agentType: "counter", input: null, idempotencyKey: "growth-control" });
    await measureAt(control.runId, sizes[0]!, `${sizes[0]} steps, a new actor measured last`);
  } finally {
    await node.close();
    await inner.close();
  }
  return out;
}

/**
 * The same growth for a tool-calling actor: one run of the durable-steps workload,
 * `sizes.at(-1) + windowSteps` steps long, each step recording the outcome of the tool call before it
 * and planning the next. Reports the p50 of the step cycle (from one tool call's start to the next
 * one's, which takes the step's commit) over the `windowSteps` cycles from each size on, and
 * the bytes stored per step over the whole run. A warm-up run of `warmUpSteps` steps goes first.
 * Run it in a schema of its own: tables that other work filled would neither be young nor count
 * their own bytes.
 */
export async function toolGrowth(
  pool: pg.Pool,
  databaseUrl: string,
  schema: string,
  sizes: number[],
  { warmUpSteps, windowSteps }: GrowthCounts,
  note: (name: string, value: string, context?: string) => void,
): Promise<unknown> {
  const steps = Math.max(...sizes) + windowSteps;
  const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 4 });
  await store.migrate();
  const clock: StepClock = { stamps: new Map() };
  const node = createNode({ store, agents: [stepperAgent(clock)], logger: silent });
  await node.start();
  const run = async (key: string, length: number): Promise<string> => {
    const { runId } = await node.startRun({ tenantId: "bench", agentType: "stepper", input: { steps: length }, idempotencyKey: key });
    const view = await node.waitForStatus("bench", runId, { timeoutMs: 600_000 });
    if (view.status !== "completed") throw new Error(`tool growth run ended ${view.status}`);
    return runId;
  };
  let runId: string;
  let controlId: string;
  let bytesPerStep: number;
  try {
    await run("tool-growth-warm-up", warmUpSteps);
    const bytesBefore = await tableBytes(pool, schema);
    runId = await run("tool-growth", steps);
    bytesPerStep = ((await tableBytes(pool, schema)) - bytesBefore) / steps;
    // The control, as in `growth`: a new run measured last over the smallest size's window.
    controlId = await run("tool-growth-control", sizes[0]! + windowSteps);
  } finally {
    await node.close();
    await store.close();
  }
  const out: Record<string, unknown> = { bytesPerStep };
  const windows = [
    ...sizes.map((size) => ({ id: runId, size, label: `from step ${size}` })),
    { id: controlId, size: sizes[0]!, label: `from step ${sizes[0]}, a new run measured last` },
  ];
  for (const { id, size, label } of windows) {
    const stamps = clock.stamps.get(id) ?? [];
    const cycles: number[] = [];
    for (let i = size; i < size + windowSteps && i < stamps.length; i++) cycles.push(stamps[i]! - stamps[i - 1]!);
    cycles.sort((a, b) => a - b);
    if (cycles.length === 0) continue;
    out[label] = { latencyP50Ms: percentile(cycles, 50), window: cycles.length };
    note(`tool steps: step cycle p50 ${label}`, `${percentile(cycles, 50).toFixed(3)} ms`, `over the next ${cycles.length} cycles`);
  }
  note(`tool steps: bytes stored per step over ${steps} steps`, `${bytesPerStep.toFixed(0)} B`);
  return out;
}

/** The store, with the journal rows of one actor read through it counted. */
function countingJournalReads(inner: Store, counter: { actorId: string; read: number }): Store {
  return new Proxy(inner, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (property === "readJournal") {
        return async (...args: Parameters<Store["readJournal"]>) => {
          const rows = await target.readJournal(...args);
          if (args[1] === counter.actorId) counter.read += rows.length;
          return rows;
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function tableBytes(pool: pg.Pool, schema: string): Promise<number> {
  const { rows } = await pool.query(
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
    [schema],
  );
  return Number((rows[0] as { bytes: string }).bytes);
}
