/**
 * What a cluster node worker (`test/cluster/node-worker.ts`) and the test that runs it say to each
 * other: the worker's flags, the commands it takes over the IPC channel and its replies, and the
 * JSON lines it prints on stdout.
 */

/** The flags of a node worker. */
export interface NodeWorkerArgs {
  /** PostgreSQL schema of the test (already migrated by the test). */
  schema: string;
  nodeId: string;
  /** NATS URL; without it the node has no transport and finds its work through the store only. */
  natsUrl?: string;
  /** Subject prefix of the test, so that tests sharing a NATS server never hear each other. */
  subjectPrefix: string;
  ledgerUrl: string;
  /** `delayMs` asked of the ledger for every charge: the answer comes that late, the charge is applied at once. */
  ledgerDelayMs?: number;
  tenantId: string;
  leaseTtlMs: number;
  renewIntervalMs: number;
  sweepIntervalMs: number;
  idleMs: number;
  residentActorsMax: number;
  /** Connections of the node's pg pool. */
  poolSize?: number;
}

/** A run to start. */
export interface RunSpec {
  runId: string;
  pingsNeeded: number;
}

/** An event to send. */
export interface EventSpec {
  actorId: string;
  type: string;
  messageId: string;
}

/** Commands from the test to a worker (each with an id its reply repeats). */
export type WorkerCommand =
  | { id: number; op: "startRuns"; runs: RunSpec[] }
  | { id: number; op: "sendEvents"; events: EventSpec[] }
  | { id: number; op: "stats" }
  | { id: number; op: "drain"; graceMs: number }
  | { id: number; op: "close" };

/** A failure of one item of a batch. */
export interface ItemError {
  id: string;
  code: string;
  message: string;
}

/** The cluster counters of a node, as the runtime reports them. */
export type { ClusterStats } from "../../actors/node.js";
import type { ClusterStats } from "../../actors/node.js";

/** What a worker answers to `stats`. */
export interface WorkerStats {
  nodeId: string;
  clusterStats: ClusterStats;
  residentActors: number;
  commitStats: { batches: number; commits: number; largestBatch: number };
  /** The pg store's counters: transactions, statements, round trips, serialization retries. */
  storeStats: { transactions: number; statements: number; roundTrips: number; retries: number };
  /** The NATS transport's status, when the worker has one. */
  transport: unknown;
}

/** Attempts a worker repeated after a retryable error (`ERR_STORE_RETRYABLE`, …), as a client would. */
export interface Retried {
  retries: number;
  /** Retryable errors seen, by code. */
  retriedCodes: Record<string, number>;
}

/** Results per command. */
export interface CommandResults {
  startRuns: { created: number; existing: number; errors: ItemError[]; ms: number } & Retried;
  sendEvents: { accepted: number; duplicate: number; errors: ItemError[]; ms: number } & Retried;
  stats: WorkerStats;
  drain: { ms: number; stats: WorkerStats };
  close: { ms: number; stats: WorkerStats };
}

/** A worker's reply to a command. */
export type WorkerReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: { code: string; message: string } };

/** The JSON lines a worker prints on stdout. `at` is the wall clock (ms since the epoch). */
export type WorkerLine =
  | { event: "ready"; nodeId: string; pid: number; recovered: number; startMs: number; at: number }
  /** A charge request is about to leave (the lease check has passed). */
  | { event: "tool"; nodeId: string; actorId: string; key: string; epoch: number; attempt: number; n: number; at: number }
  /** The node's own view of its lease changed (polled every 20 ms). */
  | { event: "lease"; nodeId: string; holdsLease: boolean; at: number }
  | { event: "error"; message: string; at: number };
