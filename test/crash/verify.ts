/**
 * What must hold after a crash and a recovery, checked against the store (through a node that
 * never started, so it only reads) and the ledger (the external truth).
 */
import { expect } from "vitest";
import { sha256 } from "../../core/ids.js";
import { canonicalJson } from "../../core/json.js";
import type { EffectRecord, JournalEntry, Store } from "../../core/ports/store.js";
import type { TesseraNode } from "../../actors/node.js";
import type { LedgerSnapshot } from "../helpers/ledger-service.js";
import type { DeskOutput } from "./agents.js";
import type { CommittedStep } from "./protocol.js";

/** Counts a trial reports. */
export interface VerifiedTrial {
  runs: number;
  actors: number;
  steps: number;
  effects: number;
  ledgerCalls: number;
  /** Idempotent keys the ledger saw more than once (retries with the same key, applied once). */
  idempotentRepeats: number;
  /** Non-idempotent effects reconciled (completed or failed) after they were left unknown. */
  reconciled: number;
}

/**
 * Checks that every step a worker reported as committed is in the store.
 *
 * @param store - the store, read after the worker died
 * @param tenantId - the trial's tenant
 * @param steps - the `[actorId, seq]` pairs the worker printed
 * @returns how many steps were checked
 */
export async function expectCommittedStepsSurvived(store: Store, tenantId: string, steps: readonly CommittedStep[]): Promise<number> {
  const highest = new Map<string, number>();
  for (const [actorId, seq] of steps) highest.set(actorId, Math.max(highest.get(actorId) ?? 0, seq));
  for (const [actorId, seq] of highest) {
    const actor = await store.getActor(tenantId, actorId);
    expect(actor, `actor ${actorId} with committed seq ${seq} exists`).toBeDefined();
    expect(actor!.revision, `committed seq ${seq} of ${actorId} survived`).toBeGreaterThanOrEqual(seq);
    const journal = await store.readJournal(tenantId, actorId, { afterSeq: 0, limit: seq });
    expect(journal.map((entry) => entry.seq)).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
  }
  return steps.length;
}

/**
 * How many of a batch's steps are in the store.
 *
 * @param store - the store
 * @param tenantId - the trial's tenant
 * @param batch - `[actorId, seq]` of every commit of the batch
 * @returns the number present
 */
export async function countPresent(store: Store, tenantId: string, batch: readonly CommittedStep[]): Promise<number> {
  let present = 0;
  for (const [actorId, seq] of batch) {
    const rows = await store.readJournal(tenantId, actorId, { afterSeq: seq - 1, limit: 1 });
    if (rows[0]?.seq === seq) present += 1;
  }
  return present;
}

/** Recomputes an entry's hash the way the runtime chains it (actor-cell.ts, `#commitOf`). */
function hashOf(entry: JournalEntry): string {
  const body = {
    seq: entry.seq,
    kind: entry.kind,
    event: entry.event,
    eventRef: entry.eventRef,
    messageId: entry.messageId,
    planned: entry.planned,
    stateHash: entry.stateHash,
    epoch: entry.epoch,
    nodeId: entry.nodeId,
    createdAt: entry.createdAt,
  };
  return sha256(entry.prevHash + canonicalJson(body));
}

/** Checks one actor's journal: contiguous, chained, each message and effect outcome applied once, replayable. */
async function verifyActor(node: TesseraNode, tenantId: string, actorId: string, revision: number): Promise<JournalEntry[]> {
  const journal = await node.readJournal(tenantId, actorId, { limit: 10_000 });
  const where = `journal of ${actorId}`;
  expect(
    journal.map((entry) => entry.seq),
    `${where} is contiguous from 1`,
  ).toEqual(Array.from({ length: revision }, (_, i) => i + 1));
  journal.forEach((entry, i) => {
    expect(entry.prevHash, `${where}#${entry.seq} chains to the one before`).toBe(i === 0 ? "" : journal[i - 1]!.hash);
    expect(hashOf(entry), `${where}#${entry.seq} hash covers its body`).toBe(entry.hash);
  });
  const messageIds = journal.flatMap((entry) => (entry.messageId === undefined ? [] : [entry.messageId]));
  expect(new Set(messageIds).size, `${where}: each mailbox message applied once`).toBe(messageIds.length);
  const outcomes = journal
    .map((entry) => entry.event as { type?: string; effectId?: string })
    .filter((event) => typeof event.effectId === "string" && /^tool\..*\.(done|failed)$/.test(event.type ?? ""))
    .map((event) => event.effectId!);
  expect(new Set(outcomes).size, `${where}: each effect outcome applied once`).toBe(outcomes.length);
  const firings = journal
    .map((entry) => entry.event as { type?: string; timerId?: string })
    .filter((event) => event.type?.startsWith("timer.") === true)
    .map((event) => event.timerId);
  expect(new Set(firings).size, `${where}: each timer fired once`).toBe(firings.length);
  const replayed = await node.replay(tenantId, actorId);
  expect(replayed.steps, `replay of ${actorId} folds every step`).toBe(revision);
  expect(replayed.stateHash).toBe(journal.at(-1)?.stateHash);
  return journal;
}

