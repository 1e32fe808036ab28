/**
 * One crash trial: a worker dies at a crash point, a fresh worker recovers on the same store, the
 * test reconciles what was left `unknown` with the ledger's truth, and everything is verified.
 */
import { expect } from "vitest";
import { createNode } from "../../actors/node.js";
import type { Store } from "../../core/ports/store.js";
import { startLedger, type Ledger } from "../helpers/ledger-service.js";
import { makeCrashAgents } from "./agents.js";
import type { GroupKill } from "./crash-store.js";
import { lineIs, sleep, spawnWorker, waitForExit, committedSteps, type WorkerLog, type WorkerProcess } from "./harness.js";
import type { CommittedStep, CrashPoint, UnknownEffect, WorkerArgs, WorkerLine } from "./protocol.js";
import { countPresent, expectCommittedStepsSurvived, verifyRuns, type VerifiedTrial } from "./verify.js";

type CrashLine = Extract<WorkerLine, { event: "crash" }>;
type SettledLine = Extract<WorkerLine, { event: "settled" }>;

/** Where a trial's workers keep their actors, and how the test reads them. */
export interface StoreTarget {
  kind: "pg" | "pglite";
  schema: string;
  databaseUrl?: string;
  dataDir?: string;
  /**
   * Runs `work` on the store. For PGlite, which one process at a time may open, the store is
   * opened for `work` and closed after it; the time the open took is returned.
   */
  withStore<T>(work: (store: Store) => Promise<T>): Promise<{ value: T; openMs: number }>;
  /** Physical checks right after each kill, before anything reopens the store through Tessera. */
  afterKill?(): Promise<Record<string, unknown>>;
}

/** Options of {@link runCrashTrial}. */
export interface TrialOptions {
  point: CrashPoint;
  seed: number;
  runs: number;
  target: StoreTarget;
  log: WorkerLog;
  /** For `random`: milliseconds after the worker is ready before the parent kills it. */
  killDelayMs?: number;
  /** `delayMs` asked of the ledger by the crashing worker. */
  ledgerDelayMs?: WorkerArgs["ledgerDelayMs"];
  /**
   * When given, the first recovering worker is killed too, this many milliseconds after it is
   * ready, before a last worker recovers: a crash during recovery.
   */
  secondKillDelayMs?: number;
  /** Extra arguments of the recovering worker (a slow store read, for instance). */
  recovery?: Partial<WorkerArgs>;
  /** For `group-commit`: when the worker dies after handing its batch over. @defaultValue "ms:0" */
  groupKill?: GroupKill;
}

/** What a trial observed, for the report. */
export interface TrialResult extends VerifiedTrial {
  point: CrashPoint;
  seed: number;
  /** Steps the killed worker reported committed; every one was found in the store. */
  committedBeforeKill: number;
  /** What the crash line said, if the worker killed itself. */
  crashDetail: Record<string, unknown> | undefined;
  /**
   * For `group-commit`: how many of the in-flight batch's steps landed, of how many; how many SQL
   * statements of the batch had finished when the worker died; whether the batch had resolved.
   */
  batch: { present: number; size: number; statements: number; resolved: boolean } | undefined;
  unknown: number;
  recoveredActors: number;
  /** How long the store took to open after the kill, in ms (PGlite: reopening the directory). */
  reopenMs: number;
  /** How long the recovering worker took to open and migrate the store, in ms (PGlite: WASM start and WAL replay). */
  recoveryOpenMs: number;
  /** What {@link StoreTarget.afterKill} found after each kill. */
  afterKill: Array<Record<string, unknown>>;
  recoveryMs: number;
  totalMs: number;
}

const selfKilled: ReadonlySet<CrashPoint> = new Set([
  "after-plan-commit",
  "idempotent-applied",
  "non-idempotent-applied",
  "timer-fire",
  "spawn-child",
  "group-commit",
]);

/** The slow tool of an `idempotent-inflight` trial, by seed. */
export function slowToolOf(seed: number): "lookup" | "reserve" {
  return seed % 2 === 0 ? "lookup" : "reserve";
}

