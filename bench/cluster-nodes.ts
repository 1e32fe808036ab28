/**
 * The parent side of `npm run bench:cluster`: node processes (bench/cluster-node.ts) spawned with
 * `node --import tsx` and an IPC channel, commanded over it, closed, and killed with the bench
 * whatever ends it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { NodeCommand, NodeReply, NodeResults, NodeStats } from "./cluster-node.js";

/** The repository root, where nodes run (so that `tsx` and `node_modules` resolve). */
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const nodePath = path.join(repoRoot, "bench/cluster-node.ts");
/** Bytes of a node's stderr kept (the newest). */
const stderrBytesMax = 64_000;

/** Node processes still running: killed when the bench process exits, however it exits. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Where a node finds its services and what it is called. */
export interface BenchNodeOptions {
  nodeId: string;
  schema: string;
  databaseUrl: string;
  natsUrl: string;
  subjectPrefix: string;
  /** Connections of the node's pg pool. */
  poolSize: number;
}

/** A running node process. */
export class BenchNode {
  readonly nodeId: string;
  readonly child: ChildProcess;
  /** Resolves once the node has started (registered, lease held); rejects if it exits first. */
  readonly ready: Promise<{ pid: number; startMs: number }>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  /** Lines the node wrote to stderr (its warnings and errors), counted. */
  stderrLines = 0;
  #stderr = "";
  #alive = true;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();

  constructor(options: BenchNodeOptions) {
    this.nodeId = options.nodeId;
    const flags = ["--schema", options.schema, "--node", options.nodeId, "--nats", options.natsUrl];
    flags.push("--subject-prefix", options.subjectPrefix, "--pool-size", String(options.poolSize));
    this.child = spawn(process.execPath, ["--import", "tsx", nodePath, ...flags], {
      cwd: repoRoot,
      env: { ...process.env, DATABASE_URL: options.databaseUrl },
      stdio: ["ignore", "ignore", "pipe", "ipc"],
    });
    running.add(this.child);
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (chunk: string) => {
      this.stderrLines += chunk.split("\n").length - 1;
      this.#stderr = (this.#stderr + chunk).slice(-stderrBytesMax);
    });
    let onReady: (ready: { pid: number; startMs: number }) => void = () => {};
    let onFail: (error: Error) => void = () => {};
    this.ready = new Promise((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    this.ready.catch(() => {});
    this.exited = new Promise<void>((resolve) => {
      this.child.once("exit", (code, signal) => {
        running.delete(this.child);
        this.#alive = false;
        const error = new Error(`node ${this.nodeId} exited (${code ?? signal})\n${this.#stderr.slice(-4000)}`);
        onFail(error);
        for (const pending of this.#pending.values()) pending.reject(error);
        this.#pending.clear();
        resolve();
      });
    });
    this.child.on("message", (raw: unknown) => {
      const reply = raw as NodeReply;
      if ("ready" in reply) return onReady(reply.ready);
      const pending = this.#pending.get(reply.id);
      if (pending === undefined) return;
      this.#pending.delete(reply.id);
      if (reply.ok) pending.resolve(reply.result);
      else pending.reject(new Error(`node ${this.nodeId}: ${reply.error.code}: ${reply.error.message}`));
    });
    // A send to a process that just died fails with EPIPE: the exit handler rejects what is pending.
    this.child.on("error", () => {});
  }

  /**
   * Sends a command and waits for its reply.
   *
   * @throws Error when the node answers with an error, exits, or does not answer within `timeoutMs`
   */
  request<K extends NodeCommand["op"]>(
    op: K,
    body: Omit<Extract<NodeCommand, { op: K }>, "id" | "op">,
    timeoutMs: number,
  ): Promise<NodeResults[K]> {
    if (!this.#alive) return Promise.reject(new Error(`node ${this.nodeId} is not running`));
    const id = this.#nextId++;
    return new Promise<NodeResults[K]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`node ${this.nodeId}: no reply to ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as NodeResults[K]);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.child.send({ ...body, id, op } as NodeCommand, (error) => {
        if (error === null || error === undefined) return;
        this.#pending.delete(id);
        clearTimeout(timer);
        reject(new Error(`node ${this.nodeId}: could not send ${op}: ${error.message}`));
      });
    });
  }

  /** The node's CPU time and counters. */
  stats(): Promise<NodeStats> {
    return this.request("stats", {}, 10_000);
  }

  /** Closes the node (it marks itself stopped in the registry) and waits for the process to end; kills it if that takes too long. */
  async close(): Promise<void> {
    if (!this.#alive) return;
    await this.request("close", {}, 15_000).catch(() => undefined);
    const timer = setTimeout(() => this.kill(), 5_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** SIGKILLs the process if it is still there. */
  kill(): void {
    if (this.#alive) this.child.kill("SIGKILL");
  }

  /** The tail of the node's stderr, for failure messages. */
  describe(): string {
    return `--- node ${this.nodeId} (pid ${this.child.pid ?? "?"}, ${this.#alive ? "running" : "exited"}) ---\n${this.#stderr.slice(-4000)}`;
  }
}

/**
 * Starts `nodeIds` and waits until each is ready and hashes over all of them (its own list of live
 * nodes, read at registration and renewals and updated by join notices, has them all).
 *
 * @throws Error when a node fails to start or the nodes do not see each other within 30 s
 */
export async function startNodes(nodeIds: readonly string[], options: Omit<BenchNodeOptions, "nodeId">): Promise<BenchNode[]> {
  const nodes = nodeIds.map((nodeId) => new BenchNode({ ...options, nodeId }));
  try {
    await Promise.all(nodes.map((node) => node.ready));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const views = await Promise.all(nodes.map((node) => node.stats()));
      if (views.every((view) => nodeIds.every((id) => view.liveNodes.includes(id)) && view.liveNodes.length === nodeIds.length)) break;
      if (Date.now() > deadline)
        throw new Error(`nodes do not see each other: ${JSON.stringify(views.map((v) => [v.nodeId, v.liveNodes]))}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return nodes;
  } catch (error) {
    for (const node of nodes) node.kill();
    if (error instanceof Error) error.message += `\n${nodes.map((node) => node.describe()).join("\n")}`;
    throw error;
  }
}
