import { InvariantError } from "../../core/assert.js";
import type { StepCommit, StoredChain } from "../../core/ports/store.js";

/**
 * Checks the invariants of one {@link StepCommit} that do not depend on stored state. Every
 * adapter runs it first, so a malformed commit is refused the same way everywhere and never
 * takes the other commits of its batch down.
 *
 * @internal
 * @param commit - the commit to check
 * @returns an {@link InvariantError} naming the first broken invariant, or `undefined`
 * @example
 * ```ts
 * const error = validateCommit(commit);
 * if (error) return { ok: false, error };
 * ```
 */
export function validateCommit(commit: StepCommit): InvariantError | undefined {
  const problem = findProblem(commit);
  return problem === undefined ? undefined : new InvariantError(`commit of actor ${commit.actorId}: ${problem}`);
}

function findProblem(commit: StepCommit): string | undefined {
  const { tenantId, actorId, entry } = commit;
  if (tenantId.length === 0 || actorId.length === 0) return "tenantId and actorId must not be empty";
  if (!Number.isSafeInteger(commit.expectedRevision) || commit.expectedRevision < 0) return "expectedRevision must be an integer >= 0";
  if (!Number.isSafeInteger(commit.epoch) || commit.epoch < 0) return "epoch must be an integer >= 0";
  if (entry.tenantId !== tenantId || entry.actorId !== actorId) return "the journal entry belongs to another actor";
  // Revisions count steps: the entry of the step after revision r has seq r + 1, so the journal has no gaps.
  if (entry.seq !== commit.expectedRevision + 1) return `entry.seq ${entry.seq} must be expectedRevision + 1`;
  for (const effect of commit.effects) {
    if (effect.tenantId !== tenantId || effect.actorId !== actorId) return `effect ${effect.effectId} belongs to another actor`;
    if (effect.createdSeq !== entry.seq) return `effect ${effect.effectId} must have createdSeq ${entry.seq}`;
  }
  for (const timer of commit.timersSet) {
    if (timer.tenantId !== tenantId || timer.actorId !== actorId) return `timer ${timer.timerId} belongs to another actor`;
  }
  // Promise 7: nothing crosses a tenant boundary, not even a message.
  for (const message of commit.messages) {
    if (message.tenantId !== tenantId) return `message ${message.messageId} is addressed to another tenant`;
  }
  for (const child of commit.children) {
    if (child.tenantId !== tenantId) return `child ${child.actorId} belongs to another tenant`;
    if (child.parentId !== actorId) return `child ${child.actorId} must have parentId ${actorId}`;
  }
  const outcome = commit.effectOutcome;
  if (outcome !== undefined && outcome.state !== "completed" && outcome.state !== "failed") {
    return `effect outcome ${outcome.effectId} must be completed or failed`;
  }
  return validateChains(commit.chains);
}

/**
 * Checks the shape of delegation chains to store: a non-empty `chainRef` and at least one link,
 * each a non-empty string. Whether the links verify is the identity module's business, not the
 * store's.
 *
 * @internal
 * @param chains - the chains, or `undefined`
 * @returns what is wrong with the first bad chain, or `undefined`
 * @example
 * ```ts
 * const problem = validateChains(options.chains);
 * if (problem !== undefined) throw new InvariantError(problem);
 * ```
 */
export function validateChains(chains: readonly StoredChain[] | undefined): string | undefined {
  for (const chain of chains ?? []) {
    if (typeof chain.chainRef !== "string" || chain.chainRef.length === 0) return "a chain's chainRef must be a non-empty string";
    if (!Array.isArray(chain.tokens) || chain.tokens.length === 0) return `chain ${chain.chainRef} must have at least one link`;
    if (!chain.tokens.every((token) => typeof token === "string" && token.length > 0)) {
      return `chain ${chain.chainRef} must hold non-empty strings`;
    }
  }
  return undefined;
}
