import { createNode, type Store } from "../index.js";
import type { BenchIdentity } from "./identity-setup.js";
import { percentile } from "./stats.js";
import { stepperAgent, type StepClock } from "./stepper-agent.js";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** Result of one cell of the durable-steps workload. */
export interface DurableResult {
  stepsPerSecond: number;
  stepLatencyP50Ms: number;
  stepLatencyP99Ms: number;
  steps: number;
  nodeCpuMicros: number;
  wallMs: number;
  largestBatch: number;
}

/**
 * Runs `runs` runs of `stepsPerRun` tool steps with at most `concurrency` in flight (a closed
 * loop: a finished run is replaced at once), through the normal node API. With `identity`, each
 * run starts with a 3-link delegation chain, and every tool call is a signed invocation that the
 * node verifies against it.
 */
export async function durableSteps(
  store: Store,
  options: { concurrency: number; runs: number; stepsPerRun: number; tag: string; identity?: BenchIdentity },
): Promise<DurableResult> {
  const clock: StepClock = { stamps: new Map() };
  const identity = options.identity;
  const node = createNode({ store, agents: [stepperAgent(clock)], logger: silent, identity: identity?.options });
  await node.start();
  // Chains are the caller's work (one signature each): minted before the clock starts.
  const chains =
    identity === undefined
      ? []
      : await Promise.all(Array.from({ length: options.runs }, (_, i) => identity.chainFor("bench", `r-${options.tag}-${i}`)));
  let next = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (next < options.runs) {
        const index = next++;
        const key = `${options.tag}-${index}`;
        const { runId } = await node.startRun({
          tenantId: "bench",
          agentType: "stepper",
          input: { steps: options.stepsPerRun },
          idempotencyKey: key,
          ...(identity === undefined ? {} : { runId: `r-${key}`, chain: chains[index] }),
        });
        const view = await node.waitForStatus("bench", runId, { timeoutMs: 600_000 });
        if (view.status !== "completed") throw new Error(`run ${runId} ended ${view.status}`);
      }
    }),
  );
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  const latencies: number[] = [];
  for (const stamps of clock.stamps.values()) for (let i = 1; i < stamps.length; i++) latencies.push(stamps[i]! - stamps[i - 1]!);
  latencies.sort((a, b) => a - b);
  const steps = options.runs * options.stepsPerRun;
  const largestBatch = node.commitStats.largestBatch;
  await node.close();
  return {
    stepsPerSecond: steps / (wallMs / 1000),
    stepLatencyP50Ms: percentile(latencies, 50),
    stepLatencyP99Ms: percentile(latencies, 99),
    steps,
    nodeCpuMicros: used.user + used.system,
    wallMs,
    largestBatch,
  };
}
