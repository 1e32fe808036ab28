/**
 * Identity microbenchmark: `npx tsx bench/identity.ts`. Prints the median and min–max of signing a
 * link, verifying a 3-link chain cold, verifying from the cache, and signing plus verifying an
 * invocation; the byte sizes of the tokens; and the cost of refusing a depth bomb and a huge token.
 * Links carry 2 capabilities with 4 caveats and 30-character principal ids, as in IDENTITY.md §13.
 */
import { SimulatedClock } from "../core/clock.js";
import {
  ActorSigner,
  ChainCache,
  createInvocationVerifier,
  MemoryKeyDirectory,
  MemoryReplayStore,
  MemoryRevocationList,
  TenantAuthority,
  attenuate,
  issueRootLink,
  verifyChain,
} from "../identity/index.js";
import { recheckVerifiedChain } from "../identity/chain-verifier.js";
import type { Capability, InvocationRequest } from "../identity/index.js";
import { certifiedParty } from "./identity-setup.js";

const clock = new SimulatedClock(Date.UTC(2026, 10, 22, 2, 0, 0));
const directory = new MemoryKeyDirectory({ clock });
const revocations = new MemoryRevocationList({ clock });
const tenant = "t_acme";
const tool = "tsr:t_acme:tool:refund";
const rootAuthority = (): boolean => true;

const caps = (amountMax: number): Capability[] => [
  {
    res: "tool:refund",
    act: "/invoke",
    cav: [
      ["<=", ".amount", amountMax],
      ["==", ".customer", "c_123"],
      ["in", ".currency", ["EUR", "USD"]],
    ],
  },
  { res: "crm:customer", act: "/crm/read", cav: [["==", ".customer", "c_123"]] },
];

const party = (principal: string): ReturnType<typeof certifiedParty> => certifiedParty(authority, directory, principal);

async function measure(name: string, iterations: number, run: () => Promise<unknown> | unknown): Promise<void> {
  for (let i = 0; i < Math.min(50, iterations); i++) await run();
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const start = performance.now();
    await run();
    samples.push(performance.now() - start);
  }
  samples.sort((a, b) => a - b);
  const median = samples[Math.floor(samples.length / 2)] as number;
  const fmt = (ms: number): string => `${ms.toFixed(3)} ms`;
  console.log(
    `${name.padEnd(52)} median ${fmt(median).padStart(10)}   min–max ${fmt(samples[0] as number)} – ${fmt(samples[samples.length - 1] as number)}   (n=${iterations})`,
  );
}

const authority = await TenantAuthority.create({ tenant, clock });
await directory.addAuthority(authority.anchor());
const alice = await party("tsr:t_acme:user:alice-accounts");
const orchestrator = await party("tsr:t_acme:agent:orchestrator7");
const worker = await party("tsr:t_acme:agent:refundworker3");
const subSigner = await ActorSigner.create({ principal: "tsr:t_acme:agent:refundhelper4", clock });
const subCertificate = await authority.certifyAgent({
  principal: subSigner.principal,
  publicJwk: subSigner.publicJwk,
  type: "helper",
  version: "1",
  parent: worker.principal,
  node: "node-1",
  leaseEpoch: 1,
});
await directory.registerIdentity(subCertificate.token, subSigner.publicJwk);

const root = await issueRootLink(alice, { aud: orchestrator.principal, caps: caps(200), mdl: 3, clock });
const chain2 = await attenuate(orchestrator, { chain: [root], aud: worker.principal, caps: caps(100), clock });
const chain3 = await attenuate(worker, { chain: chain2, aud: subSigner.principal, caps: caps(50), clock });
const context = { tenant, directory, revocations, rootAuthority, clock };
const args = { amount: 30, customer: "c_123", currency: "EUR" };

const cache = new ChainCache();
const verifier = createInvocationVerifier({
  tenant,
  tool: { id: tool, res: "tool:refund", acts: ["/invoke"] },
  directory,
  revocations,
  replay: new MemoryReplayStore({ clock, entriesMax: 1_000_000 }),
  rootAuthority,
  clock,
  cache,
});
const uncached = createInvocationVerifier({
  tenant,
  tool: { id: tool, res: "tool:refund", acts: ["/invoke"] },
  directory,
  revocations,
  replay: new MemoryReplayStore({ clock, entriesMax: 1_000_000 }),
  rootAuthority,
  clock,
});
let effect = 0;
const handle = subSigner.beginTask("msg_bench", chain3);
const signInvocation = (): Promise<string> =>
  subSigner.signInvocation(handle, { tool, res: "tool:refund", act: "/invoke", args, effectId: `eff_bench-${++effect}` });
const request = async (): Promise<InvocationRequest> => ({
  chain: chain3,
  invocation: await signInvocation(),
  args,
  effectId: `eff_bench-${effect}`,
});

console.log(`identity microbenchmark — Node ${process.version}, ${(await import("node:os")).cpus().length} CPUs\n`);
await measure("sign a link (attenuate)", 2000, () =>
  attenuate(orchestrator, { chain: [root], aud: worker.principal, caps: caps(100), clock }),
);
await measure("verify a 3-link chain, cold (steps 0–9)", 1000, () => verifyChain(chain3, context));
const leafHash = (await verifier.verify(await request())).audit.chain[2]?.hash ?? "";
await measure("verify a 3-link chain, cached (lookup + re-checks)", 5000, () => {
  const hit = cache.get(tenant, leafHash);
  if (hit === undefined) throw new Error("cache miss");
  recheckVerifiedChain(hit, context);
});
await measure("sign an invocation", 2000, signInvocation);
const prepared: InvocationRequest[] = [];
for (let i = 0; i < 6100; i++) prepared.push(await request());
let next = 0;
await measure("verify an invocation, chain cached (10–13)", 3000, () => verifier.verify(prepared[next++] as InvocationRequest));
await measure("verify an invocation, chain cold (0–13)", 1000, () => uncached.verify(prepared[next++] as InvocationRequest));
await measure("sign + verify an invocation, chain cached", 2000, async () => verifier.verify(await request()));

const bomb = new Array<string>(10_000).fill("x.y.z");
const huge = `${"a".repeat(1024 * 1024)}.b.c`;
const denied = async (call: () => Promise<unknown>): Promise<void> => {
  try {
    await call();
  } catch {
    return;
  }
  throw new Error("expected a denial");
};
const someInvocation = (prepared[0] as InvocationRequest).invocation;
await measure("refuse a 10,000-link depth bomb (attack 28)", 5000, () =>
  denied(() => verifier.verify({ chain: bomb, invocation: someInvocation, args, effectId: "eff_x" })),
);
await measure("refuse a 1 MiB link (attack 29)", 5000, () =>
  denied(() => verifier.verify({ chain: [huge], invocation: someInvocation, args, effectId: "eff_x" })),
);

const bytes = (text: string): number => Buffer.byteLength(text, "utf8");
const invocation = await signInvocation();
console.log("\nsizes (2 capabilities, 4 caveats per link, 30-character principal ids)");
console.log(`  link (root / hop 1 / hop 2)        ${bytes(root)} / ${bytes(chain3[1] as string)} / ${bytes(chain3[2] as string)} B`);
console.log(`  3-link chain                       ${chain3.reduce((sum, link) => sum + bytes(link), 0)} B`);
console.log(`  invocation                         ${bytes(invocation)} B`);
console.log(`  identity token (agent)             ${bytes(subCertificate.token)} B`);
console.log(`  3-link chain + invocation          ${chain3.reduce((sum, link) => sum + bytes(link), 0) + bytes(invocation)} B`);
