/**
 * NATS is only the fast path (DESIGN.md §7): three node processes on a private nats-server that is
 * SIGKILLed twice during a workload, restarted once on its old store and once on an empty one.
 * Whatever NATS lost (wake-ups for new runs placed on other nodes, for pings, for passivated
 * actors) is re-derived from the store by the sweepers: no run is lost, and every run finishes
 * within one sweep interval + 5 s of NATS coming back. What NATS lost is printed as one JSON line.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  checkJournals,
  checkLedger,
  journalViolations,
  ledgerSummary,
  ledgerViolations,
  noJournalViolations,
  noLedgerViolations,
} from "../cluster/cluster-checks.js";
import { ClusterTest, runIdsOf, sleep, waitUntil, type ClusterWorker, type NodeSettings } from "../cluster/cluster-harness.js";
import type { WorkerStats } from "../cluster/protocol.js";
import { createPrivateNatsServer } from "../helpers/private-nats-server.js";

const settings: NodeSettings = {
  leaseTtlMs: 3_000,
  renewIntervalMs: 1_000,
  sweepIntervalMs: 1_000,
  // Actors idle for 1.5 s leave memory: their next ping needs a wake-up or a sweep to bring them back.
  idleMs: 1_500,
  residentActorsMax: 100,
  ledgerDelayMs: 50,
  poolSize: 6,
};
const outageMs = 2_500;

let cluster: ClusterTest | undefined;
afterEach(async () => {
  await cluster?.dispose();
  cluster = undefined;
});

/** The wake-up counters of all nodes, summed. */
interface WakeTotals {
  wakesSent: number;
  wakesReceived: number;
  publishFailures: number;
  sweeps: number;
  reactivated: number;
  refreshed: number;
  passivated: number;
  disconnects: number;
  reconnects: number;
}

async function totals(nodes: readonly ClusterWorker[]): Promise<WakeTotals> {
  const stats: WorkerStats[] = await Promise.all(nodes.map((node) => node.request("stats", {})));
  const sum = (pick: (s: WorkerStats) => number): number => stats.reduce((total, s) => total + pick(s), 0);
  const transport = (s: WorkerStats): { disconnects: number; reconnects: number } =>
    (s.transport as { disconnects: number; reconnects: number } | null) ?? { disconnects: 0, reconnects: 0 };
  return {
    wakesSent: sum((s) => s.clusterStats.wakesSent),
    wakesReceived: sum((s) => s.clusterStats.wakesReceived),
    publishFailures: sum((s) => s.clusterStats.publishFailures),
    sweeps: sum((s) => s.clusterStats.sweeps),
    reactivated: sum((s) => s.clusterStats.reactivated),
    refreshed: sum((s) => s.clusterStats.refreshed),
    passivated: sum((s) => s.clusterStats.passivated),
    disconnects: sum((s) => transport(s).disconnects),
    reconnects: sum((s) => transport(s).reconnects),
  };
}

/** `after - before`, per counter, with the wake-ups that never arrived. */
function delta(before: WakeTotals, after: WakeTotals): WakeTotals & { wakesLost: number } {
  const d = Object.fromEntries(
    Object.keys(after).map((k) => [k, after[k as keyof WakeTotals] - before[k as keyof WakeTotals]]),
  ) as unknown as WakeTotals;
  return { ...d, wakesLost: d.wakesSent - d.wakesReceived };
}

