/**
 * The "suite must also cover" list of IDENTITY.md: the runtime-level confused deputy (task-scoped
 * chain handles), a zombie node after lease takeover, revocation-feed staleness, directory-epoch
 * races during rotation, a replay store spanning executors, kid collisions across tenants,
 * oversized args; plus session mode, vouched-human roots and revocation targets.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  ActorSigner,
  ChainCache,
  MemoryReplayStore,
  MemoryRevocationList,
  attenuate,
  identityLimits,
  issueRootLink,
} from "../../../identity/index.js";
import type { Capability } from "../../../identity/index.js";
import {
  CountingTool,
  baselineArgs,
  baselineChain,
  certifyAgent,
  createWorld,
  expectDenied,
  invoke,
  newEffectId,
  newParty,
  payloadOf,
  refundCaveatsHop,
  refundPolicy,
  signClaims,
  tokenHash,
  verifierFor,
} from "./fixtures.js";
import type { World } from "./fixtures.js";

let world: World;
let chain: readonly string[];
let tool: CountingTool;

beforeEach(async () => {
  world = await createWorld();
  chain = await baselineChain(world);
  tool = new CountingTool(verifierFor(world, refundPolicy(world.acme)));
});

const refundCap: Capability = { res: "tool:refund", act: "/invoke", cav: refundCaveatsHop };

async function actorSigner(id: string, leaseEpoch: number): Promise<ActorSigner> {
  const signer = await ActorSigner.create({ principal: `tsr:t_acme:agent:${id}`, clock: world.clock });
  const certificate = await world.acme.authority.certifyAgent({
    principal: signer.principal,
    publicJwk: signer.publicJwk,
    type: "refund-worker",
    version: "3",
    parent: null,
    node: `node-${leaseEpoch}`,
    leaseEpoch,
  });
  await world.directory.registerIdentity(certificate.token, signer.publicJwk);
  return signer;
}

async function rootTo(aud: string, caps: readonly Capability[] = [refundCap], mdl = 2): Promise<readonly string[]> {
  const { alice } = world.acme;
  return [await issueRootLink({ principal: alice.principal, key: alice.key }, { aud, caps, mdl, clock: world.clock })];
}

describe("task-scoped chain handles (runtime-level confused deputy)", () => {
  it("while processing message M an actor can sign only with M's chain", async () => {
    const deputy = await actorSigner("deputy-1", 1);
    const fromAlice = await rootTo(deputy.principal);
    const fromOther = await rootTo(deputy.principal, [{ res: "tool:refund", act: "/invoke", cav: [["<=", ".amount", 10]] }]);
    const m1 = deputy.beginTask("msg_1", fromAlice);
    deputy.endTask(m1);
    const m2 = deputy.beginTask("msg_2", fromOther);
    const options = { tool: world.acme.refundTool, res: "tool:refund", act: "/invoke", args: baselineArgs, effectId: newEffectId() };
    await expect(deputy.signInvocation(m1, options)).rejects.toMatchObject({ code: "ERR_AUTHZ_SCOPE" });
    await expect(deputy.delegate(m1, { aud: world.acme.worker.principal, caps: [refundCap] })).rejects.toMatchObject({
      code: "ERR_AUTHZ_SCOPE",
    });
    await expect(deputy.signInvocation({ taskId: "msg_2" }, options)).rejects.toMatchObject({ code: "ERR_AUTHZ_SCOPE" });
    const invocation = await deputy.signInvocation(m2, options);
    expect(payloadOf(invocation).prf).toBe(tokenHash(fromOther[0] as string));
    expect(payloadOf(invocation).cause).toBe("msg_2");
    // The invocation carries msg_2's narrower chain: 30 exceeds its cap of 10.
    await expectDenied(tool, { chain: fromOther, invocation, args: baselineArgs, effectId: options.effectId }, "ERR_AUTHZ_CAVEAT");
    deputy.endTask(m2);
    await expect(deputy.signInvocation(m2, options)).rejects.toMatchObject({ code: "ERR_AUTHZ_SCOPE" });
  });

  it("overlapping tasks (a step and an earlier step's dispatched effect) each sign only with their own chain", async () => {
    const actor = await actorSigner("overlap-1", 1);
    const chainA = await rootTo(actor.principal);
    const chainB = await rootTo(actor.principal, [{ res: "tool:refund", act: "/invoke", cav: [["<=", ".amount", 10]] }]);
    const a = actor.beginTask("msg_a", chainA);
    const b = actor.beginTask("msg_b", chainB);
    const options = { tool: world.acme.refundTool, res: "tool:refund", act: "/invoke", args: baselineArgs };
    expect(payloadOf(await actor.signInvocation(a, { ...options, effectId: newEffectId() })).prf).toBe(tokenHash(chainA[0] as string));
    expect(payloadOf(await actor.signInvocation(b, { ...options, effectId: newEffectId() })).prf).toBe(tokenHash(chainB[0] as string));
    actor.endTask(a);
    await expect(actor.signInvocation(a, { ...options, effectId: newEffectId() })).rejects.toMatchObject({ code: "ERR_AUTHZ_SCOPE" });
    expect(payloadOf(await actor.signInvocation(b, { ...options, effectId: newEffectId() })).prf).toBe(tokenHash(chainB[0] as string));
  });

  it("a task that carried no chain cannot sign, and a deputy acts under the requester's chain", async () => {
    const orchestrator = await actorSigner("orchestrator-9", 1);
    const deputy = await actorSigner("deputy-2", 1);
    const bare = deputy.beginTask("msg_bare", undefined);
    await expect(
      deputy.signInvocation(bare, {
        tool: world.acme.refundTool,
        res: "tool:refund",
        act: "/invoke",
        args: baselineArgs,
        effectId: newEffectId(),
      }),
    ).rejects.toMatchObject({
      code: "ERR_AUTHZ_SCOPE",
    });
    deputy.endTask(bare);
    const task = orchestrator.beginTask("msg_from_alice", await rootTo(orchestrator.principal));
    const delegated = await orchestrator.delegate(task, { aud: deputy.principal, caps: [refundCap], ttlSeconds: 600 });
    orchestrator.endTask(task);
    const work = deputy.beginTask("msg_from_orchestrator", delegated);
    const effectId = newEffectId();
    const invocation = await deputy.signInvocation(work, {
      tool: world.acme.refundTool,
      res: "tool:refund",
      act: "/invoke",
      args: baselineArgs,
      effectId,
    });
    const verified = await tool.call({ chain: delegated, invocation, args: baselineArgs, effectId });
    expect(verified.audit.onBehalfOf).toBe(world.acme.alice.principal);
    expect(verified.audit.chain.map((link) => link.aud)).toEqual([orchestrator.principal, deputy.principal]);
  });
});

describe("zombie node after lease takeover", () => {
  it("the retired key of epoch e−1 cannot invoke, while links it signed earlier still verify", async () => {
    const zombie = await actorSigner("refund-worker-9", 4);
    const orchestratorOld = world.acme.orchestrator;
    const delegated = await attenuate(
      { principal: orchestratorOld.principal, key: orchestratorOld.key },
      { chain: await rootTo(orchestratorOld.principal), aud: zombie.principal, caps: [refundCap], clock: world.clock },
    );
    world.clock.advance(5000);
    // Both the worker's and the orchestrator's leases are taken over: new keys at a higher epoch.
    const successor = await actorSigner("refund-worker-9", 5);
    await certifyAgent(world.acme.authority, world.directory, await newParty(orchestratorOld.principal), 2);
    expect(world.directory.get("t_acme", zombie.kid)?.status).toBe("retired");
    expect(world.directory.get("t_acme", orchestratorOld.key.kid)?.status).toBe("retired");
    const options = { tool: world.acme.refundTool, res: "tool:refund", act: "/invoke", args: baselineArgs, effectId: newEffectId() };
    const zombieTask = zombie.beginTask("msg_z", delegated);
    const zombieInvocation = await zombie.signInvocation(zombieTask, options);
    const error = await expectDenied(
      tool,
      { chain: delegated, invocation: zombieInvocation, args: baselineArgs, effectId: options.effectId },
      "ERR_AUTHZ_KEY",
    );
    expect(error.message).toContain("retired");
    const task = successor.beginTask("msg_s", delegated);
    await tool.call({
      chain: delegated,
      invocation: await successor.signInvocation(task, options),
      args: baselineArgs,
      effectId: options.effectId,
    });
    expect(tool.calls).toBe(1);
  });

  it("an identity token of an older lease epoch is refused at registration", async () => {
    const party = await newParty("tsr:t_acme:agent:refund-worker-8");
    await certifyAgent(world.acme.authority, world.directory, party, 7);
    const stale = await newParty("tsr:t_acme:agent:refund-worker-8");
    await expect(certifyAgent(world.acme.authority, world.directory, stale, 6)).rejects.toMatchObject({ code: "ERR_IDENTITY_STALE_EPOCH" });
  });
});

describe("revocation-feed staleness", () => {
  it("fails closed for write tools, and opens only for read-only tools where the tenant opted in", async () => {
    const replica = new MemoryRevocationList({ clock: world.clock, mode: "replica" });
    const writeTool = new CountingTool(verifierFor(world, refundPolicy(world.acme), { revocations: replica }));
    await expectDenied(writeTool, invoke(world, chain), "ERR_AUTHZ_REVOCATION_STALE");
    replica.markSynced("t_acme");
    await writeTool.call(await invoke(world, chain));
    world.clock.advance(6000);
    await expectDenied(writeTool, invoke(world, chain), "ERR_AUTHZ_REVOCATION_STALE");
    const readOnly = refundPolicy(world.acme, { risk: "read" });
    await expectDenied(
      new CountingTool(verifierFor(world, readOnly, { revocations: replica })),
      invoke(world, chain),
      "ERR_AUTHZ_REVOCATION_STALE",
    );
    const optedIn = new CountingTool(verifierFor(world, readOnly, { revocations: replica, failOpenReadOnlyWhenStale: true }));
    const verified = await optedIn.call(await invoke(world, chain));
    expect(verified.revocationStale).toBe(true);
  });
});

describe("directory-epoch races during rotation", () => {
  it("a key compromised while the chain is being verified is not trusted", async () => {
    let compromised = false;
    const racing = new CountingTool(
      verifierFor(world, refundPolicy(world.acme), {
        rootAuthority: async (request) => {
          if (!compromised) {
            compromised = true;
            await world.directory.markCompromised("t_acme", world.acme.orchestrator.key.kid);
          }
          return world.rootAuthority(request);
        },
      }),
    );
    await expectDenied(racing, invoke(world, chain), "ERR_AUTHZ_REVOKED");
  });

  it("a rotation bumps the epoch: the next call verifies cold, and links of the retired key still verify", async () => {
    const first = await tool.call(await invoke(world, chain));
    expect(first.audit.verifier.cache).toBe("miss");
    expect((await tool.call(await invoke(world, chain))).audit.verifier.cache).toBe("hit");
    world.clock.advance(1000);
    await certifyAgent(world.acme.authority, world.directory, await newParty(world.acme.orchestrator.principal), 2);
    const after = await tool.call(await invoke(world, chain));
    expect(after.audit.verifier.cache).toBe("miss");
    expect(after.audit.verifier.directoryEpoch).toBe(world.directory.epoch("t_acme"));
  });

  it("keys certified and renewed after caching leave the cached chain valid: the next calls are hits", async () => {
    expect((await tool.call(await invoke(world, chain))).audit.verifier.cache).toBe("miss");
    const epoch = world.directory.epoch("t_acme");
    // Every actor a node spawns or rehydrates certifies a key of its own: under load, many a second.
    const spawned = await newParty("tsr:t_acme:agent:spawned-1");
    await certifyAgent(world.acme.authority, world.directory, spawned, 1);
    world.clock.advance(1000);
    await certifyAgent(world.acme.authority, world.directory, spawned, 1);
    expect(world.directory.epoch("t_acme")).toBe(epoch + 2);
    const hit = await tool.call(await invoke(world, chain));
    expect(hit.audit.verifier.cache).toBe("hit");
    // The audit names the directory the decision was taken against, not the one of the cached verification.
    expect(hit.audit.verifier.directoryEpoch).toBe(epoch + 2);
  });

  it("a key of the chain compromised after caching fails the next call (the cache entry no longer counts)", async () => {
    expect((await tool.call(await invoke(world, chain))).audit.verifier.cache).toBe("miss");
    await certifyAgent(world.acme.authority, world.directory, await newParty("tsr:t_acme:agent:spawned-2"), 1);
    await world.directory.markCompromised("t_acme", world.acme.orchestrator.key.kid);
    await expectDenied(tool, invoke(world, chain), "ERR_AUTHZ_REVOKED");
  });
});

describe("cached verifications age out", () => {
  it("a hit older than chainCacheTtlMs verifies cold again, asking the root-authority oracle again", async () => {
    let granting = true;
    let asked = 0;
    const aging = new CountingTool(
      verifierFor(world, refundPolicy(world.acme), {
        rootAuthority: async (request) => {
          asked += 1;
          return granting && (await world.rootAuthority(request));
        },
      }),
    );
    expect((await aging.call(await invoke(world, chain))).audit.verifier.cache).toBe("miss");
    const askedCold = asked;
    expect(askedCold).toBeGreaterThan(0);
    granting = false;
    // Within the TTL the oracle's earlier answer stands (IDENTITY.md §8 skips step 5 on a hit).
    world.clock.advance(identityLimits.chainCacheTtlMs);
    expect((await aging.call(await invoke(world, chain))).audit.verifier.cache).toBe("hit");
    expect(asked).toBe(askedCold);
    // Past it, the chain is verified cold and the oracle's new answer counts.
    world.clock.advance(1);
    await expectDenied(aging, invoke(world, chain), "ERR_AUTHZ_ROOT");
    expect(asked).toBeGreaterThan(askedCold);
  });

  it("a clock that steps back does not stretch the TTL: the entry counts as stale", async () => {
    let granting = true;
    const stepping = new CountingTool(
      verifierFor(world, refundPolicy(world.acme), {
        rootAuthority: async (request) => granting && (await world.rootAuthority(request)),
      }),
    );
    world.clock.advance(30 * 60_000);
    expect((await stepping.call(await invoke(world, chain))).audit.verifier.cache).toBe("miss");
    granting = false;
    // An NTP step back of 20 minutes, then 19 minutes later: 19 minutes after the verification by
    // the wall clock, yet a negative age by the clock's own reading (the chain itself still valid).
    world.clock.advance(-20 * 60_000);
    world.clock.advance(19 * 60_000);
    await expectDenied(stepping, invoke(world, chain), "ERR_AUTHZ_ROOT");
  });
});

describe("replay store spanning executors", () => {
  it("an invocation accepted by one executor is refused by another sharing the store", async () => {
    const shared = new MemoryReplayStore({ clock: world.clock });
    const executorA = new CountingTool(verifierFor(world, refundPolicy(world.acme), { replay: shared }));
    const executorB = new CountingTool(verifierFor(world, refundPolicy(world.acme), { replay: shared }));
    const request = await invoke(world, chain);
    await executorA.call(request);
    await expectDenied(executorB, request, "ERR_AUTHZ_REPLAY");
  });

  it("a full replay store fails closed (retryably) and recovers as entries expire", async () => {
    const small = new CountingTool(
      verifierFor(world, refundPolicy(world.acme), { replay: new MemoryReplayStore({ clock: world.clock, entriesMax: 2 }) }),
    );
    await small.call(await invoke(world, chain));
    await small.call(await invoke(world, chain));
    const error = await expectDenied(small, invoke(world, chain), "ERR_AUTHZ_REPLAY_STORE_FULL");
    expect(error.retryable).toBe(true);
    world.clock.advance(95_000);
    await small.call(await invoke(world, chain));
  });
});

describe("kid collisions across tenants", () => {
  it("another tenant certifying the same public key changes nothing in this tenant", async () => {
    const { orchestrator } = world.acme;
    const certificate = await world.evil.authority.certifyAgent({
      principal: "tsr:t_evil:agent:copycat",
      publicJwk: orchestrator.key.publicJwk,
      type: "x",
      version: "1",
      parent: null,
      node: "evil",
      leaseEpoch: 1,
    });
    await world.directory.registerIdentity(certificate.token, orchestrator.key.publicJwk);
    expect(world.directory.get("t_evil", orchestrator.key.kid)?.principal).toBe("tsr:t_evil:agent:copycat");
    expect(world.directory.get("t_acme", orchestrator.key.kid)?.principal).toBe(orchestrator.principal);
    await tool.call(await invoke(world, chain));
    expect(tool.calls).toBe(1);
  });

  it("an identity token from another tenant's authority, or for a key held by another principal, is refused", async () => {
    const intruder = await newParty("tsr:t_acme:agent:intruder");
    const crossTenant = await world.evil.authority.certifyAgent({
      principal: "tsr:t_evil:agent:intruder",
      publicJwk: intruder.key.publicJwk,
      type: "x",
      version: "1",
      parent: null,
      node: "n",
      leaseEpoch: 1,
    });
    const forgedTenant = withTenant(crossTenant.token);
    await expect(world.directory.registerIdentity(forgedTenant, intruder.key.publicJwk)).rejects.toMatchObject({
      code: "ERR_IDENTITY_TOKEN_INVALID",
    });
    await expect(
      world.evil.authority.certifyAgent({
        principal: intruder.principal,
        publicJwk: intruder.key.publicJwk,
        type: "x",
        version: "1",
        parent: null,
        node: "n",
        leaseEpoch: 1,
      }),
    ).rejects.toMatchObject({
      code: "ERR_VALIDATION",
    });
    const stolenKey = await world.acme.authority.certifyAgent({
      principal: intruder.principal,
      publicJwk: world.acme.worker.key.publicJwk,
      type: "x",
      version: "1",
      parent: null,
      node: "n",
      leaseEpoch: 1,
    });
    await expect(world.directory.registerIdentity(stolenKey.token, world.acme.worker.key.publicJwk)).rejects.toMatchObject({
      code: "ERR_IDENTITY_KID_CONFLICT",
    });
    await expect(world.directory.registerIdentity(stolenKey.token, intruder.key.publicJwk)).rejects.toMatchObject({
      code: "ERR_IDENTITY_TOKEN_INVALID",
    });
  });
});

function withTenant(token: string): string {
  const [header, payload, signature] = token.split(".") as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<string, unknown>;
  const edited = { ...claims, tenant: "t_acme", iss: "tsr:t_acme:authority:tenant", sub: "tsr:t_acme:agent:intruder" };
  return `${header}.${Buffer.from(JSON.stringify(edited)).toString("base64url")}.${signature}`;
}

describe("args caps per tool", () => {
  it("oversized args are refused before any signature work, under the tool's own cap", async () => {
    const small = new CountingTool(verifierFor(world, refundPolicy(world.acme, { argsBytesMax: 256 })));
    const big = { ...baselineArgs, note: "x".repeat(1024) };
    const error = await expectDenied(small, invoke(world, chain, { args: big }), "ERR_AUTHZ_LIMITS");
    expect(error.details.limit).toBe("argsBytesMax");
    await small.call(await invoke(world, chain));
  });

  it("args that are not I-JSON (a lone surrogate) are refused", async () => {
    const request = await invoke(world, chain);
    await expectDenied(tool, { ...request, args: { ...baselineArgs, customer: "c_\ud800" } }, "ERR_AUTHZ_ARGS");
  });
});

describe("session mode and cache", () => {
  it("an invocation without its chain is accepted from the cache, and asks for the chain on a miss", async () => {
    const cache = new ChainCache();
    const cached = new CountingTool(verifierFor(world, refundPolicy(world.acme), { cache }));
    await expectDenied(
      cached,
      invoke(world, chain).then(({ chain: _chain, ...rest }) => rest),
      "ERR_AUTHZ_CHAIN_REQUIRED",
    );
    await cached.call(await invoke(world, chain));
    const { chain: _omitted, ...session } = await invoke(world, chain);
    const verified = await cached.call(session);
    expect(verified.audit.verifier.cache).toBe("session");
    expect(verified.tokens.chain).toEqual(chain);
  });

  it("a cached leaf presented with a different parent is verified cold and refused", async () => {
    await tool.call(await invoke(world, chain));
    const otherRoot = await rootTo(world.acme.orchestrator.principal);
    const error = await expectDenied(tool, invoke(world, [otherRoot[0] as string, chain[1] as string]), "ERR_AUTHZ_LINKAGE");
    expect(error.step).toBe(5);
  });
});

describe("roots and revocation targets", () => {
  it("a vouched-human root signed by the tenant authority on behalf of alice", async () => {
    const { authority, orchestrator, worker } = world.acme;
    const authnHash = tokenHash("login-evidence-alice");
    const root = await authority.issueRootLink({
      aud: orchestrator.principal,
      caps: [{ res: "*", act: "/", cav: [] }],
      mdl: 2,
      onBehalfOf: { user: world.acme.alice.principal, authnHash },
    });
    // `*` and `/` at an authority root are narrowed below it; the oracle checks alice's role.
    const allowed = await attenuate(
      { principal: orchestrator.principal, key: orchestrator.key },
      { chain: [root], aud: worker.principal, caps: [refundCap], clock: world.clock },
    );
    const denied = new CountingTool(verifierFor(world, refundPolicy(world.acme), { rootAuthority: () => false }));
    await expectDenied(denied, invoke(world, allowed), "ERR_AUTHZ_ROOT");
    const wildcard = new CountingTool(
      verifierFor(world, refundPolicy(world.acme), { rootAuthority: ({ onBehalfOf }) => onBehalfOf === world.acme.alice.principal }),
    );
    const verified = await wildcard.call(await invoke(world, allowed));
    expect(verified.audit.onBehalfOf).toBe(authority.principal);
    expect(verified.audit.rootOnBehalfOf).toEqual({ user: world.acme.alice.principal, authnHash });
  });

  it("res * at a human root is refused", async () => {
    const { alice } = world.acme;
    const root = await signClaims(alice, "tessera-dlg+jwt", { ...payloadOf(chain[0] as string), caps: [{ res: "*", act: "/", cav: [] }] });
    const widened = await attenuate(
      { principal: world.acme.orchestrator.principal, key: world.acme.orchestrator.key },
      { chain: [root], aud: world.acme.worker.principal, caps: [refundCap], clock: world.clock },
    );
    await expectDenied(tool, invoke(world, widened), "ERR_AUTHZ_WIDEN");
  });

  it("a revoked key and a revoked principal kill what they signed before the revocation", async () => {
    const exp = Math.floor(world.clock.now() / 1000) + 7200;
    const keyRevocations = new MemoryRevocationList({ clock: world.clock });
    await keyRevocations.revoke({ tenant: "t_acme", target: { kind: "key", kid: world.acme.orchestrator.key.kid }, expiresAt: exp });
    await expectDenied(
      new CountingTool(verifierFor(world, refundPolicy(world.acme), { revocations: keyRevocations })),
      invoke(world, chain),
      "ERR_AUTHZ_REVOKED",
    );
    const principalRevocations = new MemoryRevocationList({ clock: world.clock });
    const effectiveAt = Math.floor(world.clock.now() / 1000) + 1;
    await principalRevocations.revoke({
      tenant: "t_acme",
      target: { kind: "principal", principal: world.acme.orchestrator.principal, effectiveAt },
      expiresAt: exp,
    });
    const revoked = new CountingTool(verifierFor(world, refundPolicy(world.acme), { revocations: principalRevocations }));
    await expectDenied(revoked, invoke(world, chain), "ERR_AUTHZ_REVOKED");
    // A link the orchestrator issues after the effective time is unaffected.
    world.clock.advance(5000);
    const fresh = await baselineChain(world);
    await revoked.call(await invoke(world, fresh));
    expect(revoked.calls).toBe(1);
  });
});
