/**
 * A cluster node worker process as its test sees it: spawned as `node --import tsx
 * test/cluster/node-worker.ts` with an IPC channel, its JSON lines and log lines collected,
 * commands sent and answered over IPC, signals sent (SIGKILL, SIGSTOP, SIGCONT).
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { databaseUrl } from "../helpers/services.js";
import type { CommandResults, NodeWorkerArgs, WorkerCommand, WorkerLine, WorkerReply } from "./protocol.js";

/** Node processes still running; killed with the test process, whatever ended it. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** The repository root, where workers run (so that `tsx` and `node_modules` resolve). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const workerPath = path.join(repoRoot, "test/cluster/node-worker.ts");
/** Bytes of a worker's stderr kept (the newest). */
const stderrBytesMax = 200_000;
/** Log lines of a worker kept, parsed. */
const logLinesMax = 50_000;

/** How a worker process ended. */
export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

type ReadyLine = Extract<WorkerLine, { event: "ready" }>;

/** A running (or finished) node worker. */
export class ClusterWorker {
  readonly nodeId: string;
  readonly child: ChildProcess;
  /** Every JSON line printed so far, in order. */
  readonly lines: WorkerLine[] = [];
  /** The node's log lines (level, message, wall-clock time), the first {@link logLinesMax}. */
  readonly logs: Array<{ level: string; msg: string; time: number }> = [];
  /** Resolves when the process has exited and its output is read. */
  readonly exited: Promise<WorkerExit>;
  /** Resolves with the ready line; rejects when the worker exits first. */
  readonly ready: Promise<ReadyLine>;
  #stderr = "";
  #exit: WorkerExit | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();

  /** Sees every successful reply (the test tallies the retries its clients made). */
  readonly #onReply: (result: unknown) => void;

