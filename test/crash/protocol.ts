/**
 * What a crash worker and the test that runs it say to each other: the crash points, the
 * worker's arguments, and the JSON lines it prints on stdout.
 */

/**
 * Where a worker dies. All but `idempotent-inflight` and `random` are reached by the worker itself,
 * which SIGKILLs its own process; those two are killed by the parent test.
 *
 * 1. `after-plan-commit`: a step that planned an effect committed; the effect was not dispatched.
 * 2. `idempotent-inflight`: an idempotent tool call is in flight (the ledger answers late).
 * 3. `idempotent-applied`: the ledger applied an idempotent call; its result was not committed.
 * 4. `non-idempotent-applied`: the ledger applied a charge; the result never reached the runtime.
 * 5. `timer-fire`: the commit applying a timer firing was submitted and had not landed.
 * 6. `spawn-child`: the commit creating a child landed; the child took no step.
 * 7. `group-commit`: a batch of several actors' commits was in flight (or had just landed).
 * 8. `random`: the parent kills at a chosen delay.
 */
export const crashPoints = [
  "after-plan-commit",
  "idempotent-inflight",
  "idempotent-applied",
  "non-idempotent-applied",
  "timer-fire",
  "spawn-child",
  "group-commit",
  "random",
] as const;

/** A crash point, or `none` for a worker that must run to the end. */
export type CrashPoint = (typeof crashPoints)[number] | "none";

/** The arguments of `test/crash/worker.ts`, passed as command-line flags. */
export interface WorkerArgs {
  /** Which store the worker opens. */
  store: "pg" | "pglite";
  /** PostgreSQL URL (`pg` only); given to the worker as `DATABASE_URL`. */
  databaseUrl?: string;
  /** The schema of the test file. */
  schema: string;
  /** PGlite data directory (`pglite` only). */
  dataDir?: string;
  ledgerUrl: string;
  nodeId: string;
  crash: CrashPoint;
  /** Picks which occurrence of the crash point kills the worker, and its variant. */
  seed: number;
  /** Runs started, with idempotency keys `run-<seed>-<i>`. */
  runs: number;
  tenantId: string;
  /** `delayMs` asked of the ledger per tool, e.g. `{ lookup: 1500 }`. */
  ledgerDelayMs?: Partial<Record<"lookup" | "reserve" | "charge", number>>;
  /** Delays the store's `listTimers` for actor ids with this prefix (see `CrashContext.slowRead`). */
  slowRead?: { prefix: string; delayMs: number };
  /** When a `group-commit` worker dies: `ms:N`, `turns:N` or `resolve` (see `GroupKill`). */
  groupKill?: string;
  /** How long the worker waits for its runs to settle, in milliseconds. */
  settleTimeoutMs?: number;
}

/** A step the worker saw committed: `[actorId, seq]`. */
export type CommittedStep = [actorId: string, seq: number];

/** An effect the worker found `unknown`, waiting for reconciliation. */
export interface UnknownEffect {
  runId: string;
  actorId: string;
  effectId: string;
  tool: string;
  key: string;
}

/** The JSON lines a worker prints, one per line. */
export type WorkerLine =
  | { event: "open"; storeKind: string; openMs: number }
  | { event: "ready"; nodeId: string; recovered: number; startMs: number }
  | { event: "run"; index: number; runId: string; created: boolean }
  | { event: "committed"; steps: CommittedStep[] }
  | {
      event: "tool";
      phase: "start" | "answer";
      tool: string;
      key: string;
      actorId: string;
      effectId: string;
      epoch: number;
      attempt: number;
      applied?: boolean;
    }
  | { event: "crash"; point: CrashPoint; detail: Record<string, unknown> }
  | { event: "batch-landed"; steps: CommittedStep[] }
  | {
      event: "settled";
      runs: Array<{ index: number; runId: string; status: string; revision: number }>;
      unknown: UnknownEffect[];
      ms: number;
    }
  | { event: "error"; message: string };

/**
 * The run keys a worker of `seed` starts.
 *
 * @param seed - the trial seed
 * @param index - the run's index
 * @returns the idempotency key of the run
 */
export function runKeyOf(seed: number, index: number): string {
  return `run-${seed}-${index}`;
}

/**
 * The input of a run.
 *
 * @param seed - the trial seed
 * @param index - the run's index
 * @returns the order the run handles
 */
export function runInputOf(seed: number, index: number): { orderId: string } {
  return { orderId: `o-${seed}-${index}` };
}
