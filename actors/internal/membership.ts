import { serializeError } from "../../core/errors.js";
import { newId } from "../../core/ids.js";
import type { Json } from "../../core/json.js";
import type { NodeLease, Store } from "../../core/ports/store.js";
import type { Logger } from "../logger.js";

/** @internal What the membership needs from its node. */
export interface MembershipDeps {
  store: Store;
  nodeId: string;
  leaseTtlMs: number;
  renewIntervalMs: number;
  info: Json;
  logger: Logger;
  /**
   * The node's lease is gone (it expired before a renewal, or the node could not renew within its
   * TTL): the node must stop acting for its actors at once. Called once per loss; the membership
   * registers the node again afterwards and calls `onRegained`.
   */
  onLost(reason: "expired" | "unrenewed"): void;
  /** The node holds a lease again after a loss: claim what is still its own and orphaned. */
  onRegained(): void;
}

/**
 * @internal The node's lease in the node registry: registration, renewal (one statement per node,
 * whatever the number of actors), the list of live nodes, and self-fencing. Time that decides
 * ownership is the database's: a lease is valid until `lease_expires_at` by the database clock.
 * Locally the node counts its lease from the moment it *sent* the last successful renewal (before
 * the database stamped it), on a monotonic clock, so it stops acting no later than the database
 * lets others take over.
 */
export class Membership {
  readonly #deps: MembershipDeps;
  #liveNodes: readonly string[] = [];
  #drainingNodes: readonly string[] = [];
  /** This process's registration: a restart under the same node id registers another. */
  readonly #life = newId("life");
  #superseded = false;
  #lastRefresh = -Infinity;
  /** performance.now() when the last successful renewal or registration was sent. */
  #validSince = -Infinity;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #lost = false;
  #renewing: Promise<void> | undefined;

  constructor(deps: MembershipDeps) {
    this.#deps = deps;
  }

  /** Ids of the live nodes at the last renewal, sorted (this node included while it holds its lease). */
  get liveNodes(): readonly string[] {
    return this.#liveNodes;
  }

  /** The live nodes that take new actors (not draining), sorted. */
  get placementNodes(): readonly string[] {
    return this.#liveNodes.filter((n) => !this.#drainingNodes.includes(n));
  }

  /** Whether another process registered this node id since (this one then never acts again). */
  get superseded(): boolean {
    return this.#superseded;
  }

  /**
   * Whether this node surely still holds its lease: less than the TTL (minus a renewal interval of
   * margin for clock rate differences) passed since it sent its last successful renewal. Checked
   * before every tool attempt, so a node that was paused past its lease calls nothing when it wakes.
   */
  get holdsLease(): boolean {
    return (
      !this.#lost && !this.#superseded && performance.now() - this.#validSince < this.#deps.leaseTtlMs - this.#deps.renewIntervalMs / 2
    );
  }

  /** Registers the node (a new life of its id) and starts renewing. */
  async start(): Promise<NodeLease> {
    const lease = await this.#register();
    this.#schedule();
    return lease;
  }

  /** Stops renewing. The lease then expires on its own unless the node marks itself stopped. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** A node announced that it joined: count it live until the next renewal says otherwise. */
  noteJoined(nodeId: string): void {
    if (!this.#liveNodes.includes(nodeId)) this.#liveNodes = [...this.#liveNodes, nodeId].sort();
  }

  /** Renews now (before a hand-off, so the live list is fresh). */
  async refresh(): Promise<void> {
    await this.#renewing;
    if (this.#stopped) return;
    this.#lastRefresh = performance.now();
    await this.#renew();
  }

  /**
   * Renews now unless that happened in the last 200 ms: after a commit was refused for a stale
   * epoch, the node learns at once whether it lost its lease (or another process took its id).
   */
  refreshSoon(): void {
    if (performance.now() - this.#lastRefresh < 200 || this.#stopped) return;
    void this.refresh().catch(() => undefined);
  }

  /** Waits for a renewal under way, if any. */
  async settled(): Promise<void> {
    await this.#renewing;
  }

  async #register(): Promise<NodeLease> {
    const sentAt = performance.now();
    const info = { ...(this.#deps.info as Record<string, Json>), life: this.#life };
    const lease = await this.#deps.store.registerNode({ nodeId: this.#deps.nodeId, leaseTtlMs: this.#deps.leaseTtlMs, info });
    this.#validSince = sentAt;
    this.#liveNodes = lease.liveNodes;
    this.#drainingNodes = lease.drainingNodes;
    this.#lost = false;
    return lease;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#renewing = this.#renew().finally(() => {
        this.#renewing = undefined;
        this.#schedule();
      });
    }, this.#deps.renewIntervalMs);
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    const { store, nodeId, leaseTtlMs, logger } = this.#deps;
    if (this.#lost) return this.#regain();
    // A pause (SIGSTOP, a long GC, a frozen VM) past the lease: act as lost before asking the store.
    if (performance.now() - this.#validSince >= leaseTtlMs) return this.#lose("unrenewed");
    const sentAt = performance.now();
    let lease: NodeLease | undefined;
    try {
      lease = await store.renewNode(nodeId, leaseTtlMs, this.#life);
    } catch (error) {
      logger.warn({ err: serializeError(error), nodeId }, "lease renewal failed; retrying");
      if (performance.now() - this.#validSince >= leaseTtlMs) this.#lose("unrenewed");
      return;
    }
    if (this.#stopped) return;
    if (lease === undefined) return this.#lose("expired");
    this.#validSince = sentAt;
    this.#liveNodes = lease.liveNodes;
    this.#drainingNodes = lease.drainingNodes;
  }

  #lose(reason: "expired" | "unrenewed"): void {
    if (this.#lost) return;
    this.#lost = true;
    this.#deps.logger.error({ nodeId: this.#deps.nodeId, reason }, "node lost its lease: dropping every actor it hosted");
    this.#deps.onLost(reason);
  }

  async #regain(): Promise<void> {
    if (this.#superseded) return;
    try {
      // A live registration of this id with another life is another process: this one is its
      // past (restarted under the same id while this was paused or cut off). It must never act
      // again, nor take the actors back.
      const mine = (await this.#deps.store.listNodes()).find((n) => n.nodeId === this.#deps.nodeId);
      const life = (mine?.info as { life?: unknown } | undefined)?.life;
      if (mine?.live === true && life !== undefined && life !== this.#life) {
        this.#superseded = true;
        this.#deps.logger.error({ nodeId: this.#deps.nodeId }, "another process registered this node id: this one stops acting for good");
        this.stop();
        return;
      }
      await this.#register();
    } catch (error) {
      this.#deps.logger.warn({ err: serializeError(error), nodeId: this.#deps.nodeId }, "registering again failed; retrying");
      return;
    }
    if (this.#stopped) return;
    this.#deps.logger.warn({ nodeId: this.#deps.nodeId }, "node registered again after losing its lease");
    this.#deps.onRegained();
  }
}

/**
 * Rendezvous (highest random weight) hashing: the node among `nodes` that scores highest for `key`.
 * Every node computes the same answer from the same list, and when a node joins or leaves only the
 * keys it wins or held move.
 *
 * @returns the chosen node id, or undefined when `nodes` is empty
 */
export function rendezvous(key: string, nodes: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const node of nodes) {
    const score = fnv1a(`${node}\u0000${key}`);
    if (score > bestScore || (score === bestScore && best !== undefined && node < best)) {
      best = node;
      bestScore = score;
    }
  }
  return best;
}

/** 32-bit FNV-1a with a final avalanche; placement needs spread, not secrecy. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}
