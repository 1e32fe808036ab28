import { serializeError } from "../../core/errors.js";
import type { ClaimScope, Store } from "../../core/ports/store.js";
import type { Logger } from "../logger.js";

/** @internal What the sweeper needs from its node. */
export interface SweeperDeps {
  store: Store;
  nodeId: string;
  intervalMs: number;
  pageSize: number;
  logger: Logger;
  /** The node clock's now, for timers' deadlines. */
  now(): number;
  /** Whether the node may take work now (started, holding its lease, not draining). */
  canClaim(): boolean;
  /** How many nodes are live (this one included), to take a fair share of orphans per sweep. */
  liveNodeCount(): number;
  /** Activates actors the node now owns (a claimed page, or actors with work), `concurrency` at a time. */
  activateAll(actors: ReadonlyArray<{ tenantId: string; actorId: string }>): Promise<void>;
  /** Whether an actor is resident on the node. */
  isResident(tenantId: string, actorId: string): boolean;
  /** Re-reads a resident actor's mailbox if it is idle (a wake-up for it may have been lost); says whether it did. */
  refreshMailbox(tenantId: string, actorId: string): Promise<boolean>;
  /** Runs first in every sweep (re-reads cluster-wide settings a broadcast may have missed). */
  beforeSweep(): Promise<void>;
}

/**
 * @internal The store-driven safety net under the transport: every interval it claims orphaned
 * actors (owner gone: lease expired or stopped) and finds the node's own actors with work waiting
 * in the store (unstarted, pending messages, due timers, open effects) that nothing in memory is
 * handling, which is whatever a lost NATS message or a passivation left behind.
 */
export class Sweeper {
  readonly #deps: SweeperDeps;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #sweeping: Promise<void> | undefined;
  #again = false;
  /** Where the next sweep's page of pending work starts (undefined: from the first actor). */
  #cursor: { tenantId: string; actorId: string } | undefined;
  /** Counters, for tests and metrics. */
  readonly stats = { sweeps: 0, claimed: 0, reactivated: 0, refreshed: 0 };

  constructor(deps: SweeperDeps) {
    this.#deps = deps;
  }

  start(): void {
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Sweeps now (a node left); a sweep under way is followed by one more. */
  poke(): void {
    if (this.#stopped) return;
    if (this.#sweeping !== undefined) {
      this.#again = true;
      return;
    }
    void this.#run();
  }

  /** Waits for a sweep under way. */
  async settled(): Promise<void> {
    await this.#sweeping;
  }

  /**
   * Claims actors for this node, page by page, activating each page: `own` after a restart under
   * the same id or a lost lease, `orphaned` on every sweep, `any` on an embedded store's only node.
   *
   * @returns how many were claimed
   */
  async claim(only: ClaimScope, pagesMax = Infinity, pageSize = this.#deps.pageSize): Promise<number> {
    const { store, nodeId } = this.#deps;
    let claimed = 0;
    let afterKey: { tenantId: string; actorId: string } | undefined;
    for (let pages = 0; pages < pagesMax; pages++) {
      if (!this.#deps.canClaim()) break;
      const page = await store.claimActiveActors(nodeId, pageSize, { only, ...(afterKey === undefined ? {} : { afterKey }) });
      claimed += page.length;
      await this.#deps.activateAll(page);
      if (page.length < pageSize) break;
      const last = page.at(-1)!;
      afterKey = { tenantId: last.tenantId, actorId: last.actorId };
    }
    return claimed;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#run(), this.#deps.intervalMs);
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#sweeping = this.#sweep()
      .catch((error: unknown) => this.#deps.logger.warn({ err: serializeError(error) }, "sweep failed; retrying next interval"))
      .finally(() => {
        this.#sweeping = undefined;
        if (this.#again && !this.#stopped) {
          this.#again = false;
          void this.#run();
        } else this.#schedule();
      });
    await this.#sweeping;
  }

  async #sweep(): Promise<void> {
    const d = this.#deps;
    if (!d.canClaim()) return;
    this.stats.sweeps++;
    await d.beforeSweep();
    // A fair share of a dead node's actors per sweep: the survivors split them rather than the
    // first to sweep taking all. A full page means more are waiting: sweep again at once.
    const share = Math.max(1, Math.ceil(d.pageSize / Math.max(1, d.liveNodeCount())));
    const claimed = await this.claim("orphaned", 1, share);
    this.stats.claimed += claimed;
    if (claimed === share) this.#again = true;
    if (!d.canClaim()) return;
    // A page per sweep, from where the last one stopped: busy actors early in key order cannot keep
    // the sweeper from ever reaching the ones after them.
    const work = await d.store.findPendingWork(d.nodeId, d.now() + d.intervalMs, d.pageSize, this.#cursor);
    const last = work.at(-1);
    this.#cursor = work.length < d.pageSize || last === undefined ? undefined : { tenantId: last.tenantId, actorId: last.actorId };
    const inactive = work.filter((w) => !d.isResident(w.tenantId, w.actorId));
    this.stats.reactivated += inactive.length;
    await d.activateAll(inactive);
    for (const w of work) {
      if (!w.pendingMessages || !d.isResident(w.tenantId, w.actorId)) continue;
      if (await d.refreshMailbox(w.tenantId, w.actorId)) this.stats.refreshed++;
    }
  }
}
