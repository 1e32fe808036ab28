import type { Tracer } from "@opentelemetry/api";
import type { Clock } from "../../core/clock.js";
import type { Limits } from "../../core/limits.js";
import type { NewMessage } from "../../core/ports/store.js";
import type { Logger } from "../logger.js";
import type { ActorCell } from "./actor-cell.js";
import type { AgentRegistry } from "./agent-registry.js";
import type { EffectRunner } from "./effect-runner.js";
import type { GroupCommitter } from "./group-committer.js";
import type { Authorizer } from "./authorizer.js";
import type { NewActor, StoredChain } from "../../core/ports/store.js";

/** @internal What an actor cell needs from its node. */
export interface RuntimeContext {
  nodeId: string;
  clock: Clock;
  limits: Limits;
  tracer: Tracer;
  logger: Logger;
  registry: AgentRegistry;
  committer: GroupCommitter;
  effects: EffectRunner;
  /** Identity and delegation, when the node enforces them. */
  authorizer: Authorizer | undefined;
  /** Reads a stored chain. */
  loadChain(tenantId: string, chainRef: string): Promise<string[] | undefined>;
  /** Hands a chain created by a step to the cells that will need it. */
  rememberChain(tenantId: string, chain: StoredChain): void;
  /** Drops a cell whose commit was refused and loads the actor again from the store. */
  reload(cell: ActorCell): void;
  /** Activates an actor created by a committed step (a child). */
  activateNew(child: NewActor): void;
  /** Hands a committed message to its recipient if it is resident here. */
  deliver(message: NewMessage): void;
  /** Wakes anyone waiting on this actor. */
  notify(cell: ActorCell): void;
}
