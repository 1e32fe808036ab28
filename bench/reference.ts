import type pg from "pg";

const payload = "x".repeat(100);

/**
 * The store's own limits on this machine: one ~100-byte INSERT per transaction, and the group-commit
 * variant where the rows of all in-flight runs go in one multi-row INSERT per transaction.
 */
export async function referenceInserts(
  pool: pg.Pool,
  schema: string,
  concurrency: number,
  steps: number,
): Promise<{ stepsPerSecond: number; latenciesMs: number[] }> {
  await pool.query(`CREATE TABLE IF NOT EXISTS ${schema}.ref_steps (run_id int, seq int, payload text, PRIMARY KEY (run_id, seq))`);
  await pool.query(`TRUNCATE ${schema}.ref_steps`);
  const latenciesMs: number[] = [];
  const perRun = Math.ceil(steps / concurrency);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, run) => {
      const client = await pool.connect();
      try {
        for (let seq = 0; seq < perRun; seq++) {
          const t = performance.now();
          await client.query("BEGIN");
          await client.query(`INSERT INTO ${schema}.ref_steps VALUES ($1, $2, $3)`, [run, seq, payload]);
          await client.query("COMMIT");
          latenciesMs.push(performance.now() - t);
        }
      } finally {
        client.release();
      }
    }),
  );
  return { stepsPerSecond: (perRun * concurrency) / ((performance.now() - started) / 1000), latenciesMs };
}

/** Group commit: each run waits for the transaction that holds its row. */
export async function referenceGroupCommit(
  pool: pg.Pool,
  schema: string,
  concurrency: number,
  steps: number,
): Promise<{ stepsPerSecond: number }> {
  await pool.query(`CREATE TABLE IF NOT EXISTS ${schema}.ref_group (run_id int, seq int, payload text, PRIMARY KEY (run_id, seq))`);
  await pool.query(`TRUNCATE ${schema}.ref_group`);
  const perRun = Math.ceil(steps / concurrency);
  let queue: Array<{ run: number; seq: number; resolve: () => void }> = [];
  let flushing = false;
  const flush = async (): Promise<void> => {
    flushing = true;
    const client = await pool.connect();
    try {
      while (queue.length > 0) {
        const batch = queue;
        queue = [];
        const values = batch.map((_, i) => `($${i * 3 + 1}, $${i * 3 + 2}, $${i * 3 + 3})`).join(",");
        await client.query("BEGIN");
        await client.query(
          `INSERT INTO ${schema}.ref_group VALUES ${values}`,
          batch.flatMap((b) => [b.run, b.seq, payload]),
        );
        await client.query("COMMIT");
        for (const b of batch) b.resolve();
      }
    } finally {
      client.release();
      flushing = false;
    }
  };
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, run) => {
      for (let seq = 0; seq < perRun; seq++) {
        await new Promise<void>((resolve) => {
          queue.push({ run, seq, resolve });
          if (!flushing) void flush();
        });
      }
    }),
  );
  return { stepsPerSecond: (perRun * concurrency) / ((performance.now() - started) / 1000) };
}
