/**
 * `npm run bench [-- --quick]`: Tessera's durable steps against raw PostgreSQL on the same database,
 * in one run. Prints a markdown table and writes JSON to .bench/ (git-ignored).
 */
import { execFile } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { randomUUID } from "node:crypto";
import pg from "pg";
import type { Store } from "../index.js";
import { createPgStore } from "../persistence/pg/index.js";
import { createPgliteStore } from "../persistence/pglite/index.js";
import { durableSteps } from "./durable-steps.js";
import { growth, toolGrowth } from "./growth.js";
import { benchIdentity, type BenchIdentity } from "./identity-setup.js";
import { idleActors } from "./idle-actors.js";
import { loadAverage, machineInfo, postgresCpuMicros, postgresCpuSince } from "./machine.js";
import { referenceGroupCommit, referenceInserts } from "./reference.js";
import { referenceStepRows } from "./step-rows.js";
import { cell, percentile, summarize } from "./stats.js";

const quick = process.argv.includes("--quick");
const databaseUrl = process.env.DATABASE_URL ?? "postgresql://root@127.0.0.1:5432/test";
const reps = quick ? 1 : 3;
/** Tool steps per run of the durable-steps workload. */
const stepsPerRun = 10;
const rows: Array<[string, string, string]> = [];
const json: Record<string, unknown> = { quick, startedAt: new Date().toISOString() };
const note = (name: string, value: string, context = ""): void => {
  rows.push([name, value, context]);
  console.error(`${name}: ${value} ${context}`);
};