/** Drives the crashing worker to its death; returns the crash line when it killed itself. */
async function killAtPoint(worker: WorkerProcess, options: TrialOptions): Promise<CrashLine | undefined> {
  const { point } = options;
  if (selfKilled.has(point)) {
    const line = await worker.waitFor((l) => l.event === "crash" || l.event === "settled" || l.event === "error", 60_000);
    if (line.event !== "crash") throw new Error(`worker ${worker.name} never reached crash point ${point}\n${worker.describe()}`);
    return line as CrashLine;
  }
  if (point === "idempotent-inflight") {
    const tool = slowToolOf(options.seed);
    await worker.waitFor((l) => l.event === "tool" && l.phase === "start" && l.tool === tool, 60_000);
    // Long enough for the request to reach the ledger, which applies it at once and answers late.
    await sleep(150);
    const answered = worker.lines.some((l) => l.event === "tool" && l.phase === "answer" && l.tool === tool);
    expect(answered, "the slow idempotent call was still in flight when the worker was killed").toBe(false);
  } else {
    await worker.waitFor(lineIs("ready"), 60_000);
    await sleep(options.killDelayMs ?? 0);
  }
  await worker.kill();
  return undefined;
}

/** Settles every effect the recovery left `unknown` with what the ledger says happened. */
async function reconcile(
  target: StoreTarget,
  ledger: Ledger,
  tenantId: string,
  unknown: readonly UnknownEffect[],
  seed: number,
): Promise<Set<string>> {
  const reconciled = new Set<string>();
  if (unknown.length === 0) return reconciled;
  await target.withStore(async (store) => {
    const truth = ledger.snapshot();
    // Before anything changes: each unknown effect is unknown in the store, its run waits, and
    // nobody retried it blindly.
    for (const effect of unknown) {
      expect((await store.getEffect(tenantId, effect.actorId, effect.effectId))?.state).toBe("unknown");
      expect((await store.getActor(tenantId, effect.runId))?.status, `run ${effect.runId} waits for reconciliation`).toBe("active");
      expect(truth.byKey[effect.key] ?? 0, `unknown ${effect.tool} ${effect.key} was not called again`).toBeLessThanOrEqual(1);
    }
    const { agents } = makeCrashAgents({ ledgerUrl: ledger.url });
    const node = createNode({ store, agents, nodeId: `reconciler-${seed}`, statusPollMs: 50 });
    await node.start();
    try {
      for (const effect of unknown) {
        const record = truth.records.find((r) => r.key === effect.key && r.applied);
        await node.reconcileEffect({
          tenantId,
          actorId: effect.actorId,
          effectId: effect.effectId,
          outcome:
            record !== undefined
              ? { state: "completed", result: { ledgerId: record.id } }
              : { state: "failed", error: { code: "ERR_TOOL_FAILED", message: "the ledger never received this charge" } },
        });
        reconciled.add(effect.key);
      }
      for (const runId of new Set(unknown.map((effect) => effect.runId))) {
        const view = await node.waitForStatus(tenantId, runId, { timeoutMs: 20_000 });
        expect(view.status, `run ${runId} finished after reconciliation`).toBe("completed");
      }
    } finally {
      await node.close();
    }
  });
  return reconciled;
}

/** The arguments every worker of a trial shares. */
function workerBase(options: TrialOptions, ledger: Ledger): Omit<WorkerArgs, "nodeId" | "crash"> {
  const { target, seed, runs } = options;
  return {
    store: target.kind,
    databaseUrl: target.databaseUrl,
    schema: target.schema,
    dataDir: target.dataDir,
    ledgerUrl: ledger.url,
    seed,
    runs,
    tenantId: `t${seed}`,
  };
}

