/**
 * CPU time of the processes on this machine during a cell of `npm run bench:cluster`: PostgreSQL's
 * processes split by whose work they did, NATS, and the whole machine (from /proc).
 */
import { readFile, readdir } from "node:fs/promises";
import type pg from "pg";

/** Clock ticks per second of /proc/<pid>/stat and /proc/stat (USER_HZ). */
const ticksPerSecond = 100;
const microsPerTick = 1_000_000 / ticksPerSecond;

/** Whose work a PostgreSQL process does. */
export type PostgresRole = "nodes" | "poll" | "server" | "others";

/** CPU so far per process, and the machine's totals, at one moment. */
export interface CpuSample {
  /** PostgreSQL processes by pid: CPU so far (µs) and role. */
  postgres: Map<number, { micros: number; role: PostgresRole }>;
  natsMicros: number;
  /** The whole machine (all CPUs), µs: busy (user, nice, system, irq, softirq), stolen by the hypervisor, and all. */
  machine: { busy: number; steal: number; total: number };
}

/** What the processes spent between two samples, in µs. */
export interface CpuSpent {
  postgres: Record<PostgresRole, number>;
  nats: number;
  machineBusy: number;
  machineSteal: number;
  machineTotal: number;
}

/**
 * Samples CPU time. A PostgreSQL backend is the nodes' when its `application_name` is `tag`, the
 * parent's polls' when it is `${tag}_poll`, someone else's for any other client backend; background
 * processes (WAL writer, checkpointer, postmaster, …) are the server's, shared by every client.
 */
export async function sampleCpu(pool: pg.Pool, tag: string): Promise<CpuSample> {
  const { rows } = await pool.query<{ pid: number; backend_type: string | null; application_name: string | null }>(
    "SELECT pid, backend_type, application_name FROM pg_stat_activity",
  );
  const roles = new Map<number, PostgresRole>();
  for (const row of rows) {
    if (row.application_name === tag) roles.set(row.pid, "nodes");
    else if (row.application_name === `${tag}_poll`) roles.set(row.pid, "poll");
    else if (row.backend_type === "client backend") roles.set(row.pid, "others");
  }
  const postgres = new Map<number, { micros: number; role: PostgresRole }>();
  for (const [pid, micros] of await processCpuMicros("postgres")) postgres.set(pid, { micros, role: roles.get(pid) ?? "server" });
  const nats = [...(await processCpuMicros("nats-server")).values()].reduce((a, b) => a + b, 0);
  return { postgres, natsMicros: nats, machine: await machineCpuMicros() };
}

/**
 * CPU spent between two samples. A PostgreSQL process is counted by its pid: one that started in
 * between counts whole, one that ended in between is lost (its last CPU is unknown), so the sums
 * never go negative when other clients connect and disconnect.
 */
export function cpuSpent(before: CpuSample, after: CpuSample): CpuSpent {
  const postgres: Record<PostgresRole, number> = { nodes: 0, poll: 0, server: 0, others: 0 };
  for (const [pid, now] of after.postgres) {
    const then = before.postgres.get(pid);
    // A client role seen in either sample wins: a process seen only outside pg_stat_activity is the server's.
    const role = now.role !== "server" ? now.role : (then?.role ?? "server");
    postgres[role] += now.micros - (then?.micros ?? 0);
  }
  return {
    postgres,
    nats: after.natsMicros - before.natsMicros,
    machineBusy: after.machine.busy - before.machine.busy,
    machineSteal: after.machine.steal - before.machine.steal,
    machineTotal: after.machine.total - before.machine.total,
  };
}

/**
 * Waits until the machine is nearly idle (busy below `busyMax` of all CPUs over half a second), at
 * most `timeoutMs`: other work on a shared machine would otherwise be measured as ours.
 *
 * @returns how long it waited (ms) and the busy share of the last half second
 */
export async function waitForQuiet(options: { busyMax: number; timeoutMs: number }): Promise<{ waitedMs: number; busy: number }> {
  const started = performance.now();
  for (;;) {
    const before = await machineCpuMicros();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const after = await machineCpuMicros();
    const busy = (after.busy - before.busy) / (after.total - before.total);
    const waitedMs = Math.round(performance.now() - started);
    if (busy < options.busyMax || waitedMs >= options.timeoutMs) return { waitedMs, busy };
  }
}

/** CPU time (user + system, µs) of each process whose name starts with `prefix`, by pid. */
async function processCpuMicros(prefix: string): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (!(await readFile(`/proc/${pid}/comm`, "utf8")).startsWith(prefix)) continue;
      const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
      // utime and stime are fields 14 and 15 of /proc/<pid>/stat (11 and 12 after the comm).
      out.set(Number(pid), (Number(fields[11]) + Number(fields[12])) * microsPerTick);
    } catch {
      // The process ended while we read it.
    }
  }
  return out;
}

/** The `cpu` line of /proc/stat, in µs. */
async function machineCpuMicros(): Promise<{ busy: number; steal: number; total: number }> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n")[0]!;
  // cpu user nice system idle iowait irq softirq steal (guest time is already in user and nice).
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
  const busy = user! + nice! + system! + irq! + softirq!;
  return { busy: busy * microsPerTick, steal: steal! * microsPerTick, total: (busy + idle! + iowait! + steal!) * microsPerTick };
}
