/**
 * The parent side of crash tests: spawns a worker process, reads its JSON lines, waits for one,
 * kills it, and keeps its stderr so that a failing test can show what the worker said.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { WorkerArgs, WorkerLine } from "./protocol.js";

/**
 * Workers still running. When the test process exits (a test timed out and the run ended, or the
 * fork was stopped), they are killed with it instead of running on against a closed ledger.
 */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** The repository root, where the worker runs (so that `tsx` and `node_modules` resolve). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const workerPath = path.join(repoRoot, "test/crash/worker.ts");

/** How a worker process ended. */
export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running (or finished) worker process. */
export interface WorkerProcess {
  readonly name: string;
  readonly pid: number;
  /** Every JSON line printed so far, in order. */
  readonly lines: WorkerLine[];
  /** Resolves when the process has exited. */
  readonly exited: Promise<WorkerExit>;
  /**
   * Waits for the first line (printed so far or later) that `match` accepts.
   *
   * @throws Error with the worker's output when it exits first or `timeoutMs` passes
   */
  waitFor<T extends WorkerLine>(match: (line: WorkerLine) => line is T, timeoutMs: number): Promise<T>;
  waitFor(match: (line: WorkerLine) => boolean, timeoutMs: number): Promise<WorkerLine>;
  /** SIGKILLs the process (if still running) and waits for it to exit. */
  kill(): Promise<WorkerExit>;
  /** The worker's stderr and stdout so far, for failure messages. */
  describe(): string;
}

/** Collects the output of every worker a test ran, to show it when the test fails. */
export class WorkerLog {
  readonly #workers: WorkerProcess[] = [];

  add(worker: WorkerProcess): WorkerProcess {
    this.#workers.push(worker);
    return worker;
  }

  /** The output of every worker, oldest first. */
  describe(): string {
    return this.#workers.map((worker) => worker.describe()).join("\n\n");
  }

  /** Kills every worker still running (after a failed test). */
  async killAll(): Promise<void> {
    await Promise.all(this.#workers.map((worker) => worker.kill()));
  }
}

function flagsOf(args: WorkerArgs): string[] {
  const flags = ["--store", args.store, "--schema", args.schema, "--ledger", args.ledgerUrl, "--node", args.nodeId, "--crash", args.crash];
  flags.push("--seed", String(args.seed), "--runs", String(args.runs), "--tenant", args.tenantId);
  if (args.dataDir !== undefined) flags.push("--data-dir", args.dataDir);
  for (const [tool, ms] of Object.entries(args.ledgerDelayMs ?? {})) flags.push("--delay", `${tool}=${ms}`);
  if (args.groupKill !== undefined) flags.push("--group-kill", args.groupKill);
  if (args.slowRead !== undefined) flags.push("--slow-read", `${args.slowRead.prefix}=${args.slowRead.delayMs}`);
  if (args.settleTimeoutMs !== undefined) flags.push("--settle-timeout", String(args.settleTimeoutMs));
  return flags;
}

/**
 * Starts a worker. It runs as `node --import tsx test/crash/worker.ts`, the same program as
 * `npx tsx test/crash/worker.ts` but without the `tsx` launcher process in between: the launcher
 * runs the program in a child of its own, so a SIGKILL sent to the launcher's pid would leave the
 * real worker running.
 *
 * @param name - a label for messages, e.g. "trial 3 crash"
 * @param args - the worker's arguments
 * @returns the running worker
 */
export function spawnWorker(name: string, args: WorkerArgs): WorkerProcess {
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", workerPath, ...flagsOf(args)], {
    cwd: repoRoot,
    env: { ...process.env, DATABASE_URL: args.databaseUrl ?? process.env.DATABASE_URL ?? "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const lines: WorkerLine[] = [];
  const raw: string[] = [];
  let stderr = "";
  const listeners = new Set<() => void>();
  let exit: WorkerExit | undefined;
  const exited = new Promise<WorkerExit>((resolve) => {
    child.once("exit", (code, signal) => {
      running.delete(child);
      exit = { code, signal };
      resolve(exit);
    });
  });
  // Lines may still be buffered in the pipe when the process exits; `close` comes after them.
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  void closed.then(() => {
    for (const wake of [...listeners]) wake();
  });
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    // Bounded: a runaway worker must not exhaust the test's memory.
    if (stderr.length < 1_000_000) stderr += chunk;
  });
  createInterface({ input: child.stdout! }).on("line", (text) => {
    raw.push(text);
    try {
      lines.push(JSON.parse(text) as WorkerLine);
    } catch {
      // Not a protocol line (a stray console.log): kept in `raw` for the description.
    }
    for (const wake of [...listeners]) wake();
  });
  let isClosed = false;
  void closed.then(() => (isClosed = true));

  const describe = (): string => {
    const status = exit === undefined ? "running" : `exited code=${exit.code} signal=${exit.signal}`;
    const tail = raw.slice(-40).join("\n");
    return `--- worker ${name} (pid ${child.pid}, ${status})\n--- stdout (last 40 lines of ${raw.length}):\n${tail}\n--- stderr:\n${stderr.slice(-8000)}`;
  };

  function waitFor(match: (line: WorkerLine) => boolean, timeoutMs: number): Promise<WorkerLine> {
    return new Promise<WorkerLine>((resolve, reject) => {
      const check = (): void => {
        const found = lines.find(match);
        if (found !== undefined) {
          dispose();
          resolve(found);
        } else if (isClosed) {
          dispose();
          reject(new Error(`worker ${name} exited before the awaited line\n${describe()}`));
        }
      };
      const timer = setTimeout(() => {
        dispose();
        reject(new Error(`worker ${name}: no awaited line within ${timeoutMs} ms\n${describe()}`));
      }, timeoutMs);
      const dispose = (): void => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });
  }

  return {
    name,
    pid: child.pid ?? -1,
    lines,
    exited: exited.then(async (result) => {
      await closed;
      return result;
    }),
    waitFor: waitFor as WorkerProcess["waitFor"],
    async kill() {
      if (exit === undefined) child.kill("SIGKILL");
      const result = await exited;
      await closed;
      return result;
    },
    describe,
  };
}

/**
 * Waits for a worker to exit by itself.
 *
 * @param worker - the worker
 * @param timeoutMs - how long to wait before killing it and failing
 * @returns how it exited
 * @throws Error with the worker's output when it does not exit in time
 */
export async function waitForExit(worker: WorkerProcess, timeoutMs: number): Promise<WorkerExit> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  const result = await Promise.race([worker.exited, timeout]);
  clearTimeout(timer);
  if (result === "timeout") {
    await worker.kill();
    throw new Error(`worker ${worker.name} did not exit within ${timeoutMs} ms\n${worker.describe()}`);
  }
  return result;
}

/** Type guard helpers for {@link WorkerProcess.waitFor}. */
export const lineIs =
  <E extends WorkerLine["event"]>(event: E) =>
  (line: WorkerLine): line is Extract<WorkerLine, { event: E }> =>
    line.event === event;

/**
 * Every step a worker printed as committed.
 *
 * @param worker - the worker
 * @returns `[actorId, seq]` pairs
 */
export function committedSteps(worker: WorkerProcess): Array<[string, number]> {
  return worker.lines.flatMap((line) => (line.event === "committed" || line.event === "batch-landed" ? line.steps : []));
}

/** Milliseconds to wait, as a promise. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
