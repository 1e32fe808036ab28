import type pg from "pg";
import { createNode, type Store } from "../index.js";
import { createPgStore } from "../persistence/pg/index.js";
import { idleAgent, stepperAgent, type StepClock } from "./stepper-agent.js";
import { percentile } from "./stats.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Bytes stored per step and step latency as one actor's history grows, and the time and rows it
 * takes to rehydrate an actor of that history (a new node recovering it).
 */
export async function growth(
  pool: pg.Pool,
  databaseUrl: string,
  schema: string,
  sizes: number[],
  note: (name: string, value: string, context?: string) => void,
): Promise<unknown> {
  const out: Record<string, unknown> = {};
  const inner = createPgStore({ connectionString: databaseUrl, schema, poolSize: 4 });
  await inner.migrate();
  const journalRows = { read: 0 };
  const store = countingJournalReads(inner, journalRows);
  let node = createNode({ store, agents: [idleAgent], logger: silent });
  await node.start();
  const { runId } = await node.startRun({ tenantId: "bench", agentType: "idler", input: null, idempotencyKey: "growth" });
  let sent = 0;
  for (const size of sizes) {
    const latencies: number[] = [];
    const bytesBefore = await tableBytes(pool, schema);
    const windowStart = sent;
    while (sent < size) {
      const t = performance.now();
      await node.sendEvent({ tenantId: "bench", actorId: runId, event: { type: "tick" }, messageId: `tick-${sent}` });
      sent += 1;
      await waitRevision(node, runId, sent + 1);
      latencies.push(performance.now() - t);
    }
    latencies.sort((a, b) => a - b);
    const bytesPerStep = ((await tableBytes(pool, schema)) - bytesBefore) / Math.max(1, sent - windowStart);
    // Rehydration: a new node takes the actor over and rebuilds it from snapshot + journal tail.
    await node.close();
    node = createNode({ store, agents: [idleAgent], logger: silent });
    journalRows.read = 0;
    const t = performance.now();
    await node.start();
    const rehydrateMs = performance.now() - t;
    out[size] = { latencyP50Ms: percentile(latencies, 50), bytesPerStep, rehydrateMs, journalRowsRead: journalRows.read };
    note(
      `history ${size} steps: event→committed step p50, bytes/step`,
      `${percentile(latencies, 50).toFixed(3)} ms, ${bytesPerStep.toFixed(0)} B`,
      `rehydrate ${rehydrateMs.toFixed(1)} ms reading ${journalRows.read} journal rows`,
    );
  }
  await node.close();
  await inner.close();
  return out;
}

/**
 * The same growth for a tool-calling actor: one run of the durable-steps workload, `sizes.at(-1)`
 * steps long, each step recording the outcome of the tool call before it and planning the next.
 * Reports the p50 of the step cycle (from one tool call's start to the next one's, which takes the
 * step's commit) over the cycles up to each size (the last 100 at most), and the bytes stored per
 * step over the whole run. Run it in a schema of its own: tables that other work filled would
 * neither be young nor count their own bytes.
 */
export async function toolGrowth(
  pool: pg.Pool,
  databaseUrl: string,
  schema: string,
  sizes: number[],
  note: (name: string, value: string, context?: string) => void,
): Promise<unknown> {
  const steps = Math.max(...sizes);
  const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 4 });
  await store.migrate();
  const clock: StepClock = { stamps: new Map() };
  const node = createNode({ store, agents: [stepperAgent(clock)], logger: silent });
  await node.start();
  let runId: string;
  let bytesPerStep: number;
  try {
    const bytesBefore = await tableBytes(pool, schema);
    ({ runId } = await node.startRun({ tenantId: "bench", agentType: "stepper", input: { steps }, idempotencyKey: "tool-growth" }));
    const view = await node.waitForStatus("bench", runId, { timeoutMs: 600_000 });
    if (view.status !== "completed") throw new Error(`tool growth run ended ${view.status}`);
    bytesPerStep = ((await tableBytes(pool, schema)) - bytesBefore) / steps;
  } finally {
    await node.close();
    await store.close();
  }
  const stamps = clock.stamps.get(runId) ?? [];
  const out: Record<string, unknown> = { bytesPerStep };
  for (const size of sizes) {
    const from = Math.max(1, size - Math.min(100, size - 1));
    const cycles: number[] = [];
    for (let i = from; i < size && i < stamps.length; i++) cycles.push(stamps[i]! - stamps[i - 1]!);
    cycles.sort((a, b) => a - b);
    if (cycles.length === 0) continue;
    out[size] = { latencyP50Ms: percentile(cycles, 50), window: cycles.length };
    note(
      `tool steps: step cycle p50 up to step ${size}`,
      `${percentile(cycles, 50).toFixed(3)} ms`,
      `over the last ${cycles.length} cycles`,
    );
  }
  note(`tool steps: bytes stored per step over ${steps} steps`, `${bytesPerStep.toFixed(0)} B`);
  return out;
}

async function waitRevision(node: ReturnType<typeof createNode>, runId: string, revision: number): Promise<void> {
  for (;;) {
    const view = await node.getActor("bench", runId);
    if (view.revision >= revision) return;
    await new Promise((r) => setImmediate(r));
  }
}

/** The store, with the journal rows read through it counted. */
function countingJournalReads(inner: Store, counter: { read: number }): Store {
  return new Proxy(inner, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (property === "readJournal") {
        return async (...args: Parameters<Store["readJournal"]>) => {
          const rows = await target.readJournal(...args);
          counter.read += rows.length;
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