describe("cluster without NATS", () => {
  it(
    "loses no run when NATS dies twice (once coming back empty); runs finish within a sweep interval + 5 s of its return",
    { timeout: 180_000 },
    async () => {
      cluster = await ClusterTest.create(settings);
      const c = cluster;
      const nats = await createPrivateNatsServer();
      c.onDispose(() => nats.dispose());
      await c.run(async () => {
        await nats.start();
        const nodes = await c.startNodes(["n1", "n2", "n3"], { natsUrl: nats.url });
        const pings = new Map<string, number>();
        const within = settings.sweepIntervalMs + 5_000;

        // Wave A: 200 runs that need two pings.
        const waveA = runIdsOf("a", 200);
        waveA.forEach((id) => pings.set(id, 2));
        expect((await c.startRuns(nodes, waveA, 2)).errors).toEqual([]);
        await waitUntil("wave A waiting", async () => (await c.belowRevision(waveA, 2)).length === 0, {
          timeoutMs: 60_000,
          intervalMs: 100,
        });
        const t0 = await totals(nodes);

        // Outage 1, mid-workload: A's first pings are being charged when NATS dies.
        // The sends themselves are not awaited: their wake-ups are in flight when NATS dies.
        const ping1 = c.sendToAll(nodes, waveA, "ping", "ping1");
        const aCharges = (n: number): number =>
          c.ledger
            .snapshot()
            .records.filter(
              (r) => r.applied && (r.payload as { runId: string }).runId.startsWith("a-") && (r.payload as { n: number }).n === n,
            ).length;
        await waitUntil("a third of wave A's first-ping charges", () => aCharges(1) >= waveA.length / 3, {
          timeoutMs: 60_000,
          intervalMs: 10,
        });
        await nats.kill();
        const down1At = Date.now();
        const aPing1AtKill = aCharges(1);
        expect((await ping1).errors).toEqual([]);
        // While it is down: new runs (placed on every node, their owners' wake-ups fail) and A's second pings.
        const waveB = runIdsOf("b", 100);
        waveB.forEach((id) => pings.set(id, 1));
        expect((await c.startRuns(nodes, waveB, 1)).errors).toEqual([]);
        expect((await c.sendToAll(nodes, waveA, "ping", "ping2")).errors).toEqual([]);
        await sleep(Math.max(0, down1At + outageMs - Date.now()));
        const t1 = await totals(nodes);
        await nats.start();
        const back1At = Date.now();
        await waitUntil("wave A completed after NATS came back", async () => (await c.notCompleted(waveA)).length === 0, {
          timeoutMs: Math.max(0, back1At + within - Date.now()),
          intervalMs: 50,
          describe: async () => JSON.stringify({ open: (await c.notCompleted(waveA)).slice(0, 10) }),
        });
        const aDoneAt = Date.now();
        await waitUntil("wave B charged once", async () => (await c.belowRevision(waveB, 2)).length === 0, {
          timeoutMs: Math.max(0, back1At + within - Date.now()),
          intervalMs: 50,
          describe: async () => JSON.stringify({ below: (await c.belowRevision(waveB, 2)).slice(0, 10) }),
        });
        const bWaitingAt = Date.now();
        const t2 = await totals(nodes);

        // Outage 2: NATS comes back with an empty store. Meanwhile more runs, and B's pings.
        await nats.dispose();
        const down2At = Date.now();
        const waveC = runIdsOf("c", 100);
        waveC.forEach((id) => pings.set(id, 1));
        expect((await c.startRuns(nodes, waveC, 1)).errors).toEqual([]);
        expect((await c.sendToAll(nodes, waveB, "ping", "ping1")).errors).toEqual([]);
        await sleep(Math.max(0, down2At + outageMs - Date.now()));
        const t3 = await totals(nodes);
        await nats.start();
        const back2At = Date.now();
        const bAndC = [...waveB, ...waveC];
        // C's pings go out once NATS is back, as soon as their first charge is done.
        await waitUntil("wave C charged once", async () => (await c.belowRevision(waveC, 2)).length === 0, {
          timeoutMs: Math.max(0, back2At + within - Date.now()),
          intervalMs: 50,
          describe: async () => JSON.stringify({ below: (await c.belowRevision(waveC, 2)).slice(0, 10) }),
        });
        const cWaitingAt = Date.now();
        expect((await c.sendToAll(nodes, waveC, "ping", "ping1")).errors).toEqual([]);
        await waitUntil("waves B and C completed after NATS came back empty", async () => (await c.notCompleted(bAndC)).length === 0, {
          timeoutMs: Math.max(0, back2At + within - Date.now()),
          intervalMs: 50,
          describe: async () => JSON.stringify({ open: (await c.notCompleted(bAndC)).slice(0, 10) }),
        });
        const bcDoneAt = Date.now();
        const t4 = await totals(nodes);

        const allRuns = [...pings.keys()];
        expect(await c.statusCounts(allRuns)).toEqual({ completed: allRuns.length });
        const journals = await checkJournals(c);
        expect(journalViolations(journals)).toEqual(noJournalViolations);
        const ledger = await checkLedger(c, pings);
        expect(ledgerViolations(ledger)).toEqual(noLedgerViolations);
        expect(ledger.applied).toBe(waveA.length * 3 + (waveB.length + waveC.length) * 2);
        // NATS was really gone both times: the nodes' publishes failed.
        expect(t1.publishFailures - t0.publishFailures).toBeGreaterThan(0);
        expect(t3.publishFailures - t2.publishFailures).toBeGreaterThan(0);

        console.log(
          JSON.stringify({
            test: "cluster-nats-loss",
            lockWaitMs: c.lockWaitMs,
            clientRetries: c.clientRetries,
            runs: { a: waveA.length, b: waveB.length, c: waveC.length },
            aPing1ChargesAtKill: aPing1AtKill,
            outageMs: { first: back1At - down1At, second: back2At - down2At },
            afterBack1Ms: { waveACompleted: aDoneAt - back1At, waveBWaiting: bWaitingAt - back1At },
            afterBack2Ms: { waveCWaiting: cWaitingAt - back2At, wavesBCCompleted: bcDoneAt - back2At },
            before: t0,
            outage1: delta(t0, t1),
            recovery1: delta(t1, t2),
            outage2: delta(t2, t3),
            recovery2: delta(t3, t4),
            total: delta(t0, t4),
            journals: { actors: journals.actors, rows: journals.rows, rowsByNode: journals.rowsByNode },
            ledger: ledgerSummary(ledger),
          }),
        );
      });
    },
  );
});
