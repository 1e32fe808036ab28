import { createHash, randomUUID } from "node:crypto";
import { setImmediate as nextTurn } from "node:timers/promises";
import pg from "pg";
import { createPgStore } from "../persistence/pg/index.js";

const tenant = "floor";
/** Untimed steps per run before the statistics are taken and the clock starts. */
const warmUpSteps = 20;
const hex = (text: string): string => createHash("sha256").update(text).digest("hex");
const result = JSON.stringify({ i: 0, data: "d".repeat(80) });

/** A run's step waiting for the transaction that will hold its rows. */
interface QueuedStep {
  run: number;
  seq: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * The floor under Tessera's durable step: raw `pg` writing, per step, the rows a tool step of the
 * `durable-steps` workload stores in Tessera's own schema (migrated by the store, so with the same
 * indexes and storage parameters), with none of the runtime: the actor row's update by key, the
 * journal row (~650 bytes), the outcome of the step's effect (an update by key) and the next step's
 * effect (~340 bytes). The rows of all in-flight runs go in one statement, in a SERIALIZABLE
 * transaction whose BEGIN, statement and COMMIT leave in one write on a pipelining connection, as
 * Tessera's group commit does; each run waits for the commit that holds its row.
 *
 * It is a floor, not a copy: the session forbids sequential scans and hash and merge joins, so that
 * every row is found by its key whatever the statistics; no step is guarded against a stale
 * revision beyond the actor update's own condition; and a run's creation, first step and completion
 * (one actor insert and one more commit per ten tool steps in Tessera's workload, the completion
 * changing indexed columns) are left out. Each call starts from an empty schema.
 *
 * The gap between the single-row group commit and this is the cost of the data model (four row
 * writes and their index entries instead of one); the gap between this and Tessera is the cost of
 * the runtime (statechart, hash chain, planning, validation, the step statement's guards, protocol).
 *
 * With `effectRowOnce`, it writes the rows of a data model Tessera does not have (yet): an
 * idempotent effect's row written once, with its outcome, instead of inserted when planned and
 * updated when done. The step then inserts the previous effect's row, completed, and its next
 * effect (~300 bytes) rides in the actor row it updates anyway (here in the `output` column, which an
 * active actor does not use) as the intent a recovery would dispatch: three row writes instead of
 * four, and no update of an effect that can never be heap-only.
 *
 * @param databaseUrl - the database, reached as the store reaches it
 * @param schema - a schema of its own, dropped and created again
 * @param concurrency - runs in flight
 * @param steps - timed steps in all (rounded up to a multiple of `concurrency`)
 * @param effectRowOnce - write each effect's row once, with its outcome (see above)
 * @returns steps per second over the timed steps, each timed step's latency, and the WAL bytes per
 *   timed step (the whole server's: nothing else runs during a cell)
 */
export async function referenceStepRows(
  databaseUrl: string,
  schema: string,
  concurrency: number,
  steps: number,
  effectRowOnce = false,
): Promise<{ stepsPerSecond: number; latenciesMs: number[]; walBytesPerStep: number }> {
  const client = new pg.Client({ connectionString: databaseUrl, pipeline: true } as pg.ClientConfig);
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    const store = createPgStore({ connectionString: databaseUrl, schema, poolSize: 1 });
    try {
      await store.migrate();
    } finally {
      await store.close();
    }
    await client.query("SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off");
    await createActors(client, schema, concurrency);
    return await measure(client, schema, concurrency, Math.ceil(steps / concurrency), effectRowOnce);
  } finally {
    await client.end();
  }
}

const actorIdOf = (run: number): string => `act_floor_${run}`;

async function createActors(client: pg.Client, schema: string, concurrency: number): Promise<void> {
  for (let run = 0; run < concurrency; run++) {
    await client.query(
      `INSERT INTO "${schema}".actors (tenant_id, actor_id, agent_type, agent_version, root_id, depth, input, epoch, owner_node, status,
         revision, snapshot, snapshot_seq, last_hash, child_count, created_at, updated_at)
       VALUES ($1, $2, 'stepper', 1, $2, 0, '{"steps":10}', 1, 'node-floor', 'active', 0, '{"value":"working"}', 0, $3, 0, 0, 0)`,
      [tenant, actorIdOf(run), hex("0")],
    );
  }
}

/** The statement that writes the rows of a batch of steps; it returns how many of each it wrote. */
function stepRowsStatement(schema: string, effectRowOnce: boolean): string {
  const table = (name: string): string => `"${schema}".${name}`;
  if (effectRowOnce) return effectRowOnceStatement(table);
  return `WITH u AS (SELECT * FROM unnest($1::text[], $2::int8[], $4::text[], $5::text[]) AS u(actor_id, seq, done_id, next_id)),
    a AS (UPDATE ${table("actors")} a SET revision = u.seq, updated_at = u.seq, last_hash = md5(u.actor_id || u.seq) || md5(u.seq || u.actor_id)
      FROM u WHERE a.tenant_id = '${tenant}' AND a.actor_id = u.actor_id AND a.revision = u.seq - 1 RETURNING 1),
    ${journalCte(table)},
    o AS (UPDATE ${table("effects")} e SET state = 'completed', result = $3::jsonb, attempts = 1, completed_seq = u.seq, updated_at = u.seq
      FROM u WHERE e.tenant_id = '${tenant}' AND e.actor_id = u.actor_id AND e.effect_id = u.done_id
      RETURNING 1),
    n AS (INSERT INTO ${table("effects")} (tenant_id, actor_id, effect_id, ordinal, kind, name, args, idempotency_key, idempotent, state,
        attempts, created_seq, created_at, updated_at)
      SELECT '${tenant}', u.actor_id, u.next_id, 0, 'tool', 'step', jsonb_build_object('i', u.seq),
        md5(u.actor_id || u.seq), true, 'running', 1, u.seq, u.seq, u.seq
      FROM u RETURNING 1)
    SELECT (SELECT count(*) FROM a) AS a, (SELECT count(*) FROM j) AS j, (SELECT count(*) FROM o) AS o, (SELECT count(*) FROM n) AS n`;
}

/** The CTE `j` that inserts each step's journal row (~650 bytes), the same in both data models. */
function journalCte(table: (name: string) => string): string {
  return `j AS (INSERT INTO ${table("journal")} (tenant_id, actor_id, seq, kind, event, planned, state_value, status, state_hash, hash, prev_hash,
        epoch, node_id, created_at)
      SELECT '${tenant}', u.actor_id, u.seq, 'event',
        jsonb_build_object('type', 'tool.step.done', 'effectId', u.done_id, 'output', $3::jsonb),
        jsonb_build_array(jsonb_build_object('effectId', u.next_id, 'kind', 'tool', 'name', 'step',
          'args', jsonb_build_object('i', u.seq), 'idempotencyKey', md5(u.actor_id || u.seq), 'idempotent', true)),
        '"working"', 'active', md5(u.actor_id) || md5(u.seq::text), md5(u.seq || u.actor_id) || md5(u.actor_id || u.seq),
        md5(u.actor_id || (u.seq - 1)) || md5((u.seq - 1) || u.actor_id), 1, 'node-floor', u.seq
      FROM u RETURNING 1)`;
}

/** The rows of a step when an effect's row is written once, with its outcome (`effectRowOnce`). */
function effectRowOnceStatement(table: (name: string) => string): string {
  return `WITH u AS (SELECT * FROM unnest($1::text[], $2::int8[], $4::text[], $5::text[]) AS u(actor_id, seq, done_id, next_id)),
    a AS (UPDATE ${table("actors")} a SET revision = u.seq, updated_at = u.seq, last_hash = md5(u.actor_id || u.seq) || md5(u.seq || u.actor_id),
        output = jsonb_build_array(jsonb_build_object('effectId', u.next_id, 'kind', 'tool', 'name', 'step', 'args', jsonb_build_object('i', u.seq),
          'idempotencyKey', md5(u.actor_id || u.seq), 'idempotent', true, 'state', 'running', 'attempts', 1, 'createdSeq', u.seq,
          'createdAt', u.seq, 'updatedAt', u.seq, 'ordinal', 0))
      FROM u WHERE a.tenant_id = '${tenant}' AND a.actor_id = u.actor_id AND a.revision = u.seq - 1 RETURNING 1),
    ${journalCte(table)},
    o AS (INSERT INTO ${table("effects")} (tenant_id, actor_id, effect_id, ordinal, kind, name, args, idempotency_key, idempotent, state,
        attempts, result, created_seq, completed_seq, created_at, updated_at)
      SELECT '${tenant}', u.actor_id, u.done_id, 0, 'tool', 'step', jsonb_build_object('i', u.seq - 1),
        md5(u.actor_id || (u.seq - 1)), true, 'completed', 1, $3::jsonb, u.seq - 1, u.seq, u.seq - 1, u.seq
      FROM u WHERE u.seq > 1 RETURNING 1)
    SELECT (SELECT count(*) FROM a) AS a, (SELECT count(*) FROM j) AS j, (SELECT count(*) FROM o) AS o, (SELECT count(*) FROM u) AS n`;
}

/** Runs `perRun` warm-up steps per run, analyzes, then times `perRun` more. */
async function measure(
  client: pg.Client,
  schema: string,
  concurrency: number,
  perRun: number,
  effectRowOnce: boolean,
): Promise<{ stepsPerSecond: number; latenciesMs: number[]; walBytesPerStep: number }> {
  const statement = { name: `floor_${randomUUID().slice(0, 8)}`, text: stepRowsStatement(schema, effectRowOnce) };
  const stream = (client as unknown as { connection?: { stream?: { cork?: () => void; uncork?: () => void } } }).connection?.stream;
  const latenciesMs: number[] = [];
  let queue: QueuedStep[] = [];
  let flushing = false;
  let failure: Error | undefined;
  const commit = async (batch: QueuedStep[]): Promise<void> => {
    const values = [
      batch.map((b) => actorIdOf(b.run)),
      batch.map((b) => b.seq),
      result,
      batch.map((b) => `eff_${b.run}_${b.seq - 1}`),
      batch.map((b) => `eff_${b.run}_${b.seq}`),
    ];
    stream?.cork?.();
    const sent = [client.query("BEGIN ISOLATION LEVEL SERIALIZABLE"), client.query({ ...statement, values }), client.query("COMMIT")];
    stream?.uncork?.();
    const [, written] = await Promise.all(sent);
    const counts = written!.rows[0] as Record<"a" | "j" | "o" | "n", string>;
    const outcomes = batch.filter((b) => b.seq > 1).length;
    if ([counts.a, counts.j, counts.n].some((c) => Number(c) !== batch.length) || Number(counts.o) !== outcomes)
      throw new Error(`a batch of ${batch.length} steps wrote ${JSON.stringify(counts)}`);
  };
  const flush = async (): Promise<void> => {
    flushing = true;
    try {
      while (queue.length > 0) {
        // One turn of the event loop, so that the steps of every run woken by the last commit are in.
        if (concurrency > 1) await nextTurn();
        const batch = queue;
        queue = [];
        try {
          await commit(batch);
          for (const b of batch) b.resolve();
        } catch (error) {
          failure ??= error as Error;
          await client.query("ROLLBACK").catch(() => {});
          for (const b of batch) b.reject(error as Error);
        }
      }
    } finally {
      flushing = false;
    }
  };
  const drive = (from: number, to: number, record: boolean): Promise<unknown> =>
    Promise.all(
      Array.from({ length: concurrency }, async (_, run) => {
        for (let seq = from; seq <= to && failure === undefined; seq++) {
          const t0 = performance.now();
          await new Promise<void>((resolve, reject) => {
            queue.push({ run, seq, resolve, reject });
            if (!flushing) void flush();
          });
          if (record) latenciesMs.push(performance.now() - t0);
        }
      }),
    );
  // Warm-up, then statistics: Tessera's store analyzes young tables as they grow (its statistics
  // keeper), and without statistics the cached plan finds an effect by scanning its actor's.
  await drive(1, warmUpSteps, false);
  await client.query(`ANALYZE "${schema}".actors, "${schema}".journal, "${schema}".effects`);
  const wal = (await client.query("SELECT pg_current_wal_insert_lsn()::text AS lsn")).rows[0] as { lsn: string };
  const started = performance.now();
  await drive(warmUpSteps + 1, warmUpSteps + perRun, true);
  const stepsPerSecond = (perRun * concurrency) / ((performance.now() - started) / 1000);
  const written = await client.query("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::float8 AS bytes", [wal.lsn]);
  await client.query(`DEALLOCATE ${statement.name}`);
  return { stepsPerSecond, latenciesMs, walBytesPerStep: Number((written.rows[0] as { bytes: number }).bytes) / (perRun * concurrency) };
}
