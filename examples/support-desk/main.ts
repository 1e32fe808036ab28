/**
 * `npm run example`: a support desk on the embedded default (PGlite in .data/, no servers).
 * A first node process is killed with SIGKILL while the run waits on its durable timer, after the
 * refund went out; a second process recovers the run and finishes it. The bank counts refunds.
 * Then a refund worker under a delegated grant meets a prompt injection (deputy.ts).
 */
import { spawn } from "node:child_process";
import { rm } from "node:fs/promises";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { startBank } from "./bank.js";
import { confusedDeputyStory } from "./deputy.js";
import { createPgliteStore } from "../../persistence/pglite/index.js";

const dataDir = fileURLToPath(new URL("../../.data/support-desk", import.meta.url));
const worker = fileURLToPath(new URL("./worker.ts", import.meta.url));

function describe(line: Record<string, unknown>): string {
  const who = String(line.process);
  switch (line.event) {
    case "started":
      return `[${who}] node up, recovered ${String(line.recovered)} unfinished actor(s) from the store`;
    case "run":
      return `[${who}] run ${String(line.runId)} ${line.created ? "started" : "already exists: carrying it on"}`;
    case "step": {
      const planned = (line.planned as string[]).length > 0 ? ` -> planned: ${(line.planned as string[]).join(", ")}` : "";
      const history = line.by === who ? "committed" : `read back (committed by ${String(line.by)})`;
      return `[${who}] step ${String(line.seq)} ${history}: ${String(line.applied)} => ${JSON.stringify(line.state)}${planned}`;
    }
    case "finished":
      return `[${who}] run ${String(line.status)}: ${JSON.stringify(line.output)}\n[${who}] effects: ${JSON.stringify(line.effects)}`;
    default:
      return JSON.stringify(line);
  }
}

/** Runs one node process; `killWhen` decides, line by line, when to SIGKILL it. */
function runNode(label: string, bankUrl: string, killWhen?: (line: Record<string, unknown>) => boolean): Promise<number | string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", worker, dataDir, bankUrl, label], { stdio: ["ignore", "pipe", "inherit"] });
    createInterface({ input: child.stdout }).on("line", (text) => {
      const line = JSON.parse(text) as Record<string, unknown>;
      console.log(describe(line));
      if (killWhen?.(line) && child.exitCode === null) {
        console.log(`\n*** kill -9 ${child.pid} (${label}) while the run waits on its durable timer ***\n`);
        child.kill("SIGKILL");
      }
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => resolve(signal ?? code ?? 0));
  });
}

await rm(dataDir, { recursive: true, force: true });
const bank = await startBank();
console.log(`Tessera support desk on PGlite (${dataDir}); bank at ${bank.url}\n`);
const first = await runNode("node-a", bank.url, (line) => line.event === "step" && line.state === "cooling");
if (first !== "SIGKILL") throw new Error(`the first node should have been killed, it ended with ${String(first)}`);
const second = await runNode("node-b", bank.url);
if (second !== 0) throw new Error(`the second node exited with ${String(second)}`);
console.log(`\nbank: ${bank.calls} refund call(s), ${bank.applied.size} refund(s) applied`);
if (bank.applied.size !== 1 || bank.calls !== 1) throw new Error("the refund should have been applied exactly once");
await bank.close();
console.log("The crash lost no step and repeated no refund.\n");

// Part two: authority only by delegation. The same store, in this process.
console.log("A prompt injection against a delegated refund worker:");
const store = await createPgliteStore({ dataDir });
await store.migrate();
const story = await confusedDeputyStory(store);
for (const line of story.lines) console.log(`  ${line}`);
await store.close();
if (story.bankCalls.length !== 1 || (story.bankCalls[0]!.args as { amount: number }).amount !== 42)
  throw new Error("only the granted refund may reach the bank");
console.log("The injected refund and the ungranted tool were refused before any tool ran; the bank saw one refund of 42.");
