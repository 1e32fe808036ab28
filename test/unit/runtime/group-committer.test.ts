import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { limitsSchema } from "../../../core/limits.js";
import type { CommitOutcome, StepCommit, Store } from "../../../core/ports/store.js";
import { GroupCommitter, lingerBatchMin } from "../../../actors/internal/group-committer.js";
import { commit } from "../../conformance/store-fixtures.js";

/** A store whose every `commitSteps` waits until the test releases it, recording each batch's size. */
function heldStore() {
  const batches: number[] = [];
  const held: Array<() => void> = [];
  const store = {
    commitSteps(commits: readonly StepCommit[]): Promise<CommitOutcome[]> {
      batches.push(commits.length);
      return new Promise((resolve) => held.push(() => resolve(commits.map(() => ({ ok: true }) as const))));
    },
  } as unknown as Store;
  /** Lets the oldest batch in flight land, and waits until the committer has acted on it. */
  const release = async (): Promise<void> => {
    held.shift()?.();
    await settle();
  };
  return { store, batches, release };
}

/** Lets pending promise callbacks run (`setTimeout` and `performance` are fake; `setImmediate` is not). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const commits = (count: number, from = 0): StepCommit[] => Array.from({ length: count }, (_, i) => commit("acme", `act_${from + i}`, 1));

describe("group commit under load", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends a lone commit at once: no time passes before the store sees it", async () => {
    const { store, batches, release } = heldStore();
    const committer = new GroupCommitter(store, 256, 5);
    const landed = committer.submit(commits(1)[0]!);
    await settle();
    expect(batches).toEqual([1]);
    await release();
    await expect(landed).resolves.toEqual({ ok: true });
    expect(committer.stats.lingered).toBe(0);
  });

  /**
   * One commit, then a batch of 6 behind it; `behind` more are queued while the 6 are in flight,
   * and then the 6 land (with none behind them, the flush loop ends).
   */
  async function loaded(lingerMs: number, behind = 2) {
    const held = heldStore();
    const committer = new GroupCommitter(held.store, 256, lingerMs);
    const outcomes = [committer.submit(commits(1)[0]!)];
    await settle();
    outcomes.push(...commits(6, 1).map((c) => committer.submit(c)));
    await settle();
    expect(held.batches).toEqual([1]);
    // The first batch held one commit: no sign of load, the six go out at once.
    await held.release();
    expect(held.batches).toEqual([1, 6]);
    outcomes.push(...commits(behind, 7).map((c) => committer.submit(c)));
    await held.release();
    return { ...held, committer, outcomes };
  }

  it(`after a batch of ${lingerBatchMin} or more, waits until as many commits are queued as it held`, async () => {
    const { committer, batches, release, outcomes } = await loaded(5);
    // Two queued, six expected: it waits, and no time has passed.
    expect(batches).toEqual([1, 6]);
    outcomes.push(...commits(3, 9).map((c) => committer.submit(c)));
    await settle();
    expect(batches).toEqual([1, 6]);
    // The sixth commit ends the wait at once.
    outcomes.push(committer.submit(commits(1, 12)[0]!));
    await settle();
    expect(batches).toEqual([1, 6, 6]);
    await release();
    await expect(Promise.all(outcomes)).resolves.toHaveLength(13);
    expect(committer.stats).toMatchObject({ batches: 3, commits: 13, largestBatch: 6, lingered: 1 });
  });

  it("waits no longer than lingerMs: then sends what came, and the next batch after a small one waits not at all", async () => {
    const { committer, batches, release, outcomes } = await loaded(5);
    await vi.advanceTimersByTimeAsync(4);
    expect(batches).toEqual([1, 6]);
    await vi.advanceTimersByTimeAsync(1);
    await settle();
    expect(batches).toEqual([1, 6, 2]);
    outcomes.push(committer.submit(commits(1, 9)[0]!));
    await release();
    expect(batches).toEqual([1, 6, 2, 1]);
    await release();
    await expect(Promise.all(outcomes)).resolves.toHaveLength(10);
    expect(committer.stats.lingered).toBe(1);
  });

  it("sends a commit after a quiet spell at once, even when the last batch was big", async () => {
    const { committer, batches, release, outcomes } = await loaded(5, 0);
    await vi.advanceTimersByTimeAsync(6);
    outcomes.push(committer.submit(commits(1, 7)[0]!));
    await settle();
    expect(batches).toEqual([1, 6, 1]);
    await release();
    await expect(Promise.all(outcomes)).resolves.toHaveLength(8);
    expect(committer.stats.lingered).toBe(0);
  });

  it("lingers too when the loop had ended and commits come right after a big batch landed", async () => {
    const { committer, batches, release, outcomes } = await loaded(5, 0);
    outcomes.push(...commits(2, 7).map((c) => committer.submit(c)));
    await settle();
    expect(batches).toEqual([1, 6]);
    await vi.advanceTimersByTimeAsync(5);
    await settle();
    expect(batches).toEqual([1, 6, 2]);
    await release();
    await expect(Promise.all(outcomes)).resolves.toHaveLength(9);
    expect(committer.stats.lingered).toBe(1);
  });

  it("flushNow ends a wait: a closing node sends what it has", async () => {
    const { committer, batches, release, outcomes } = await loaded(5);
    expect(batches).toEqual([1, 6]);
    committer.flushNow();
    await settle();
    expect(batches).toEqual([1, 6, 2]);
    await release();
    await expect(Promise.all(outcomes)).resolves.toHaveLength(9);
  });

  it("never waits with lingerMs 0", async () => {
    const { committer, batches, release, outcomes } = await loaded(0);
    expect(batches).toEqual([1, 6, 2]);
    await release();
    await expect(Promise.all(outcomes)).resolves.toHaveLength(9);
    expect(committer.stats.lingered).toBe(0);
  });

  it("takes groupCommitLingerMs from 0 to 1000 ms, whole numbers only", () => {
    expect(limitsSchema.safeParse({ groupCommitLingerMs: 0 }).success).toBe(true);
    expect(limitsSchema.safeParse({ groupCommitLingerMs: 1000 }).success).toBe(true);
    for (const bad of [-1, 1001, 0.5]) expect(limitsSchema.safeParse({ groupCommitLingerMs: bad }).success, String(bad)).toBe(false);
  });
});
