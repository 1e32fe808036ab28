import { createHash, randomUUID } from "node:crypto";
import type pg from "pg";
import { createPgStore } from "../persistence/pg/index.js";

const tenant = "floor";
/** Untimed steps per run before the statistics are taken and the clock starts. */
const warmUpSteps = 20;
const hex = (text: string): string => createHash("sha256").update(text).digest("hex");
const result = JSON.stringify({ i: 0, data: "d".repeat(80) });

/** One step's rows for the `durable-steps` workload, as Tessera's schema stores them. */
interface StepRow {
  run: number;
  seq: number;
}

/**
 * The floor under Tessera's durable step: raw `pg` writing, per step, the rows a tool step of the
 * `durable-steps` workload stores in Tessera's own schema (migrated by the store), with none of the
 * runtime: the actor row's update by key, the journal row (~650 bytes), the outcome of the step's
 * effect (an update by key) and the next step's effect (~340 bytes). The rows of all in-flight runs
 * go in one statement, committed on its own (one round trip, as Tessera's pipelined transaction),
 * and each run waits for the commit that holds its row. The session forbids sequential scans and
 * hash and merge joins, so that every row is found by its key whatever the table's statistics: the
 * best plan, not the planner's guess. Actor creation, which a Tessera run adds, is left out.
 *
 * The gap between this and the single-row group commit is the cost of the data model (four row
 * writes and their index entries instead of one); the gap between Tessera and this is the cost of
 * the runtime (statechart, hash chain, planning, validation, protocol).
 */
export async function referenceStepRows(
  pool: pg.Pool,
  schema: string,
  concurrency: number,
  steps: number,
): Promise<{ stepsPerSecond: number; latenciesMs: number[] }> {
  // A fresh schema for each measurement: no rows, dead or alive, from an earlier one.
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  const store = createPgStore({ pool, schema });
  await store.migrate();
  await store.close();
  const t = (table: string): string => `"${schema}".${table}`;
  const actorId = (run: number): string => `act_floor_${run}`;
  const statementName = `floor_${randomUUID().slice(0, 8)}`;
  for (let run = 0; run < concurrency; run++) {
    await pool.query(
      `INSERT INTO ${t("actors")} (tenant_id, actor_id, agent_type, agent_version, root_id, depth, input, epoch, owner_node, status,
         revision, snapshot, snapshot_seq, last_hash, child_count, created_at, updated_at)
       VALUES ($1, $2, 'stepper', 1, $2, 0, '{"steps":10}', 1, 'node-floor', 'active', 0, '{"value":"working"}', 0, $3, 0, 0, 0)`,
      [tenant, actorId(run), hex("0")],
    );
  }
  const statement = `WITH u AS (SELECT * FROM unnest($1::text[], $2::int8[], $4::text[], $5::text[]) AS u(actor_id, seq, done_id, next_id)),
    a AS (UPDATE ${t("actors")} a SET revision = u.seq, updated_at = u.seq, last_hash = md5(u.actor_id || u.seq) || md5(u.seq || u.actor_id)
      FROM u WHERE a.tenant_id = '${tenant}' AND a.actor_id = u.actor_id AND a.revision = u.seq - 1 RETURNING 1),
    j AS (INSERT INTO ${t("journal")} (tenant_id, actor_id, seq, kind, event, planned, state_value, status, state_hash, hash, prev_hash,
        epoch, node_id, created_at)
      SELECT '${tenant}', u.actor_id, u.seq, 'event',
        jsonb_build_object('type', 'tool.step.done', 'effectId', u.done_id, 'output', $3::jsonb),
        jsonb_build_array(jsonb_build_object('effectId', u.next_id, 'kind', 'tool', 'name', 'step',
          'args', jsonb_build_object('i', u.seq), 'idempotencyKey', md5(u.actor_id || u.seq), 'idempotent', true)),
        '"working"', 'active', md5(u.actor_id) || md5(u.seq::text), md5(u.seq || u.actor_id) || md5(u.actor_id || u.seq),
        md5(u.actor_id || (u.seq - 1)) || md5((u.seq - 1) || u.actor_id), 1, 'node-floor', u.seq
      FROM u RETURNING 1),
    o AS (UPDATE ${t("effects")} e SET state = 'completed', result = $3::jsonb, attempts = 1, completed_seq = u.seq, updated_at = u.seq
      FROM u WHERE e.tenant_id = '${tenant}' AND e.actor_id = u.actor_id AND e.effect_id = u.done_id
      RETURNING 1),
    n AS (INSERT INTO ${t("effects")} (tenant_id, actor_id, effect_id, ordinal, kind, name, args, idempotency_key, idempotent, state,
        attempts, created_seq, created_at, updated_at)
      SELECT '${tenant}', u.actor_id, u.next_id, 0, 'tool', 'step', jsonb_build_object('i', u.seq),
        md5(u.actor_id || u.seq), true, 'planned', 0, u.seq, u.seq, u.seq
      FROM u RETURNING 1)
    SELECT (SELECT count(*) FROM a) AS a, (SELECT count(*) FROM j) AS j`;
  const perRun = Math.ceil(steps / concurrency);
  const latenciesMs: number[] = [];
  let queue: Array<StepRow & { resolve: () => void; reject: (error: Error) => void }> = [];
  let flushing = false;
  const client = await pool.connect();
  await client.query("SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off");
  const flush = async (): Promise<void> => {
    flushing = true;
    try {
      while (queue.length > 0) {
        const batch = queue;
        queue = [];
        try {
          const { rows } = await client.query({
            name: statementName,
            text: statement,
            values: [
              batch.map((b) => actorId(b.run)),
              batch.map((b) => b.seq),
              result,
              batch.map((b) => `eff_${b.run}_${b.seq - 1}`),
              batch.map((b) => `eff_${b.run}_${b.seq}`),
            ],
          });
          const written = rows[0] as { a: string; j: string };
          if (Number(written.a) !== batch.length || Number(written.j) !== batch.length) throw new Error("a step's rows were not written");
          for (const b of batch) b.resolve();
        } catch (error) {
          for (const b of batch) b.reject(error as Error);
        }
      }
    } finally {
      flushing = false;
    }
  };
  /** Runs every run from step `from` to step `to`, recording each step's latency when `record`. */
  const drive = (from: number, to: number, record: boolean): Promise<unknown> =>
    Promise.all(
      Array.from({ length: concurrency }, async (_, run) => {
        for (let seq = from; seq <= to; seq++) {
          const t0 = performance.now();
          await new Promise<void>((resolve, reject) => {
            queue.push({ run, seq, resolve, reject });
            if (!flushing) void flush();
          });
          if (record) latenciesMs.push(performance.now() - t0);
        }
      }),
    );
  try {
    // Warm-up, then statistics: Tessera's store analyzes young tables as they grow (its statistics
    // keeper), and without statistics the cached plan finds an effect by scanning its actor's.
    await drive(1, warmUpSteps, false);
    await client.query(`ANALYZE ${t("actors")}, ${t("journal")}, ${t("effects")}`);
    const started = performance.now();
    await drive(warmUpSteps + 1, warmUpSteps + perRun, true);
    return { stepsPerSecond: (perRun * concurrency) / ((performance.now() - started) / 1000), latenciesMs };
  } finally {
    await client.query(`DEALLOCATE ${statementName}`).catch(() => {});
    await client.query("RESET ALL");
    client.release();
  }
}
