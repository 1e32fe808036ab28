import { readFile, readdir } from "node:fs/promises";
import os from "node:os";
import type pg from "pg";

/** What the run was measured on. */
export async function machineInfo(pool: pg.Pool): Promise<Record<string, string>> {
  const setting = async (name: string): Promise<string> =>
    ((await pool.query(`SHOW ${name}`)).rows[0] as Record<string, string>)[name] ?? "?";
  return {
    cpus: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "?"}`,
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    node: process.version,
    postgres: ((await pool.query("SHOW server_version")).rows[0] as { server_version: string }).server_version,
    fsync: await setting("fsync"),
    synchronous_commit: await setting("synchronous_commit"),
    wal_sync_method: await setting("wal_sync_method"),
  };
}

/** The 1-minute load average, to tell a noisy cell from a slow one. */
export function loadAverage(): number {
  return Number(os.loadavg()[0]!.toFixed(2));
}

/** CPU time (user + system, microseconds) of each PostgreSQL process on this machine, by pid. */
export async function postgresCpuMicros(): Promise<Map<string, number>> {
  const ticksPerSecond = 100;
  const byPid = new Map<string, number>();
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const comm = (await readFile(`/proc/${pid}/comm`, "utf8")).trim();
      if (!comm.startsWith("postgres")) continue;
      const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
      // utime and stime are fields 14 and 15 of /proc/<pid>/stat (11 and 12 after the comm).
      byPid.set(pid, (Number(fields[11]) + Number(fields[12])) * (1_000_000 / ticksPerSecond));
    } catch {
      // The process ended while we read it.
    }
  }
  return byPid;
}

/**
 * PostgreSQL CPU used since `before` ({@link postgresCpuMicros}): the growth of every process alive
 * now, in full for those started since. A process that ended in between (another client's
 * connection) is left out rather than counted as negative time.
 */
export async function postgresCpuSince(before: Map<string, number>): Promise<number> {
  let total = 0;
  for (const [pid, micros] of await postgresCpuMicros()) total += micros - (before.get(pid) ?? 0);
  return total;
}