  constructor(nodeId: string, args: NodeWorkerArgs, onReply: (result: unknown) => void = () => {}) {
    this.nodeId = nodeId;
    this.#onReply = onReply;
    this.child = spawn(process.execPath, ["--import", "tsx", workerPath, ...flagsOf(args)], {
      cwd: repoRoot,
      env: { ...process.env, DATABASE_URL: databaseUrl },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    running.add(this.child);
    const exitedRaw = new Promise<WorkerExit>((resolve) => {
      this.child.once("exit", (code, signal) => {
        running.delete(this.child);
        this.#exit = { code, signal };
        for (const pending of this.#pending.values())
          pending.reject(new Error(`node ${nodeId} exited (${code ?? signal}) before replying`));
        this.#pending.clear();
        resolve(this.#exit);
      });
    });
    // Lines may still be in the pipe when the process exits; `close` comes after them.
    const closed = new Promise<void>((resolve) => this.child.once("close", () => resolve()));
    this.exited = exitedRaw.then(async (exit) => {
      await closed;
      return exit;
    });
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (chunk: string) => {
      this.#stderr += chunk;
      if (this.#stderr.length > stderrBytesMax) this.#stderr = this.#stderr.slice(-stderrBytesMax / 2);
    });
    // The node's JSON log lines, parsed (bounded): tests count what a node said, and when.
    createInterface({ input: this.child.stderr! }).on("line", (text) => {
      if (this.logs.length >= logLinesMax || !text.startsWith("{")) return;
      try {
        const line = JSON.parse(text) as { level?: unknown; msg?: unknown; time?: unknown };
        if (typeof line.msg === "string") this.logs.push({ level: String(line.level), msg: line.msg, time: Number(line.time) });
      } catch {
        // Not a log line of ours: it stays in the stderr tail.
      }
    });
    let onReady: (line: ReadyLine) => void = () => {};
    this.ready = new Promise<ReadyLine>((resolve, reject) => {
      onReady = resolve;
      void this.exited.then((exit) =>
        reject(new Error(`node ${nodeId} exited (${exit.code ?? exit.signal}) before it was ready\n${this.describe()}`)),
      );
    });
    // A rejection nobody awaits yet (a worker killed later) must not count as unhandled.
    this.ready.catch(() => {});
    createInterface({ input: this.child.stdout! }).on("line", (text) => {
      let line: WorkerLine;
      try {
        line = JSON.parse(text) as WorkerLine;
      } catch {
        this.#stderr += `[stdout] ${text}\n`;
        return;
      }
      this.lines.push(line);
      if (line.event === "ready") onReady(line);
    });
    this.child.on("message", (raw: unknown) => {
      const reply = raw as WorkerReply;
      const pending = this.#pending.get(reply.id);
      if (pending === undefined) return;
      this.#pending.delete(reply.id);
      if (reply.ok) {
        this.#onReply(reply.result);
        pending.resolve(reply.result);
      } else pending.reject(new Error(`node ${nodeId}: ${reply.error.code}: ${reply.error.message}`));
    });
    // A send to a process that just died fails with EPIPE: the exit handler rejects what is pending.
    this.child.on("error", () => {});
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Whether the process is still running (or stopped). */
  get alive(): boolean {
    return this.#exit === undefined;
  }

  /**
   * Sends a command and waits for its reply.
   *
   * @throws Error when the worker answers with an error, exits, or does not answer within `timeoutMs`
   */
  request<K extends WorkerCommand["op"]>(
    op: K,
    body: Omit<Extract<WorkerCommand, { op: K }>, "id" | "op">,
    timeoutMs = 60_000,
  ): Promise<CommandResults[K]> {
    if (!this.alive) return Promise.reject(new Error(`node ${this.nodeId} is not running`));
    const id = this.#nextId++;
    return new Promise<CommandResults[K]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`node ${this.nodeId}: no reply to ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as CommandResults[K]);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.child.send({ ...body, id, op } as WorkerCommand, (error) => {
        if (error === null || error === undefined) return;
        this.#pending.delete(id);
        clearTimeout(timer);
        reject(new Error(`node ${this.nodeId}: could not send ${op}: ${error.message}`));
      });
    });
  }

  /** Sends a signal (SIGKILL, SIGSTOP, SIGCONT) if the process is still there. */
  signal(signal: "SIGKILL" | "SIGSTOP" | "SIGCONT"): void {
    if (this.alive) this.child.kill(signal);
  }

  /** SIGKILLs the process (a stopped one too) and waits for it to exit. */
  async kill(): Promise<WorkerExit> {
    this.signal("SIGKILL");
    return this.exited;
  }

  /** The worker's error lines and the tail of its stderr, for failure messages. */
  describe(): string {
    const errors = this.lines.filter((line) => line.event === "error").map((line) => JSON.stringify(line));
    const exit = this.#exit === undefined ? "running" : `exited ${this.#exit.code ?? this.#exit.signal}`;
    return `--- node ${this.nodeId} (pid ${this.pid}, ${exit}) ---\n${errors.join("\n")}\n${this.#stderr.slice(-4000)}`;
  }
}

function flagsOf(args: NodeWorkerArgs): string[] {
  const flags = ["--schema", args.schema, "--node", args.nodeId, "--subject-prefix", args.subjectPrefix, "--ledger", args.ledgerUrl];
  flags.push("--tenant", args.tenantId, "--lease-ttl-ms", String(args.leaseTtlMs), "--renew-ms", String(args.renewIntervalMs));
  flags.push(
    "--sweep-ms",
    String(args.sweepIntervalMs),
    "--idle-ms",
    String(args.idleMs),
    "--resident-max",
    String(args.residentActorsMax),
  );
  if (args.natsUrl !== undefined) flags.push("--nats", args.natsUrl);
  if (args.ledgerDelayMs !== undefined) flags.push("--ledger-delay-ms", String(args.ledgerDelayMs));
  if (args.poolSize !== undefined) flags.push("--pool-size", String(args.poolSize));
  return flags;
}
