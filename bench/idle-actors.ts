import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createNode } from "../index.js";
import { createPgStore } from "../persistence/pg/index.js";
import { idleAgent } from "./stepper-agent.js";
import { percentile } from "./stats.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

setFlagsFromString("--expose-gc");
const collect = runInNewContext("gc") as () => void;

/** Heap after a full collection, in bytes. */
function heapUsed(): number {
  collect();
  collect();
  return process.memoryUsage().heapUsed;
}

/**
 * Memory per idle resident actor (`actors` of them, all resident), and the time a passivated actor
 * takes to come back on a message (a second node, in the second schema, whose resident cap is a
 * tenth of its actors).
 */
export async function idleActors(
  databaseUrl: string,
  schemas: [string, string],
  actors: number,
  note: (name: string, value: string, context?: string) => void,
): Promise<unknown> {
  let store = createPgStore({ connectionString: databaseUrl, schema: schemas[0], poolSize: 8 });
  await store.migrate();
  // 1. Every actor resident. The pool is opened and the code warmed on a first batch before the
  // heap is measured, and it is measured again only once every actor's first step has committed.
  let node = createNode({
    store,
    agents: [idleAgent],
    logger: silent,
    passivation: { idleMs: 3_600_000, residentActorsMax: actors + 300 },
  });
  await node.start();
  const settled = async (): Promise<boolean> => (await store.findPendingWork(node.nodeId, Date.now(), 10)).length === 0;
  await startIdle(node, "warm", 200);
  await waitFor(settled);
  const heapBefore = heapUsed();
  await startIdle(node, "all", actors);
  await waitFor(async () => node.residentActors === actors + 200 && (await settled()));
  const perActor = (heapUsed() - heapBefore) / actors;
  // RSS is left out: after the earlier cells the process gives memory back while this one runs.
  note(
    `${actors} idle actors resident: heap per actor`,
    `${(perActor / 1024).toFixed(1)} KiB`,
    "heap after a full collection, before and after",
  );
  await node.close();
  await store.close();

  // 2. A tenth of them resident: a message to a passivated one activates it (snapshot + journal
  // tail). A schema of its own, so that this node does not take over the first node's actors.
  store = createPgStore({ connectionString: databaseUrl, schema: schemas[1], poolSize: 8 });
  await store.migrate();
  const cap = Math.max(10, Math.floor(actors / 10));
  node = createNode({ store, agents: [idleAgent], logger: silent, passivation: { idleMs: 3_600_000, residentActorsMax: cap } });
  await node.start();
  const ids = await startIdle(node, "capped", actors);
  await waitFor(async () => (await store.findPendingWork(node.nodeId, Date.now(), 10)).length === 0);
  const sample = ids.filter((_, i) => i % Math.max(1, Math.floor(actors / 200)) === 3);
  const latencies: number[] = [];
  for (const id of sample) {
    const sentAt = performance.now();
    await node.sendEvent({ tenantId: "bench", actorId: id, event: { type: "tick" }, messageId: `${id}-wake` });
    // Polled back to back: the last read's round trip (~0.3–0.5 ms) is part of what is measured.
    while ((await store.getActor("bench", id))!.revision < 2) await new Promise((r) => setImmediate(r));
    latencies.push(performance.now() - sentAt);
  }
  latencies.sort((a, b) => a - b);
  note(
    `reactivation of a passivated actor (${actors} actors, ${cap} resident)`,
    `p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms`,
    `message → step committed, n=${latencies.length}; resident after ${node.residentActors}`,
  );
  await node.close();
  await store.close();
  return { heapPerActorBytes: perActor, reactivationMs: latencies };
}

async function startIdle(node: ReturnType<typeof createNode>, tag: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < count; start += 200) {
    const page = await Promise.all(
      Array.from({ length: Math.min(200, count - start) }, (_, i) =>
        node.startRun({ tenantId: "bench", agentType: "idler", input: null, idempotencyKey: `${tag}-${start + i}` }),
      ),
    );
    ids.push(...page.map((p) => p.runId));
  }
  return ids;
}

async function waitFor(check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 300_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("idle-actors bench: condition not reached in 300 s");
    await new Promise((r) => setTimeout(r, 5));
  }
}
