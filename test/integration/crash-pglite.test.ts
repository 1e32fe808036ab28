/**
 * PGlite's durability across SIGKILL: a worker runs on a PGlite data directory and is killed after
 * a step commit that planned an effect (1), after the ledger applied an idempotent call (3), during
 * a group commit (7) and at chosen moments mid-run; then the directory is reopened. Every step the
 * dead worker saw committed must be there, the database must open cleanly, and a fresh worker on
 * the same directory must finish every run with the same guarantees as on PostgreSQL.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPgliteStore } from "../../persistence/pglite/index.js";
import { WorkerLog } from "../crash/harness.js";
import { checkPgliteIntegrity } from "../crash/pglite-integrity.js";
import type { CrashPoint } from "../crash/protocol.js";
import { runCrashTrial, type StoreTarget, type TrialOptions, type TrialResult } from "../crash/trial.js";

const schema = `crash_${randomBytes(6).toString("hex")}`;
const runs = 8;
const results: TrialResult[] = [];
let dataDir = "";
let initMs = 0;

const target: StoreTarget = {
  kind: "pglite",
  schema,
  get dataDir() {
    return dataDir;
  },
  async withStore(work) {
    // PGlite is one process's database: the test opens it only while no worker runs.
    const opening = performance.now();
    const store = await createPgliteStore({ dataDir, schema });
    await store.migrate();
    const openMs = Math.round(performance.now() - opening);
    try {
      return { value: await work(store), openMs };
    } finally {
      await store.close();
    }
  },
  async afterKill() {
    // Below the logical checks: every index and heap page of the schema, with PostgreSQL's amcheck.
    const integrity = await checkPgliteIntegrity(dataDir, schema);
    expect(integrity.problems, "amcheck finds the directory sound after SIGKILL").toEqual([]);
    expect(integrity.indexesChecked).toBeGreaterThan(0);
    return { ...integrity };
  },
};

beforeAll(async () => {
  dataDir = path.join(await mkdtemp(path.join(tmpdir(), "tessera-crash-")), "db");
  // initdb runs once here, so that workers only ever reopen the directory.
  const started = performance.now();
  await target.withStore(async () => undefined);
  initMs = Math.round(performance.now() - started);
});

afterAll(async () => {
  if (dataDir !== "") await rm(path.dirname(dataDir), { recursive: true, force: true });
  console.log(
    [
      JSON.stringify({ pgliteInitMs: initMs }),
      ...results.map((r) =>
        JSON.stringify({
          point: r.point,
          seed: r.seed,
          ms: r.totalMs,
          committedBeforeKill: r.committedBeforeKill,
          reopenMs: r.reopenMs,
          recoveryOpenMs: r.recoveryOpenMs,
          amcheck: r.afterKill.map((c) => ({
            openMs: c.openMs,
            indexes: c.indexesChecked,
            tables: c.tablesChecked,
            problems: c.problems,
            settings: c.settings,
          })),
          batch: r.batch,
          recovered: r.recoveredActors,
          unknown: r.unknown,
          idempotentRepeats: r.idempotentRepeats,
          steps: r.steps,
        }),
      ),
    ].join("\n"),
  );
});

let nextSeed = 101;

async function trial(point: CrashPoint, extra: Partial<TrialOptions> = {}): Promise<TrialResult> {
  const log = new WorkerLog();
  const seed = nextSeed++;
  try {
    const result = await runCrashTrial({ point, seed, runs, target, log, ...extra });
    results.push(result);
    return result;
  } catch (error) {
    await log.killAll();
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`${point} trial (seed ${seed}) on PGlite failed: ${message}\n\n${log.describe()}`, { cause: error });
  }
}

describe("PGlite across SIGKILL", () => {
  it.each([0, 1])("(1) after a step commit that planned an effect — trial %i", async () => {
    const result = await trial("after-plan-commit");
    expect(result.committedBeforeKill).toBeGreaterThan(0);
  });

  it.each([0, 1])("(3) after the ledger applied an idempotent call — trial %i", async () => {
    await trial("idempotent-applied");
  });

  // PGlite runs a whole batch within one turn of the event loop, so a timer cannot land inside it:
  // the worker dies at a statement of the batch's transaction, or once the store reported it.
  it.each(["sql:after-insert", "sql:before-commit", "resolve"] as const)("(7) during a group commit — kill at %s", async (groupKill) => {
    const result = await trial("group-commit", { groupKill });
    expect(result.batch?.size).toBeGreaterThanOrEqual(3);
    expect(result.batch?.present).toBe(groupKill === "resolve" ? result.batch?.size : 0);
  });

  it.each([250, 550, 850])("mid-run: killed %i ms after the worker is ready", async (killDelayMs) => {
    await trial("random", { killDelayMs, ledgerDelayMs: { lookup: 20, reserve: 20, charge: 20 } });
  });
});