/** Kills a worker at the trial's crash point and checks that what it saw committed survived. */
async function crashPhase(options: TrialOptions, base: Omit<WorkerArgs, "nodeId" | "crash">) {
  const { point, seed, target, log } = options;
  const crashing = log.add(
    spawnWorker(`${point}#${seed} (crash)`, {
      ...base,
      nodeId: `crash-${seed}`,
      crash: point,
      ledgerDelayMs: options.ledgerDelayMs,
      groupKill: options.groupKill,
    }),
  );
  const crashLine = await killAtPoint(crashing, options);
  const exit = await crashing.exited;
  expect(exit.signal, `worker ${crashing.name} died by SIGKILL\n${crashing.describe()}`).toBe("SIGKILL");
  // Promise 1: nothing the dead worker saw committed is lost.
  const committed = committedSteps(crashing);
  const batch = crashLine?.detail.batch as CommittedStep[] | undefined;
  const checks: Array<Record<string, unknown>> = [];
  if (target.afterKill !== undefined) checks.push(await target.afterKill());
  const afterKill = await target.withStore(async (store) => {
    await expectCommittedStepsSurvived(store, base.tenantId, committed);
    await expectStateAtCrash(store, base.tenantId, point, crashLine);
    if (point !== "group-commit" || batch === undefined) return undefined;
    // A batch is one transaction: all of it landed or none of it did.
    const present = await countPresent(store, base.tenantId, batch);
    expect([0, batch.length], `group commit of ${batch.length} steps is atomic (found ${present})`).toContain(present);
    const resolved = crashLine?.detail.resolved === true;
    // Killed once the store reported the batch committed: it must all be there.
    if (resolved) expect(present, "a batch the store reported committed survived").toBe(batch.length);
    return { present, size: batch.length, statements: Number(crashLine?.detail.statements), resolved };
  });
  if (options.secondKillDelayMs !== undefined) {
    const second = log.add(
      spawnWorker(`${point}#${seed} (second crash)`, {
        ...base,
        nodeId: `crash2-${seed}`,
        crash: "random",
        ledgerDelayMs: options.ledgerDelayMs,
      }),
    );
    await second.waitFor(lineIs("ready"), 60_000);
    await sleep(options.secondKillDelayMs);
    expect((await second.kill()).signal).toBe("SIGKILL");
    const again = committedSteps(second);
    if (target.afterKill !== undefined) checks.push(await target.afterKill());
    await target.withStore((store) => expectCommittedStepsSurvived(store, base.tenantId, again));
    committed.push(...again);
  }
  return { crashLine, committed, afterKill, checks };
}

/** What the store must hold right after the kill, for the crash points that leave a known mark. */
async function expectStateAtCrash(store: Store, tenantId: string, point: CrashPoint, crashLine: CrashLine | undefined): Promise<void> {
  const detail = crashLine?.detail ?? {};
  if (point === "after-plan-commit") {
    // Committed, never dispatched: a non-idempotent effect was not claimed (it stays planned); an
    // idempotent one is as its step committed it (running, first attempt counted).
    for (const { actorId, effectId, state, attempts } of detail.effects as Array<{
      actorId: string;
      effectId: string;
      state: string;
      attempts: number;
    }>) {
      const stored = await store.getEffect(tenantId, actorId, effectId);
      expect(stored?.state, `${actorId}/${effectId} is as committed`).toBe(state);
      expect(stored?.attempts, `${actorId}/${effectId} attempts as committed`).toBe(attempts);
    }
  }
  if (point === "spawn-child") {
    // The child row landed with its parent's step; the child took no step.
    for (const childId of detail.children as string[]) expect((await store.getActor(tenantId, childId))?.revision).toBe(0);
  }
  if (point === "timer-fire") {
    // The firing never landed: the timer is still armed in the store, to fire after recovery.
    for (const actorId of detail.timers as string[]) {
      expect(
        (await store.listTimers(tenantId, actorId)).map((timer) => timer.name),
        `${actorId} still has its timer`,
      ).toContain("settle");
    }
  }
}

/** Runs a fresh worker on the same store until every run is final or waits on an unknown effect. */
async function recoveryPhase(
  options: TrialOptions,
  base: Omit<WorkerArgs, "nodeId" | "crash">,
): Promise<{ recovered: number; openMs: number; settled: SettledLine }> {
  const { point, seed, runs, log } = options;
  const recovering = log.add(
    spawnWorker(`${point}#${seed} (recovery)`, { ...base, nodeId: `recover-${seed}`, crash: "none", ...options.recovery }),
  );
  const open = await recovering.waitFor(lineIs("open"), 60_000);
  const ready = await recovering.waitFor(lineIs("ready"), 60_000);
  const end = await recovering.waitFor((l) => l.event === "settled" || l.event === "error", 90_000);
  if (end.event !== "settled") throw new Error(`recovery worker failed\n${recovering.describe()}`);
  const exit = await waitForExit(recovering, 30_000);
  expect(exit.code, `recovery worker exited cleanly\n${recovering.describe()}`).toBe(0);
  expect(end.runs).toHaveLength(runs);
  for (const run of end.runs) {
    const blocked = end.unknown.some((effect) => effect.runId === run.runId);
    expect(run.status === "completed" || blocked, `run ${run.runId} completed or waits on an unknown effect (${run.status})`).toBe(true);
  }
  return { recovered: ready.recovered, openMs: open.openMs, settled: end };
}

