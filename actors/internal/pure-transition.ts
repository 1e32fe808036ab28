import { createActor, type AnyMachineSnapshot, type AnyStateMachine } from "xstate";

/** @internal An action XState hands back instead of executing it. */
export interface CollectedAction {
  exec?: unknown;
  info?: unknown;
}

interface InertScope {
  actionExecutor: (action: CollectedAction) => void;
}

const scopes = new WeakMap<AnyStateMachine, InertScope>();

/**
 * @internal XState's pure `transition`/`initialTransition`, with the inert actor scope built once per
 * machine instead of once per call. XState's helpers construct a whole actor (and compute its
 * initial state) on every call; on the step path that was the largest single cost. The scope only
 * collects actions; it is safe to share because a transition runs synchronously to its end.
 */
function scopeOf(machine: AnyStateMachine): InertScope {
  let scope = scopes.get(machine);
  if (scope === undefined) {
    const self = createActor(machine);
    scope = {
      self,
      defer: () => {},
      id: "",
      logger: () => {},
      sessionId: "",
      stopChild: () => {},
      system: self.system,
      emit: () => {},
      actionExecutor: () => {},
    } as InertScope;
    scopes.set(machine, scope);
  }
  return scope;
}

/** @internal The next snapshot and the actions to run, without running any. */
export function pureTransition(
  machine: AnyStateMachine,
  snapshot: AnyMachineSnapshot,
  event: { type: string },
): [AnyMachineSnapshot, CollectedAction[]] {
  const scope = scopeOf(machine);
  const actions: CollectedAction[] = [];
  scope.actionExecutor = (action) => void actions.push(action);
  try {
    return [machine.transition(snapshot, event as never, scope as never) as AnyMachineSnapshot, actions];
  } finally {
    scope.actionExecutor = () => {};
  }
}

/** @internal The initial snapshot and the actions to run, without running any. */
export function pureInitialTransition(machine: AnyStateMachine, input: unknown): [AnyMachineSnapshot, CollectedAction[]] {
  const scope = scopeOf(machine);
  const actions: CollectedAction[] = [];
  scope.actionExecutor = (action) => void actions.push(action);
  try {
    return [machine.getInitialSnapshot(scope as never, input) as AnyMachineSnapshot, actions];
  } finally {
    scope.actionExecutor = () => {};
  }
}