const pool = new pg.Pool({ connectionString: databaseUrl, max: 70, connectionTimeoutMillis: 5000, idleTimeoutMillis: 1000 });
pool.on("error", () => {});
const schema = `bench_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
await pool.query(`CREATE SCHEMA ${schema}`);
json.machine = await machineInfo(pool);

try {
  // 1. Reference: the store's own limits, measured now, on this machine.
  const refSteps = quick ? 500 : 3000;
  const single = await repeat(() => referenceInserts(pool, schema, 1, refSteps));
  const singleLatency = single.flatMap((r) => r.latenciesMs).sort((a, b) => a - b);
  note(
    "raw pg: INSERT per transaction, 1 client, steps/s",
    cell(single.map((r) => r.stepsPerSecond)),
    `p50 ${percentile(singleLatency, 50).toFixed(3)} ms; load ${loadAverage()}`,
  );
  const single64 = await repeat(() => referenceInserts(pool, schema, 64, refSteps * 4));
  note("raw pg: INSERT per transaction, 64 clients, steps/s", cell(single64.map((r) => r.stepsPerSecond)), `load ${loadAverage()}`);
  const group64 = await repeat(() => referenceGroupCommit(pool, schema, 64, refSteps * 8));
  note("raw pg: group commit, 64 runs, steps/s", cell(group64.map((r) => r.stepsPerSecond)), `load ${loadAverage()}`);
  // The floor under a durable step: raw pg writing a tool step's rows in Tessera's schema; and the same
  // floor for a data model with fewer row writes (each effect's row written once, with its outcome):
  // not what Tessera writes, it tells what that change of data model would give at most. Their
  // repetitions alternate, so that a drift of the machine weighs on both alike.
  const [floor1, once1] = await alternate(
    () => referenceStepRows(databaseUrl, `${schema}_f`, 1, refSteps),
    () => referenceStepRows(databaseUrl, `${schema}_f`, 1, refSteps, true),
  );
  const [floor64, once64] = await alternate(
    () => referenceStepRows(databaseUrl, `${schema}_f`, 64, refSteps * 8),
    () => referenceStepRows(databaseUrl, `${schema}_f`, 64, refSteps * 8, true),
  );
  const floorLatency = floor1.flatMap((r) => r.latenciesMs).sort((a, b) => a - b);
  note(
    "raw pg: a durable step's rows (Tessera's schema), 1 run, steps/s",
    cell(floor1.map((r) => r.stepsPerSecond)),
    `p50 ${percentile(floorLatency, 50).toFixed(3)} ms (${(percentile(floorLatency, 50) / percentile(singleLatency, 50)).toFixed(2)} × INSERT); load ${loadAverage()}`,
  );
  const floorRatio = summarize(floor64.map((r) => r.stepsPerSecond)).median / summarize(group64.map((r) => r.stepsPerSecond)).median;
  note(
    "raw pg: a durable step's rows (Tessera's schema), group commit, 64 runs, steps/s",
    cell(floor64.map((r) => r.stepsPerSecond)),
    `${floorRatio.toFixed(2)} × group commit; ${cell(floor64.map((r) => r.walBytesPerStep))} bytes of WAL per step; load ${loadAverage()}`,
  );
  const onceLatency = once1.flatMap((r) => r.latenciesMs).sort((a, b) => a - b);
  note(
    "raw pg: a step's rows if each effect row were written once (not Tessera's model), 1 run, steps/s",
    cell(once1.map((r) => r.stepsPerSecond)),
    `p50 ${percentile(onceLatency, 50).toFixed(3)} ms (${(percentile(onceLatency, 50) / percentile(singleLatency, 50)).toFixed(2)} × INSERT)`,
  );
  note(
    "raw pg: a step's rows if each effect row were written once (not Tessera's model), 64 runs, steps/s",
    cell(once64.map((r) => r.stepsPerSecond)),
    `${(summarize(once64.map((r) => r.stepsPerSecond)).median / summarize(group64.map((r) => r.stepsPerSecond)).median).toFixed(2)} × group commit; ${cell(once64.map((r) => r.walBytesPerStep))} bytes of WAL per step`,
  );
  json.reference = {
    single,
    single64: single64.map((r) => r.stepsPerSecond),
    group64: group64.map((r) => r.stepsPerSecond),
    floor1: floor1.map(rateAndP50),
    floor64: floor64.map((r) => r.stepsPerSecond),
    effectRowOnce1: once1.map(rateAndP50),
    effectRowOnce64: once64.map((r) => r.stepsPerSecond),
  };

  // 2. Tessera durable-steps on PostgreSQL.
  const cells: Array<{ concurrency: number; runs: number }> = quick
    ? [
        { concurrency: 1, runs: 20 },
        { concurrency: 64, runs: 200 },
        { concurrency: 1000, runs: 1000 },
      ]
    : [
        { concurrency: 1, runs: 100 },
        { concurrency: 16, runs: 600 },
        { concurrency: 64, runs: 1500 },
        { concurrency: 1000, runs: 3000 },
      ];
  // Untimed first: the first thousands of steps of a process run unoptimized code (measured: node CPU
  // per step at 1 run fell from ~1,300 to ~500 µs over the first 9,000 steps), and the references
  // are compiled long before their timed loops. A warm-up measures the runtime, not the JIT.
  await warmUp(
    "tessera pg",
    async () => {
      const store = createPgStore({ connectionString: databaseUrl, schema: `${schema}_w`, poolSize: 8 });
      await store.migrate();
      return store;
    },
    { dropSchema: `${schema}_w` },
  );
  const tessera: Record<string, unknown> = {};
  let ratio64 = NaN;
  let ratioFloor64 = NaN;
  let p50Single = NaN;
  for (const c of cells) {
    const results = await repeat(async () => {
      const store = createPgStore({ connectionString: databaseUrl, schema: `${schema}_t`, poolSize: 8 });
      await store.migrate();
      const before = { ...store.stats };
      const pgCpu = await postgresCpuMicros();
      const bytes = await schemaBytes(pool, `${schema}_t`);
      const wal = await walPosition(pool);
      const result = await durableSteps(store, { concurrency: c.concurrency, runs: c.runs, stepsPerRun, tag: randomUUID() });
      const after = store.stats;
      const out = {
        ...result,
        pgCpuMicrosPerStep: (await postgresCpuSince(pgCpu)) / result.steps,
        statementsPerStep: (after.statements - before.statements) / result.steps,
        transactionsPerStep: (after.transactions - before.transactions) / result.steps,
        bytesPerStep: ((await schemaBytes(pool, `${schema}_t`)) - bytes) / result.steps,
        walBytesPerStep: (await walBytesSince(pool, wal)) / result.steps,
      };
      await store.close();
      return out;
    });
    tessera[`c${c.concurrency}`] = results;
    const sps = results.map((r) => r.stepsPerSecond);
    note(
      `tessera pg: ${c.concurrency} concurrent run(s), steps/s`,
      cell(sps),
      `load ${loadAverage()}; largest batch ${Math.max(...results.map((r) => r.largestBatch))}`,
    );
    if (c.concurrency === 1) {
      p50Single = summarize(results.map((r) => r.stepLatencyP50Ms)).median;
      note(
        "tessera pg: step latency at 1 run, p50 / p99 ms",
        `${cell(
          results.map((r) => r.stepLatencyP50Ms),
          3,
        )} / ${cell(
          results.map((r) => r.stepLatencyP99Ms),
          3,
        )}`,
      );
    }
    if (c.concurrency === 64) {
      ratio64 = summarize(sps).median / summarize(group64.map((r) => r.stepsPerSecond)).median;
      ratioFloor64 = summarize(sps).median / summarize(floor64.map((r) => r.stepsPerSecond)).median;
    }
    note(
      `tessera pg: costs per step at ${c.concurrency}`,
      `node ${cell(results.map((r) => r.nodeCpuMicros / r.steps))} µs, pg ${cell(results.map((r) => r.pgCpuMicrosPerStep))} µs`,
      `${cell(
        results.map((r) => r.statementsPerStep),
        2,
      )} statements, ${cell(
        results.map((r) => r.transactionsPerStep),
        2,
      )} transactions, ${cell(results.map((r) => r.bytesPerStep))} bytes stored, ${cell(results.map((r) => r.walBytesPerStep))} bytes of WAL`,
    );
  }
  json.tessera = tessera;
  note("ratio: tessera 64 runs / group-commit reference", Number.isNaN(ratio64) ? "n/a (quick)" : ratio64.toFixed(2), "target ≥ 0.5");
  note("ratio: tessera p50 at 1 run / INSERT per transaction p50", (p50Single / percentile(singleLatency, 50)).toFixed(2), "target ≤ 1.4");
  note(
    "ratio: tessera 64 runs / a durable step's rows at 64 (the runtime's share)",
    ratioFloor64.toFixed(2),
    "1.0 would be a runtime that costs nothing",
  );
  note(
    "ratio: tessera p50 at 1 run / a durable step's rows p50",
    (p50Single / percentile(floorLatency, 50)).toFixed(2),
    "1.0 would be a runtime that costs nothing",
  );

  // 2b. The same workload under identity: a 3-link delegation chain per run, and every tool call a
  // signed invocation that the node verifies; then the sign/verify costs alone.
  const identity = await benchIdentity("bench");
  await warmUp(
    "tessera pg + identity",
    async () => {
      const store = createPgStore({ connectionString: databaseUrl, schema: `${schema}_w`, poolSize: 8 });
      await store.migrate();
      return store;
    },
    { identity, dropSchema: `${schema}_w` },
  );
  for (const c of quick
    ? [
        { concurrency: 1, runs: 5 },
        { concurrency: 64, runs: 64 },
      ]
    : [
        { concurrency: 1, runs: 50 },
        { concurrency: 64, runs: 600 },
      ]) {
    const results = await repeat(async () => {
      const store = createPgStore({ connectionString: databaseUrl, schema: `${schema}_id`, poolSize: 8 });
      await store.migrate();
      const result = await durableSteps(store, { concurrency: c.concurrency, runs: c.runs, stepsPerRun, tag: randomUUID(), identity });
      await store.close();
      return result;
    });
    note(
      `tessera pg + identity: ${c.concurrency} concurrent run(s), steps/s`,
      cell(results.map((r) => r.stepsPerSecond)),
      `p50 ${cell(
        results.map((r) => r.stepLatencyP50Ms),
        2,
      )} ms; node ${cell(results.map((r) => r.nodeCpuMicros / r.steps))} µs/step; load ${loadAverage()}`,
    );
  }
  try {
    for (const line of await identityCosts())
      note(`identity alone: ${line.name}`, `${line.median} ms`, `min–max of its samples ${line.range} ms`);
  } catch (error) {
    note("identity alone", "n/a", `bench/identity.ts failed: ${(error as Error).message.split("\n")[0]}`);
  }

  // 3. The embedded default.
  const dataDir = `.bench/pglite-${randomUUID().slice(0, 8)}`;
  const lite = await createPgliteStore({ dataDir });
  await lite.migrate();
  // Warmed in the store the cells use (their rows stay in it): the PGlite cells report steps/s and
  // latency only, and a second database would warm another WebAssembly instance.
  await warmUp("tessera pglite", async () => lite, { close: false });
  for (const c of quick
    ? [
        { concurrency: 1, runs: 10 },
        { concurrency: 64, runs: 64 },
      ]
    : [
        { concurrency: 1, runs: 50 },
        { concurrency: 64, runs: 320 },
      ]) {
    const results = await repeat(() => durableSteps(lite, { concurrency: c.concurrency, runs: c.runs, stepsPerRun, tag: randomUUID() }));
    note(
      `tessera pglite: ${c.concurrency} concurrent run(s), steps/s`,
      cell(results.map((r) => r.stepsPerSecond)),
      `p50 ${cell(
        results.map((r) => r.stepLatencyP50Ms),
        2,
      )} ms`,
    );
  }
  await lite.close();
  await rm(dataDir, { recursive: true, force: true });

  // 4. Growth and rehydration.
  const sizes = quick ? [10, 200, 1000] : [10, 1000, 10000];
  json.growth = await growth(
    pool,
    databaseUrl,
    `${schema}_g`,
    sizes,
    { warmUpSteps: quick ? 600 : 1000, windowSteps: quick ? 100 : 500 },
    note,
  );
  json.toolGrowth = await toolGrowth(
    pool,
    databaseUrl,
    `${schema}_tg`,
    sizes,
    { warmUpSteps: quick ? 600 : 2000, windowSteps: quick ? 100 : 500 },
    note,
  );

  // 5. Memory per idle actor, and reactivation.
  json.idle = await idleActors(databaseUrl, [`${schema}_i`, `${schema}_i2`], quick ? 1000 : 10_000, note);
} finally {
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await pool.query(`DROP SCHEMA IF EXISTS ${schema}_t CASCADE`);
  await pool.query(`DROP SCHEMA IF EXISTS ${schema}_g CASCADE`);
  await pool.query(`DROP SCHEMA IF EXISTS ${schema}_tg CASCADE`);
  await pool.query(`DROP SCHEMA IF EXISTS ${schema}_i CASCADE`);
  await pool.query(`DROP SCHEMA IF EXISTS ${schema}_i2 CASCADE`);
  await pool.query(`DROP SCHEMA IF EXISTS ${schema}_id CASCADE`);
  await pool.query(`DROP SCHEMA IF EXISTS ${schema}_f CASCADE`);
  await pool.query(`DROP SCHEMA IF EXISTS ${schema}_w CASCADE`);
  await pool.end();
}

const table = [
  "| measure | value (median, min–max of " + reps + ") | context |",
  "| --- | --- | --- |",
  ...rows.map((r) => `| ${r.join(" | ")} |`),
].join("\n");
console.log(
  `\n## Tessera bench ${quick ? "(quick)" : ""}\n\n${Object.entries(json.machine as Record<string, string>)
    .map(([k, v]) => `${k}: ${v}`)
    .join(" · ")}\n\n${table}\n`,
);
await mkdir(".bench", { recursive: true });
const file = `.bench/bench-${new Date().toISOString().replaceAll(":", "-")}.json`;
await writeFile(file, JSON.stringify({ ...json, rows }, null, 2));
console.log(`JSON: ${file}`);

/** Runs the identity microbenchmark (`bench/identity.ts`) in a process of its own and reads its medians. */
async function identityCosts(): Promise<Array<{ name: string; median: string; range: string }>> {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--import", "tsx", fileURLToPath(new URL("./identity.ts", import.meta.url))],
    {
      cwd: root,
      maxBuffer: 1 << 20,
    },
  );
  return stdout.split("\n").flatMap((line) => {
    const m = /^(.+?)\s+median\s+([\d.]+) ms\s+min–max ([\d.]+) ms – ([\d.]+) ms/.exec(line);
    return m === null ? [] : [{ name: m[1]!.trim(), median: m[2]!, range: `${m[3]}–${m[4]}` }];
  });
}

/**
 * Runs the durable-steps workload untimed before a group of cells: 600 runs (60 with `--quick`) at
 * 16 in flight, then half as many one at a time (the single-run path has code of its own to
 * compile: measured, its node CPU per step still fell over 3,000 steps after the concurrent part).
 * Nothing of it is reported but its size and duration. `dropSchema` is dropped afterwards, so that
 * no table of the warm-up is vacuumed, analyzed or checkpointed while the cells are timed.
 */
async function warmUp(
  label: string,
  open: () => Promise<Store>,
  options: { identity?: BenchIdentity; close?: boolean; dropSchema?: string } = {},
): Promise<void> {
  const store = await open();
  const started = performance.now();
  const runs = quick ? 60 : 600;
  try {
    await durableSteps(store, { concurrency: 16, runs, stepsPerRun, tag: randomUUID(), identity: options.identity });
    await durableSteps(store, { concurrency: 1, runs: runs / 2, stepsPerRun, tag: randomUUID(), identity: options.identity });
  } finally {
    if (options.close ?? true) await store.close();
    if (options.dropSchema !== undefined) await pool.query(`DROP SCHEMA IF EXISTS ${options.dropSchema} CASCADE`);
  }
  note(`${label}: warm-up, untimed`, `${(runs * 1.5 * stepsPerRun).toFixed(0)} steps`, `${(performance.now() - started).toFixed(0)} ms`);
}

/** A repetition's steps/s and latency p50, as the JSON records them. */
function rateAndP50(r: { stepsPerSecond: number; latenciesMs: number[] }): { stepsPerSecond: number; p50Ms: number } {
  return {
    stepsPerSecond: r.stepsPerSecond,
    p50Ms: percentile(
      [...r.latenciesMs].sort((a, b) => a - b),
      50,
    ),
  };
}

/** `reps` repetitions of two measures, alternating (a, b, a, b, …). */
async function alternate<A, B>(a: () => Promise<A>, b: () => Promise<B>): Promise<[A[], B[]]> {
  const as: A[] = [];
  const bs: B[] = [];
  for (let i = 0; i < reps; i++) {
    as.push(await a());
    bs.push(await b());
  }
  return [as, bs];
}

async function repeat<T>(fn: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < reps; i++) out.push(await fn());
  return out;
}

async function schemaBytes(p: pg.Pool, name: string): Promise<number> {
  const { rows: r } = await p.query(
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
    [name],
  );
  return Number((r[0] as { bytes: string }).bytes);
}

/** The server's current WAL insert position (a text LSN). */
async function walPosition(p: pg.Pool): Promise<string> {
  const { rows: r } = await p.query("SELECT pg_current_wal_insert_lsn()::text AS lsn");
  return (r[0] as { lsn: string }).lsn;
}

/** WAL bytes the whole server wrote since `from`: the cell's own, as nothing else runs during a cell. */
async function walBytesSince(p: pg.Pool, from: string): Promise<number> {
  const { rows: r } = await p.query("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::float8 AS bytes", [from]);
  return Number((r[0] as { bytes: number }).bytes);
}
