/**
 * A Store that dies on purpose: it delegates every call to the real store, prints what committed,
 * and SIGKILLs its own process at the crash points that live on the commit path.
 */
import type { CommitOutcome, StepCommit, Store } from "../../core/ports/store.js";
import type { CommittedStep, CrashPoint, WorkerLine } from "./protocol.js";
import { armSqlKill, type SqlKill } from "./sql-kill.js";

/** What {@link wrapStore} needs from the worker. */
export interface CrashContext {
  point: CrashPoint;
  seed: number;
  print(line: WorkerLine): void;
  /** Prints the crash line and SIGKILLs this process; never returns. */
  crash(detail: Record<string, unknown>): never;
  /**
   * Delays `listTimers` of actors whose id starts with `prefix`: a slow store read (a busy pool), the
   * one a node makes while it activates an actor, between reading its mailbox and going resident.
   */
  slowRead?: { prefix: string; delayMs: number };
  /** When a `group-commit` worker dies. @defaultValue "ms:0" */
  groupKill?: GroupKill;
}

/** The tool whose planning commit kills a worker at `after-plan-commit`, by seed. */
export function plannedToolOf(seed: number): string {
  return (["lookup", "reserve", "charge"] as const)[seed % 3]!;
}

/**
 * When a `group-commit` worker dies after handing its batch to the store: `ms:N` after N
 * milliseconds, `turns:N` after N turns of the event loop (PGlite runs a whole batch within the
 * first turn, so only `turns:0` lands before it), `resolve` as soon as the store reports the batch committed,
 * `sql:<point>` at a statement of the batch's transaction (see {@link SqlKill}).
 */
export type GroupKill = `ms:${number}` | `turns:${number}` | "resolve" | `sql:${SqlKill}`;

/** Parses a {@link GroupKill}. @throws Error when it is not one */
export function parseGroupKill(text: string): GroupKill {
  if (text === "resolve" || /^(ms|turns):\d{1,5}$/.test(text)) return text as GroupKill;
  if (/^sql:(after-insert|before-commit|commit-sent)$/.test(text)) return text as GroupKill;
  throw new Error(`--group-kill must be ms:N, turns:N, resolve or sql:after-insert|before-commit|commit-sent, not ${text}`);
}

/** Calls `then` after `turns` turns of the event loop. */
function afterTurns(turns: number, then: () => void): void {
  if (turns <= 0) return then();
  setImmediate(() => afterTurns(turns - 1, then));
}

/** Commits a group-commit crash waits for in one batch. */
export const groupBatchMin = 3;

function stepsOf(commits: readonly StepCommit[], outcomes?: readonly CommitOutcome[]): CommittedStep[] {
  return commits.filter((_, i) => outcomes === undefined || outcomes[i]?.ok === true).map((c) => [c.actorId, c.entry.seq]);
}

/** Statements the SQL store has sent so far (its live `stats`), or 0 for another store. */
function statementsOf(store: Store): number {
  return (store as Partial<{ stats: { statements: number } }>).stats?.statements ?? 0;
}

function eventTypeOf(commit: StepCommit): string {
  const event = commit.entry.event as { type?: unknown } | null;
  return typeof event?.type === "string" ? event.type : "";
}

/**
 * Wraps a store for a crash worker. Methods other than `commitSteps` go straight to the real
 * store, bound to it (the SQL store keeps private fields, which a Proxy receiver cannot reach).
 *
 * @param store - the real store
 * @param context - the crash point, the seed, and how to print and die
 * @returns a store with the same behaviour, until the crash point kills the process
 */
export function wrapStore(store: Store, context: CrashContext): Store {
  const plannedTool = plannedToolOf(context.seed);

  async function commitSteps(commits: readonly StepCommit[]): Promise<CommitOutcome[]> {
    if (context.point === "timer-fire" && commits.some((c) => eventTypeOf(c).startsWith("timer."))) {
      context.crash({ batch: stepsOf(commits), timers: commits.filter((c) => eventTypeOf(c).startsWith("timer.")).map((c) => c.actorId) });
    }
    // The first batch big enough: on PGlite, whose commits take microseconds, later batches rarely
    // hold more than one commit.
    if (context.point === "group-commit" && commits.length >= groupBatchMin) {
      return dieDuringBatch(commits);
    }
    const outcomes = await store.commitSteps(commits);
    context.print({ event: "committed", steps: stepsOf(commits, outcomes) });
    const landed = commits.filter((_, i) => outcomes[i]?.ok === true);
    if (
      context.point === "after-plan-commit" &&
      landed.some((c) => c.effects.some((e) => e.state !== "failed" && e.name === plannedTool))
    ) {
      // A step's new effects: non-idempotent ones committed `planned`, idempotent ones `running`
      // with their first attempt counted (dispatch follows the commit).
      const effects = landed.flatMap((c) =>
        c.effects
          .filter((e) => e.state !== "failed")
          .map((e) => ({ actorId: c.actorId, effectId: e.effectId, tool: e.name, state: e.state, attempts: e.attempts })),
      );
      context.crash({ tool: plannedTool, effects });
    }
    if (context.point === "spawn-child" && landed.some((c) => c.children.length > 0)) {
      context.crash({ children: landed.flatMap((c) => c.children.map((child) => child.actorId)) });
    }
    return outcomes;
  }

  /**
   * Hands the batch to the store and dies before the runtime learns its outcome. The crash line
   * tells how many SQL statements the store sent meanwhile (the batch's BEGIN, guard, insert and
   * COMMIT, and those of concurrent reads) and whether the batch had resolved.
   */
  function dieDuringBatch(commits: readonly StepCommit[]): Promise<CommitOutcome[]> {
    const batch = stepsOf(commits);
    const kill = context.groupKill ?? "ms:0";
    const statementsBefore = statementsOf(store);
    let resolved = false;
    const die = (detail: Record<string, unknown> = {}): never =>
      context.crash({ ...detail, batch, kill, resolved, statements: statementsOf(store) - statementsBefore });
    // Armed before the batch goes out: its first statement may be sent at once.
    if (kill.startsWith("sql:")) armSqlKill(kill.slice(4) as SqlKill, die);
    const inner = store.commitSteps(commits);
    void inner.then((outcomes) => {
      resolved = true;
      if (kill !== "resolve") return;
      context.print({ event: "batch-landed", steps: stepsOf(commits, outcomes) });
      die();
    });
    if (kill.startsWith("ms:")) setTimeout(() => die(), Number(kill.slice(3)));
    if (kill.startsWith("turns:")) afterTurns(Number(kill.slice(6)), () => die());
    // The runtime never sees this batch resolve: the process is gone first.
    return new Promise<CommitOutcome[]>(() => undefined);
  }

  async function listTimersSlowly(tenantId: string, actorId: string): ReturnType<Store["listTimers"]> {
    const slow = context.slowRead;
    if (slow !== undefined && actorId.startsWith(slow.prefix)) await new Promise((resolve) => setTimeout(resolve, slow.delayMs));
    return store.listTimers(tenantId, actorId);
  }

  return new Proxy(store, {
    get(target, property) {
      if (property === "commitSteps") return commitSteps;
      if (property === "listTimers" && context.slowRead !== undefined) return listTimersSlowly;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
