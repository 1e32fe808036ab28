/**
 * One node process of the example: opens the embedded store, recovers whatever is unfinished,
 * starts the run (idempotently), and prints every committed step as a JSON line.
 */
import { createNode } from "../../index.js";
import { createScriptedModel } from "../../actors/models/index.js";
import { createPgliteStore } from "../../persistence/pglite/index.js";
import { supportDeskAgents } from "./agents.js";
import { deskScript } from "./script.js";

const [dataDir, bankUrl, label] = process.argv.slice(2) as [string, string, string];
const print = (line: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify({ process: label, ...line })}\n`);

const store = await createPgliteStore({ dataDir });
await store.migrate();
const { desk, fraudCheck } = supportDeskAgents(bankUrl);
const node = createNode({
  store,
  agents: [desk, fraudCheck],
  model: createScriptedModel.byTurn((request) => deskScript(request)),
  nodeId: label,
});
const { recovered } = await node.start();
print({ event: "started", recovered });
const { runId, created } = await node.startRun({
  tenantId: "acme",
  agentType: "support-desk",
  input: { ticket: "Order o-1001 arrived broken, please refund it." },
  idempotencyKey: "ticket-4711",
});
print({ event: "run", runId, created });

let seen = 0;
for (;;) {
  const entries = await node.readJournal("acme", runId, { afterSeq: seen });
  for (const entry of entries) {
    seen = entry.seq;
    const type = (entry.event as { type: string }).type;
    print({
      event: "step",
      seq: entry.seq,
      applied: type,
      state: entry.stateValue,
      planned: entry.planned.effects
        .map((e) => e.name)
        .concat(
          entry.planned.children.map((c) => `spawn ${c.agentType}`),
          entry.planned.timers.map((t) => `timer ${t.name}`),
        ),
    });
  }
  const view = await node.getActor("acme", runId);
  if (view.status !== "active") {
    print({
      event: "finished",
      status: view.status,
      output: view.output,
      effects: (await node.listEffects("acme", runId)).map((e) => ({ name: e.name, state: e.state, attempts: e.attempts })),
    });
    break;
  }
  await new Promise((resolve) => setTimeout(resolve, 20));
}
await node.close();
await store.close();
