import type { ActorCell } from "./actor-cell.js";

/** @internal What the passivator needs from its node. */
export interface PassivatorDeps {
  idleMs: number;
  residentActorsMax: number;
  /** The node's resident cells. */
  cells: ReadonlyMap<string, ActorCell>;
  /** Drops a cell from memory (its timers keep a wake-up). */
  passivate(cell: ActorCell): void;
}

/**
 * @internal Drops idle actors from memory: those idle for `idleMs`, and, past `residentActorsMax`,
 * the least recently active idle ones. A cell with a step queued or running, or an effect in flight,
 * stays. Runs on a timer of its own (real time: passivation is about this process's memory).
 */
export class Passivator {
  readonly #deps: PassivatorDeps;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Cells passivated so far, for tests and metrics. */
  passivated = 0;

  constructor(deps: PassivatorDeps) {
    this.#deps = deps;
  }

  start(): void {
    const everyMs = Math.max(20, Math.min(Math.floor(this.#deps.idleMs / 2), 5_000));
    this.#timer = setInterval(() => this.sweep(), everyMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Whether the node holds more actors than its cap. */
  get overCap(): boolean {
    return this.#deps.cells.size > this.#deps.residentActorsMax;
  }

  /**
   * Passivates idle cells past their idle time, then the least recently active idle ones while
   * more than `keep` are resident.
   */
  sweep(keep = this.#deps.residentActorsMax): void {
    const { cells, idleMs } = this.#deps;
    const now = performance.now();
    const idle: ActorCell[] = [];
    for (const cell of cells.values()) if (cell.passivatable) idle.push(cell);
    let resident = cells.size;
    const stay: ActorCell[] = [];
    for (const cell of idle) {
      if (now - cell.lastActiveAt >= idleMs) {
        this.#drop(cell);
        resident--;
      } else stay.push(cell);
    }
    if (resident <= keep) return;
    stay.sort((a, b) => a.lastActiveAt - b.lastActiveAt);
    for (const cell of stay) {
      if (resident <= keep) break;
      this.#drop(cell);
      resident--;
    }
  }

  #drop(cell: ActorCell): void {
    this.passivated++;
    this.#deps.passivate(cell);
  }
}
