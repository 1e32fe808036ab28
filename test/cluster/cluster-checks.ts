/**
 * What every cluster test verifies after its workload, straight from the database and the ledger:
 *
 * - journals: per actor, seqs contiguous from 1 to its revision, epochs never decreasing, each
 *   (actor, epoch) written by exactly one node, no row with an epoch above the actor's;
 * - effects against the ledger: every completed charge has its key applied in the ledger (0 lost),
 *   no logical charge `{ runId, n }` applied under two keys and no key applied that the store does
 *   not know (0 duplicated), no key reused with another body; repeats of one key are counted.
 */
import type { LedgerRecord } from "../helpers/ledger-service.js";
import { chargeKind } from "./cluster-agents.js";
import type { ClusterTest } from "./cluster-harness.js";

/** What {@link checkJournals} found. */
export interface JournalReport {
  actors: number;
  rows: number;
  /** Actors whose seqs are not exactly 1..revision. */
  gaps: Array<{ actorId: string; rows: number; lo: number; hi: number; distinct: number; revision: number }>;
  /** (actor, epoch) pairs written by more than one node. */
  sharedEpochs: Array<{ actorId: string; epoch: number; nodes: string[] }>;
  /** Rows whose epoch is below the row before them. */
  epochRegressions: Array<{ actorId: string; seq: number; epoch: number; previous: number }>;
  /** Rows with an epoch above the actor's current one. */
  epochsAhead: Array<{ actorId: string; seq: number; epoch: number; actorEpoch: number }>;
  /** Journal rows per node. */
  rowsByNode: Record<string, number>;
}

/**
 * Checks every journal of the test's tenant.
 *
 * @returns the findings; a clean journal has every list empty
 */
export async function checkJournals(test: ClusterTest): Promise<JournalReport> {
  const journal = test.table("journal");
  const actors = test.table("actors");
  const params = [test.tenantId];
  const [counts, gaps, shared, regressions, ahead, byNode] = await Promise.all([
    test.pool.query<{ actors: string; rows: string }>(
      `SELECT count(DISTINCT actor_id) AS actors, count(*) AS rows FROM ${journal} WHERE tenant_id = $1`,
      params,
    ),
    test.pool.query<{ actor_id: string; n: string; lo: string | null; hi: string | null; d: string; revision: string }>(
      `SELECT a.actor_id, count(j.seq) AS n, min(j.seq) AS lo, max(j.seq) AS hi, count(DISTINCT j.seq) AS d, a.revision
         FROM ${actors} a LEFT JOIN ${journal} j ON j.tenant_id = a.tenant_id AND j.actor_id = a.actor_id
        WHERE a.tenant_id = $1
        GROUP BY a.actor_id, a.revision
       HAVING count(j.seq) <> a.revision OR count(DISTINCT j.seq) <> a.revision
           OR (a.revision > 0 AND (min(j.seq) <> 1 OR max(j.seq) <> a.revision))`,
      params,
    ),
    test.pool.query<{ actor_id: string; epoch: string; nodes: string[] }>(
      `SELECT actor_id, epoch, array_agg(DISTINCT node_id) AS nodes FROM ${journal} WHERE tenant_id = $1
        GROUP BY actor_id, epoch HAVING count(DISTINCT node_id) > 1`,
      params,
    ),
    test.pool.query<{ actor_id: string; seq: string; epoch: string; previous: string }>(
      `SELECT actor_id, seq, epoch, previous FROM (
         SELECT actor_id, seq, epoch, lag(epoch) OVER (PARTITION BY actor_id ORDER BY seq) AS previous
           FROM ${journal} WHERE tenant_id = $1) x
        WHERE previous > epoch`,
      params,
    ),
    test.pool.query<{ actor_id: string; seq: string; epoch: string; actor_epoch: string }>(
      `SELECT j.actor_id, j.seq, j.epoch, a.epoch AS actor_epoch FROM ${journal} j JOIN ${actors} a USING (tenant_id, actor_id)
        WHERE j.tenant_id = $1 AND j.epoch > a.epoch`,
      params,
    ),
    test.pool.query<{ node_id: string; n: string }>(
      `SELECT node_id, count(*) AS n FROM ${journal} WHERE tenant_id = $1 GROUP BY node_id ORDER BY node_id`,
      params,
    ),
  ]);
  return {
    actors: Number(counts.rows[0]?.actors ?? 0),
    rows: Number(counts.rows[0]?.rows ?? 0),
    gaps: gaps.rows.map((r) => ({
      actorId: r.actor_id,
      rows: Number(r.n),
      lo: Number(r.lo ?? 0),
      hi: Number(r.hi ?? 0),
      distinct: Number(r.d),
      revision: Number(r.revision),
    })),
    sharedEpochs: shared.rows.map((r) => ({ actorId: r.actor_id, epoch: Number(r.epoch), nodes: r.nodes })),
    epochRegressions: regressions.rows.map((r) => ({
      actorId: r.actor_id,
      seq: Number(r.seq),
      epoch: Number(r.epoch),
      previous: Number(r.previous),
    })),
    epochsAhead: ahead.rows.map((r) => ({
      actorId: r.actor_id,
      seq: Number(r.seq),
      epoch: Number(r.epoch),
      actorEpoch: Number(r.actor_epoch),
    })),
    rowsByNode: Object.fromEntries(byNode.rows.map((r) => [r.node_id, Number(r.n)])),
  };
}