/** What must hold right after recovery for the crash points that leave a known mark. */
function expectPointOutcome(point: CrashPoint, crashLine: CrashLine | undefined, settled: SettledLine): void {
  if (point === "non-idempotent-applied") {
    // The charge the ledger applied and the worker never heard back from is unknown, not retried.
    expect(
      settled.unknown.map((effect) => effect.key),
      "the interrupted charge is unknown",
    ).toContain(crashLine?.detail.key);
  }
  if (point === "after-plan-commit" && crashLine?.detail.tool === "charge") {
    // A charge that was planned but never started is not in doubt: it runs once after recovery.
    const planned = (crashLine.detail.effects as Array<{ effectId: string; actorId: string; tool: string }>).filter(
      (e) => e.tool === "charge",
    );
    for (const effect of planned) {
      expect(
        settled.unknown.some((u) => u.actorId === effect.actorId && u.effectId === effect.effectId),
        `planned charge ${effect.effectId} is not unknown`,
      ).toBe(false);
    }
  }
}

/**
 * Runs one trial.
 *
 * @param options - the crash point, seed, number of runs, store and worker log
 * @returns what the trial observed
 * @throws an assertion error naming the broken promise; the worker log holds the workers' output
 */
export async function runCrashTrial(options: TrialOptions): Promise<TrialResult> {
  const started = performance.now();
  const { point, seed, target } = options;
  const ledger = await startLedger({ port: 0 });
  try {
    const base = workerBase(options, ledger);
    const { crashLine, committed, afterKill, checks } = await crashPhase(options, base);
    const { recovered, openMs, settled } = await recoveryPhase(options, base);
    expectPointOutcome(point, crashLine, settled);
    const reconciled = await reconcile(target, ledger, base.tenantId, settled.unknown, seed);
    const snapshot = ledger.snapshot();
    const verified = await target.withStore(async (store) => {
      const { agents } = makeCrashAgents({ ledgerUrl: ledger.url });
      // Never started: it claims nothing and only reads.
      const reader = createNode({ store, agents, nodeId: `reader-${seed}` });
      try {
        return await verifyRuns(
          reader,
          base.tenantId,
          settled.runs.map((run) => run.runId),
          snapshot,
          reconciled,
        );
      } finally {
        await reader.close();
      }
    });
    if (point === "idempotent-applied" || point === "idempotent-inflight") {
      expect(verified.value.idempotentRepeats, "the interrupted idempotent call was repeated with its key").toBeGreaterThanOrEqual(1);
    }
    return {
      ...verified.value,
      point,
      seed,
      committedBeforeKill: committed.length,
      crashDetail: crashLine?.detail,
      batch: afterKill.value,
      unknown: settled.unknown.length,
      recoveredActors: recovered,
      reopenMs: afterKill.openMs,
      afterKill: checks,
      recoveryOpenMs: openMs,
      recoveryMs: settled.ms,
      totalMs: Math.round(performance.now() - started),
    };
  } finally {
    await ledger.close();
  }
}

/** What {@link crashThenRecover} saw. */
export interface CrashAndRecovery {
  tenantId: string;
  crash: CrashLine;
  /** The recovering worker's `settled` line, or undefined when it did not settle. */
  settled: SettledLine | undefined;
}

/**
 * A self-killing crash followed by one recovering worker, asserting nothing about the outcome: the
 * raw material of tests that pin a known runtime bug down.
 *
 * @param options - the trial, the ledger, and extra arguments of the recovering worker
 * @returns the crash line and the recovering worker's settled line, if any
 * @throws Error when the worker does not reach its crash point
 */
export async function crashThenRecover(
  options: Omit<TrialOptions, "killDelayMs" | "secondKillDelayMs"> & { ledger: Ledger; recovery?: Partial<WorkerArgs> },
): Promise<CrashAndRecovery> {
  const { point, seed, log, ledger } = options;
  const base = workerBase(options, ledger);
  const tenantId = base.tenantId;
  const crashing = log.add(spawnWorker(`${point}#${seed} (crash)`, { ...base, nodeId: `crash-${seed}`, crash: point }));
  const crash = await killAtPoint(crashing, options);
  await crashing.exited;
  if (crash === undefined) throw new Error(`crashThenRecover needs a self-killing crash point, not ${point}`);
  const recovering = log.add(
    spawnWorker(`${point}#${seed} (recovery)`, { ...base, nodeId: `recover-${seed}`, crash: "none", ...options.recovery }),
  );
  const end = await recovering.waitFor((l) => l.event === "settled" || l.event === "error", 90_000);
  await waitForExit(recovering, 30_000);
  return { tenantId, crash, settled: end.event === "settled" ? (end as SettledLine) : undefined };
}