/** Checks one effect against the ledger. */
function verifyEffect(effect: EffectRecord, ledger: LedgerSnapshot, reconciledKeys: ReadonlySet<string>): void {
  const where = `${effect.name} ${effect.actorId}/${effect.effectId} (${effect.idempotencyKey})`;
  const calls = ledger.byKey[effect.idempotencyKey] ?? 0;
  const applied = ledger.records.filter((record) => record.key === effect.idempotencyKey && record.applied).length;
  expect(effect.kind).toBe("tool");
  if (effect.idempotent) {
    expect(effect.state, `${where} completed`).toBe("completed");
    expect(applied, `${where} applied exactly once`).toBe(1);
    // Effectively once: every call of the key after the first is a repeat the ledger did not apply.
    expect(calls).toBeGreaterThanOrEqual(1);
    return;
  }
  expect(calls, `${where}: a non-idempotent tool is called at most once per key`).toBeLessThanOrEqual(1);
  expect(["completed", "failed"], `${where} is settled`).toContain(effect.state);
  if (effect.state === "completed") expect(applied, `${where} completed, so the ledger applied it`).toBe(1);
  if (effect.state === "failed") {
    // A charge fails only by reconciliation against a ledger that never saw it.
    expect(reconciledKeys.has(effect.idempotencyKey), `${where} failed only by reconciliation`).toBe(true);
    expect(calls).toBe(0);
  }
}

/**
 * Checks a trial's runs after recovery (and reconciliation): none lost, each completed; every
 * journal contiguous, hash-chained and replayable; idempotent effects applied exactly once;
 * non-idempotent ones called at most once; exactly one charge applied per run; no ledger call
 * outside the trial's effects; and a key's calls never go back to an older lease epoch.
 *
 * @param node - a node over the trial's store that was never started (it only reads)
 * @param tenantId - the trial's tenant
 * @param runIds - the root actor of every run
 * @param ledger - the ledger's snapshot after everything settled
 * @param reconciledKeys - keys of the effects the test reconciled
 * @returns counts for the report
 */
export async function verifyRuns(
  node: TesseraNode,
  tenantId: string,
  runIds: readonly string[],
  ledger: LedgerSnapshot,
  reconciledKeys: ReadonlySet<string>,
): Promise<VerifiedTrial> {
  const report: VerifiedTrial = {
    runs: runIds.length,
    actors: 0,
    steps: 0,
    effects: 0,
    ledgerCalls: ledger.calls,
    idempotentRepeats: 0,
    reconciled: reconciledKeys.size,
  };
  const trialKeys = new Set<string>();
  for (const runId of runIds) {
    const view = await node.getActor(tenantId, runId);
    expect(view.status, `run ${runId} completed (it is at ${JSON.stringify(view.stateValue)})`).toBe("completed");
    const output = view.output as unknown as DeskOutput;
    expect(output.chargeId, `run ${runId} charged`).not.toBeNull();
    const children = await node.listChildren(tenantId, runId);
    expect(
      children.map((child) => child.status),
      `run ${runId} spawned one child, which completed`,
    ).toEqual(["completed"]);
    const chargesApplied: string[] = [];
    for (const actor of [view, ...children]) {
      const journal = await verifyActor(node, tenantId, actor.actorId, actor.revision);
      report.actors += 1;
      report.steps += journal.length;
      for (const effect of await node.listEffects(tenantId, actor.actorId)) {
        verifyEffect(effect, ledger, reconciledKeys);
        report.effects += 1;
        trialKeys.add(effect.idempotencyKey);
        if (effect.idempotent && (ledger.byKey[effect.idempotencyKey] ?? 0) > 1) report.idempotentRepeats += 1;
        if (effect.name === "charge" && effect.state === "completed") chargesApplied.push(effect.idempotencyKey);
      }
    }
    expect(chargesApplied, `run ${runId} charged exactly once`).toHaveLength(1);
  }
  expect(ledger.mismatches, "no key was reused with different arguments").toBe(0);
  const strays = Object.keys(ledger.byKey).filter((key) => !trialKeys.has(key));
  expect(strays, "every ledger call belongs to an effect of the trial").toEqual([]);
  for (const key of trialKeys) {
    const epochs = ledger.records.filter((record) => record.key === key).map((record) => record.epoch ?? 0);
    expect(epochs, `calls of ${key} never come from an older epoch`).toEqual([...epochs].sort((a, b) => a - b));
  }
  return report;
}