/** A charge effect as the store has it. */
export interface StoredCharge {
  actorId: string;
  effectId: string;
  key: string;
  state: string;
  attempts: number;
  runId: string;
  n: number;
}

/** What {@link checkLedger} found. */
export interface LedgerReport {
  /** Charge effects in the store, by state. */
  effectsByState: Record<string, number>;
  /** Ledger calls in all, and distinct keys applied. */
  calls: number;
  applied: number;
  /** Calls that repeated a key already applied (allowed for an idempotent tool: retries, takeovers). */
  repeats: number;
  /** Keys called more than once. */
  repeatedKeys: number;
  /** Calls that reused a key with another body (must be 0). */
  mismatches: number;
  /** Completed charges whose key the ledger never applied (must be 0). */
  lost: StoredCharge[];
  /** Logical charges `{ runId, n }` applied under more than one key (must be 0). */
  duplicated: Array<{ runId: string; n: number; keys: string[] }>;
  /** Keys the ledger applied that no charge effect in the store has (must be 0). */
  unknownKeys: string[];
  /** Completed runs whose charges are not exactly n = 0..pingsNeeded, each applied once. */
  incompleteRuns: Array<{ runId: string; ns: number[] }>;
}

/**
 * Compares the store's charge effects with the ledger's records.
 *
 * @param pingsNeeded - per run id, the pings it was started with (its charges are n = 0..pingsNeeded)
 * @returns the findings; a clean run has `lost`, `duplicated`, `unknownKeys`, `incompleteRuns` empty and `mismatches` 0
 */
