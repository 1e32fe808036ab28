/**
 * IDENTITY.md "Attacks the test suite must cover", 0–31: each refused with its typed code and no
 * effect reaching the counting tool stub.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { attenuate, identityLimits, issueRootLink } from "../../../identity/index.js";
import {
  CountingTool,
  baselineArgs,
  baselineChain,
  createWorld,
  expectDenied,
  invoke,
  payloadOf,
  refundCaveatsHop,
  refundPolicy,
  signClaims,
  tokenHash,
  verifierFor,
  withPayload,
} from "./fixtures.js";
import type { World } from "./fixtures.js";

let world: World;
let tool: CountingTool;
let chain: readonly string[];

beforeEach(async () => {
  world = await createWorld();
  tool = new CountingTool(verifierFor(world, refundPolicy(world.acme)));
  chain = await baselineChain(world);
});

/** The leaf link (orchestrator → worker) with some claims replaced, re-signed by `signer`. */
async function resignedLeaf(overrides: Record<string, unknown>, signer = world.acme.orchestrator): Promise<readonly string[]> {
  const leaf = { ...payloadOf(chain[1] as string), ...overrides };
  return [chain[0] as string, await signClaims(signer, "tessera-dlg+jwt", leaf)];
}

describe("attacks on chains (IDENTITY.md 0–31)", () => {
  it("0 baseline: alice → orchestrator → worker; worker invokes refund(30, c_123) is allowed", async () => {
    const verified = await tool.call(await invoke(world, chain));
    expect(tool.calls).toBe(1);
    expect(verified.audit.onBehalfOf).toBe(world.acme.alice.principal);
    expect(verified.audit.actor.principal).toBe(world.acme.worker.principal);
    expect(verified.audit.chain.map((link) => link.iss)).toEqual([world.acme.alice.principal, world.acme.orchestrator.principal]);
  });

  it("1 forged signature: one character of the leaf's signature flipped", async () => {
    const leaf = chain[1] as string;
    const index = leaf.length - 10;
    const flipped = leaf.slice(0, index) + (leaf[index] === "A" ? "B" : "A") + leaf.slice(index + 1);
    // The holder re-signs its invocation over the forged leaf, so only the signature is wrong.
    await expectDenied(tool, invoke(world, [chain[0] as string, flipped]), "ERR_AUTHZ_SIGNATURE");
  });

  it("2 edited payload, old signature: amount<=50 raised to 5000", async () => {
    const payload = payloadOf(chain[1] as string);
    const caps = [{ res: "tool:refund", act: "/invoke", cav: [["<=", ".amount", 5000]] }];
    const edited = [chain[0] as string, withPayload(chain[1] as string, { ...payload, caps })];
    await expectDenied(tool, invoke(world, edited, { args: { ...baselineArgs, amount: 150 } }), "ERR_AUTHZ_SIGNATURE");
  });

  it("3 forged link under another name: mallory signs a link claiming iss = orchestrator", async () => {
    const forged = await resignedLeaf({}, world.acme.mallory);
    const error = await expectDenied(tool, invoke(world, forged), "ERR_AUTHZ_KEY");
    expect(error.message).toContain("kid not certified for issuer");
  });

  it("4 expired link: issued 30 min ago with a 10 min TTL", async () => {
    const short = await baselineChain(world, { hopTtlSeconds: 600 });
    world.clock.advance(30 * 60_000);
    const error = await expectDenied(tool, invoke(world, short), "ERR_AUTHZ_TIME");
    expect(error.message).toContain("expired");
  });

  it("5 expired invocation: exp in the past", async () => {
    const request = await invoke(world, chain);
    world.clock.advance(120_000);
    await expectDenied(tool, request, "ERR_AUTHZ_TIME");
  });

  it("6 widened resource: the child adds tool:email /send", async () => {
    const widened = await resignedLeaf({
      caps: [
        { res: "tool:refund", act: "/invoke", cav: refundCaveatsHop },
        { res: "tool:email", act: "/send", cav: [] },
      ],
    });
    await expectDenied(tool, invoke(world, widened), "ERR_AUTHZ_WIDEN");
    // The issuing API refuses it at the source too.
    await expect(
      attenuate(
        { principal: world.acme.orchestrator.principal, key: world.acme.orchestrator.key },
        {
          chain: [chain[0] as string],
          aud: world.acme.worker.principal,
          caps: [{ res: "tool:email", act: "/send", cav: [] }],
          clock: world.clock,
        },
      ),
    ).rejects.toMatchObject({ code: "ERR_AUTHZ_WIDEN" });
  });

  it("7 widened action: child act / under parent /invoke", async () => {
    const widened = await resignedLeaf({ caps: [{ res: "tool:refund", act: "/", cav: [] }] });
    await expectDenied(tool, invoke(world, widened), "ERR_AUTHZ_WIDEN");
  });

  it("8 widened caveat: child says amount<=5000 and invokes 1000; link 0 still caps at 200", async () => {
    const widened = await resignedLeaf({ caps: [{ res: "tool:refund", act: "/invoke", cav: [["<=", ".amount", 5000]] }] });
    const error = await expectDenied(tool, invoke(world, widened, { args: { ...baselineArgs, amount: 1000 } }), "ERR_AUTHZ_CAVEAT");
    expect(error.details.link).toBe(0);
  });

  it("9 args outside the caveat: customer c_999", async () => {
    const error = await expectDenied(tool, invoke(world, chain, { args: { ...baselineArgs, customer: "c_999" } }), "ERR_AUTHZ_CAVEAT");
    expect(error.details.link).toBe(1);
  });

  it("10 root not entitled: alice roots tool:payroll", async () => {
    const payrollTool = new CountingTool(verifierFor(world, { id: "tsr:t_acme:tool:payroll", res: "tool:payroll", acts: ["/invoke"] }));
    const root = await issueRootLink(
      { principal: world.acme.alice.principal, key: world.acme.alice.key },
      { aud: world.acme.worker.principal, caps: [{ res: "tool:payroll", act: "/invoke", cav: [] }], mdl: 0, clock: world.clock },
    );
    const request = await invoke(world, [root], { tool: "tsr:t_acme:tool:payroll" });
    await expectDenied(payrollTool, request, "ERR_AUTHZ_ROOT");
  });

  it("11 confused deputy: mallory roots a chain to the orchestrator", async () => {
    const { malloryUser, orchestrator, worker } = world.acme;
    const root = await issueRootLink(
      { principal: malloryUser.principal, key: malloryUser.key },
      { aud: orchestrator.principal, caps: [{ res: "tool:refund", act: "/invoke", cav: [] }], mdl: 1, clock: world.clock },
    );
    const routed = await attenuate(
      { principal: orchestrator.principal, key: orchestrator.key },
      { chain: [root], aud: worker.principal, caps: [{ res: "tool:refund", act: "/invoke", cav: [] }], clock: world.clock },
    );
    await expectDenied(tool, invoke(world, routed), "ERR_AUTHZ_ROOT");
  });

  it("12 audience mismatch in the chain: mallory appends a link below the worker's leaf", async () => {
    const { mallory } = world.acme;
    const leaf = payloadOf(chain[1] as string);
    const appended = await signClaims(mallory, "tessera-dlg+jwt", {
      ...leaf,
      iss: mallory.principal,
      aud: mallory.principal,
      jti: "mallory-appended-0000001",
      dep: 2,
      mdl: 0,
      prf: tokenHash(chain[1] as string),
    });
    await expectDenied(tool, invoke(world, [...chain, appended], { invoker: mallory }), "ERR_AUTHZ_AUDIENCE");
  });

  it("13 stolen chain, thief's own identity: mallory invokes with the worker's chain", async () => {
    const { mallory, worker } = world.acme;
    // signInvocation refuses a non-holder at the source; the thief crafts the token herself.
    const claims = payloadOf((await invoke(world, chain)).invocation);
    const invocation = await signClaims(mallory, "tessera-inv+jwt", { ...claims, iss: mallory.principal, jti: "stolen-chain-mallory-01" });
    const error = await expectDenied(tool, { chain, invocation, args: baselineArgs, effectId: claims.eff as string }, "ERR_AUTHZ_AUDIENCE");
    expect(error.message).toContain("invoker is not the chain holder");
    expect(worker.principal).not.toBe(mallory.principal);
  });

  it("14 stolen chain, thief claims the holder's identity: iss = worker, signed with mallory's key", async () => {
    const claims = payloadOf((await invoke(world, chain)).invocation);
    const invocation = await signClaims(world.acme.mallory, "tessera-inv+jwt", { ...claims, jti: "stolen-chain-mallory-02" });
    await expectDenied(tool, { chain, invocation, args: baselineArgs, effectId: claims.eff as string }, "ERR_AUTHZ_KEY");
  });

  it("15 invocation for another tool: aud = tool:email presented to the refund tool", async () => {
    await expectDenied(tool, invoke(world, chain, { tool: world.acme.emailTool }), "ERR_AUTHZ_AUDIENCE");
  });

  it("16 args tampered after signing: amount 30 becomes 49", async () => {
    const request = await invoke(world, chain);
    await expectDenied(tool, { ...request, args: { ...baselineArgs, amount: 49 } }, "ERR_AUTHZ_ARGS");
  });

  it("17 replayed invocation: the same invocation verified twice", async () => {
    const request = await invoke(world, chain);
    await tool.call(request);
    await expectDenied(tool, request, "ERR_AUTHZ_REPLAY");
    expect(tool.calls).toBe(1);
  });

  it("18 chain from another tenant: a valid t_evil chain presented to a t_acme tool", async () => {
    const evilChain = await baselineChain(world, { tenant: world.evil });
    const evilTool = new CountingTool(verifierFor(world, refundPolicy(world.evil)));
    await evilTool.call(await invoke(world, evilChain, { tenant: world.evil }));
    expect(evilTool.calls).toBe(1);
    await expectDenied(tool, invoke(world, evilChain, { tenant: world.evil }), "ERR_AUTHZ_TENANT");
    // Even with the invocation addressed to the t_acme tool, the chain's tenant refuses it.
    const claims = payloadOf((await invoke(world, evilChain, { tenant: world.evil })).invocation);
    const retargeted = await signClaims(world.evil.worker, "tessera-inv+jwt", { ...claims, aud: world.acme.refundTool, tenant: "t_acme" });
    await expectDenied(
      tool,
      { chain: evilChain, invocation: retargeted, args: baselineArgs, effectId: claims.eff as string },
      "ERR_AUTHZ_TENANT",
    );
  });

  it("19 cross-tenant key: a t_evil key signs a link claiming tenant = t_acme", async () => {
    // Variant a: the t_evil agent names itself; its principal's tenant segment gives it away (step 3).
    const leaf = payloadOf(chain[1] as string);
    const evil = world.evil.orchestrator;
    const own = [chain[0] as string, await signClaims(evil, "tessera-dlg+jwt", { ...leaf, iss: evil.principal })];
    await expectDenied(tool, invoke(world, own), "ERR_AUTHZ_TENANT");
    // Variant b: it claims the t_acme orchestrator; the t_acme directory does not hold its key (step 4).
    const impersonating = [chain[0] as string, await signClaims(evil, "tessera-dlg+jwt", leaf)];
    const error = await expectDenied(tool, invoke(world, impersonating), "ERR_AUTHZ_KEY");
    expect(error.message).toContain("not certified in tenant t_acme");
  });

  it("20 revoked link: the middle link's jti is in the revocation set", async () => {
    const middle = payloadOf(chain[1] as string);
    await world.revocations.revoke({
      tenant: "t_acme",
      target: { kind: "link", jti: middle.jti as string },
      expiresAt: (middle.exp as number) + 30,
    });
    await expectDenied(tool, invoke(world, chain), "ERR_AUTHZ_REVOKED");
  });

  it("21 revoked after caching, epoch bumped: cached, then the root revoked", async () => {
    await tool.call(await invoke(world, chain));
    const root = payloadOf(chain[0] as string);
    await world.revocations.revoke({
      tenant: "t_acme",
      target: { kind: "link", jti: root.jti as string },
      expiresAt: (root.exp as number) + 30,
    });
    await world.directory.retire("t_acme", world.acme.carol.key.kid, Math.floor(world.clock.now() / 1000));
    await expectDenied(tool, invoke(world, chain), "ERR_AUTHZ_REVOKED");
  });

  it("22 revoked after caching, no epoch bump: cached, then the middle link revoked", async () => {
    const first = await tool.call(await invoke(world, chain));
    expect(first.audit.verifier.cache).toBe("miss");
    const second = await tool.call(await invoke(world, chain));
    expect(second.audit.verifier.cache).toBe("hit");
    const middle = payloadOf(chain[1] as string);
    const epoch = world.directory.epoch("t_acme");
    await world.revocations.revoke({
      tenant: "t_acme",
      target: { kind: "hash", hash: tokenHash(chain[1] as string) },
      expiresAt: (middle.exp as number) + 30,
    });
    expect(world.directory.epoch("t_acme")).toBe(epoch);
    await expectDenied(tool, invoke(world, chain), "ERR_AUTHZ_REVOKED");
  });

  it("23 cached chain outlives its expiry: a cache hit two hours later", async () => {
    const verifier = verifierFor(world, refundPolicy(world.acme));
    const cachedTool = new CountingTool(verifier);
    await cachedTool.call(await invoke(world, chain));
    expect(verifier.options.cache?.size).toBe(1);
    world.clock.advance(2 * 3600_000);
    const error = await expectDenied(cachedTool, invoke(world, chain), "ERR_AUTHZ_TIME");
    expect(error.step).toBe(7);
    // The entry is gone: two hours is past chainCacheTtlMs, so it was evicted as stale and the
    // chain verified cold (23b covers a hit whose chain expired within the TTL).
    expect(verifier.options.cache?.size).toBe(0);
  });

  it("23b cached chain expires within the cache's TTL: the hit itself re-checks the window", async () => {
    let asked = 0;
    const verifier = verifierFor(world, refundPolicy(world.acme), {
      rootAuthority: async (request) => {
        asked += 1;
        return world.rootAuthority(request);
      },
    });
    const cachedTool = new CountingTool(verifier);
    const nowSeconds = Math.floor(world.clock.now() / 1000);
    const shortLived = await resignedLeaf({ exp: nowSeconds + 10 });
    await cachedTool.call(await invoke(world, shortLived));
    // The entry is live (a hit) within the leaf's window...
    world.clock.advance(5000);
    expect((await cachedTool.call(await invoke(world, shortLived))).audit.verifier.cache).toBe("hit");
    const askedCold = asked;
    // ...and still within chainCacheTtlMs when the leaf, past its expiry and the clock skew, is refused.
    world.clock.advance((10 + identityLimits.clockSkewSeconds) * 1000);
    expect((5 + 10 + identityLimits.clockSkewSeconds) * 1000).toBeLessThan(identityLimits.chainCacheTtlMs);
    const error = await expectDenied(cachedTool, invoke(world, shortLived), "ERR_AUTHZ_TIME");
    expect(error.step).toBe(7);
    // The oracle was not asked again and the failing hit evicted the entry: the cached path denied.
    expect(asked).toBe(askedCold);
    expect(verifier.options.cache?.size).toBe(0);
  });

  it("24 cache shared across tenants: a chain verified for t_acme presented at a t_evil executor", async () => {
    const verifier = verifierFor(world, refundPolicy(world.acme));
    await new CountingTool(verifier).call(await invoke(world, chain));
    const shared = verifier.options.cache;
    expect(shared?.get("t_acme", tokenHash(chain[1] as string))).toBeDefined();
    expect(shared?.get("t_evil", tokenHash(chain[1] as string))).toBeUndefined();
    const evilTool = new CountingTool(verifierFor(world, refundPolicy(world.evil), shared === undefined ? {} : { cache: shared }));
    await expectDenied(evilTool, invoke(world, chain), "ERR_AUTHZ_TENANT");
  });

  it("25 compromised issuer key: the orchestrator's kid marked compromised", async () => {
    await tool.call(await invoke(world, chain));
    await world.directory.markCompromised("t_acme", world.acme.orchestrator.key.kid);
    const error = await expectDenied(tool, invoke(world, chain), "ERR_AUTHZ_REVOKED");
    expect(error.step).toBe(4);
  });

  it("26 too deep: a 6-link chain (max 5)", async () => {
    const six = Array.from({ length: 6 }, () => chain[0] as string);
    const error = await expectDenied(
      tool,
      invoke(world, chain).then((request) => ({ ...request, chain: six })),
      "ERR_AUTHZ_DEPTH",
    );
    expect(error.step).toBe(0);
  });

  it("27 depth budget: root mdl = 1 and a chain of three", async () => {
    const budget = await baselineChain(world, { rootMdl: 1 });
    const { worker, mallory } = world.acme;
    await expect(
      attenuate(
        { principal: worker.principal, key: worker.key },
        { chain: budget, aud: mallory.principal, caps: [{ res: "tool:refund", act: "/invoke", cav: [] }], clock: world.clock },
      ),
    ).rejects.toMatchObject({ code: "ERR_AUTHZ_DEPTH" });
    const leaf = payloadOf(budget[1] as string);
    const third = await signClaims(worker, "tessera-dlg+jwt", {
      ...leaf,
      iss: worker.principal,
      aud: mallory.principal,
      jti: "depth-budget-third-link",
      dep: 2,
      mdl: 0,
      prf: tokenHash(budget[1] as string),
    });
    const error = await expectDenied(tool, invoke(world, [...budget, third], { invoker: mallory }), "ERR_AUTHZ_DEPTH");
    expect(error.step).toBe(6);
  });

  it("28 depth bomb: 10,000 links are refused without touching a link", async () => {
    let touched = 0;
    const bomb = new Proxy(new Array<string>(10_000).fill("x.y.z"), {
      get(target, property, receiver) {
        if (typeof property === "string" && /^\d+$/.test(property)) touched++;
        return Reflect.get(target, property, receiver) as unknown;
      },
    });
    const request = await invoke(world, chain);
    await expectDenied(tool, { ...request, chain: bomb }, "ERR_AUTHZ_DEPTH");
    expect(touched).toBe(0);
  });

  it("29 huge token: a 1 MiB link", async () => {
    const huge = `${"a".repeat(1024 * 1024)}.b.c`;
    const request = await invoke(world, chain);
    const error = await expectDenied(tool, { ...request, chain: [huge] }, "ERR_AUTHZ_LIMITS");
    expect(error.details.limit).toBe("tokenBytesMax");
  });

  it("30 caveat bomb: not nested 50 deep (and 7 deep, inside the payload depth)", async () => {
    let bomb: unknown = ["==", ".amount", 30];
    for (let depth = 0; depth < 50; depth++) bomb = ["not", bomb];
    await expectDenied(
      tool,
      invoke(world, await resignedLeaf({ caps: [{ res: "tool:refund", act: "/invoke", cav: [bomb] }] })),
      "ERR_AUTHZ_LIMITS",
    );
    let seven: unknown = ["==", ".amount", 30];
    for (let depth = 0; depth < identityLimits.caveatDepthMax; depth++) seven = ["not", seven];
    const error = await expectDenied(
      tool,
      invoke(world, await resignedLeaf({ caps: [{ res: "tool:refund", act: "/invoke", cav: [seven] }] })),
      "ERR_AUTHZ_LIMITS",
    );
    expect(error.message).toContain("deeper than 6");
  });

  it("31 glob bomb: like with 40 wildcards", async () => {
    const glob = `${"*a".repeat(40)}`;
    const error = await expectDenied(
      tool,
      invoke(world, await resignedLeaf({ caps: [{ res: "tool:refund", act: "/invoke", cav: [["like", ".customer", glob]] }] })),
      "ERR_AUTHZ_LIMITS",
    );
    expect(error.message).toContain("wildcards");
  });
});