export async function checkLedger(test: ClusterTest, pingsNeeded: ReadonlyMap<string, number>): Promise<LedgerReport> {
  const { rows } = await test.pool.query<{
    actor_id: string;
    effect_id: string;
    idempotency_key: string;
    state: string;
    attempts: string;
    args: unknown;
  }>(
    `SELECT actor_id, effect_id, idempotency_key, state, attempts, args FROM ${test.table("effects")} WHERE tenant_id = $1 AND name = 'charge'`,
    [test.tenantId],
  );
  const stored: StoredCharge[] = rows.map((r) => {
    const args = r.args as { runId: string; n: number };
    return {
      actorId: r.actor_id,
      effectId: r.effect_id,
      key: r.idempotency_key,
      state: r.state,
      attempts: Number(r.attempts),
      runId: args.runId,
      n: args.n,
    };
  });
  const snapshot = test.ledger.snapshot();
  const charges = snapshot.records.filter((record) => record.kind === chargeKind);
  const appliedByKey = new Map<string, LedgerRecord>();
  for (const record of charges) if (record.applied) appliedByKey.set(record.key, record);
  const storedKeys = new Set(stored.map((charge) => charge.key));
  const effectsByState: Record<string, number> = {};
  for (const charge of stored) effectsByState[charge.state] = (effectsByState[charge.state] ?? 0) + 1;

  const keysByCharge = new Map<string, string[]>();
  for (const record of appliedByKey.values()) {
    const payload = record.payload as { runId: string; n: number };
    const id = `${payload.runId}\u0000${payload.n}`;
    keysByCharge.set(id, [...(keysByCharge.get(id) ?? []), record.key]);
  }
  const duplicated = [...keysByCharge.entries()]
    .filter(([, keys]) => keys.length > 1)
    .map(([id, keys]) => {
      const [runId, n] = id.split("\u0000");
      return { runId: runId!, n: Number(n), keys };
    });

  const completedRuns = new Set(
    (
      await test.pool.query<{ actor_id: string }>(
        `SELECT actor_id FROM ${test.table("actors")} WHERE tenant_id = $1 AND status = 'completed'`,
        [test.tenantId],
      )
    ).rows.map((r) => r.actor_id),
  );
  const incompleteRuns: LedgerReport["incompleteRuns"] = [];
  for (const runId of completedRuns) {
    const needed = pingsNeeded.get(runId);
    if (needed === undefined) continue;
    const ns = stored.filter((c) => c.runId === runId && c.state === "completed" && appliedByKey.has(c.key)).map((c) => c.n);
    ns.sort((a, b) => a - b);
    const expected = Array.from({ length: needed + 1 }, (_, i) => i);
    if (ns.join(",") !== expected.join(",")) incompleteRuns.push({ runId, ns });
  }

  const repeats = charges.filter((record) => !record.applied && record.status === 200).length;
  return {
    effectsByState,
    calls: charges.length,
    applied: appliedByKey.size,
    repeats,
    repeatedKeys: Object.values(snapshot.byKey).filter((count) => count > 1).length,
    mismatches: charges.filter((record) => record.status === 422).length,
    lost: stored.filter((charge) => charge.state === "completed" && !appliedByKey.has(charge.key)),
    duplicated,
    unknownKeys: [...appliedByKey.keys()].filter((key) => !storedKeys.has(key)),
    incompleteRuns,
  };
}

/** The parts of a {@link LedgerReport} that must be empty, for one `expect`. */
export function ledgerViolations(report: LedgerReport): Record<string, unknown> {
  return {
    lost: report.lost.slice(0, 10),
    duplicated: report.duplicated.slice(0, 10),
    unknownKeys: report.unknownKeys.slice(0, 10),
    incompleteRuns: report.incompleteRuns.slice(0, 10),
    mismatches: report.mismatches,
  };
}

/** The parts of a {@link JournalReport} that must be empty, for one `expect`. */
export function journalViolations(report: JournalReport): Record<string, unknown> {
  return {
    gaps: report.gaps.slice(0, 10),
    sharedEpochs: report.sharedEpochs.slice(0, 10),
    epochRegressions: report.epochRegressions.slice(0, 10),
    epochsAhead: report.epochsAhead.slice(0, 10),
  };
}

/** What a clean run's violations look like. */
export const noLedgerViolations = { lost: [], duplicated: [], unknownKeys: [], incompleteRuns: [], mismatches: 0 };
/** What a clean journal's violations look like. */
export const noJournalViolations = { gaps: [], sharedEpochs: [], epochRegressions: [], epochsAhead: [] };

/** A short summary of a ledger report, for the printed results. */
export function ledgerSummary(report: LedgerReport): Record<string, unknown> {
  return {
    effectsByState: report.effectsByState,
    calls: report.calls,
    applied: report.applied,
    repeats: report.repeats,
    repeatedKeys: report.repeatedKeys,
    mismatches: report.mismatches,
    lost: report.lost.length,
    duplicated: report.duplicated.length,
    unknownKeys: report.unknownKeys.length,
    incompleteRuns: report.incompleteRuns.length,
  };
}
