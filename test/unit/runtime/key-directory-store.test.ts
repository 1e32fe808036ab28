import { describe, expect, it } from "vitest";
import { StoreKeyDirectory } from "../../../actors/internal/store-key-directory.js";
import { SimulatedClock } from "../../../core/clock.js";
import {
  ActorSigner,
  ChainCache,
  MemoryReplayStore,
  MemoryRevocationList,
  TenantAuthority,
  attenuate,
  createInvocationVerifier,
  issueRootLink,
  signInvocation,
} from "../../../identity/index.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";
import { certifyAgent, newParty, startMs } from "../identity/fixtures.js";

describe("the tenant key directory kept in the Store", () => {
  it("lets another node (or a restarted one) resolve keys certified elsewhere, and only valid ones", async () => {
    const clock = new SimulatedClock(Date.UTC(2026, 11, 1));
    const store = createMemoryStore();
    await store.migrate();
    const authority = await TenantAuthority.create({ tenant: "acme", clock });
    const first = new StoreKeyDirectory(store, clock, silent);
    await first.addAuthority(authority.anchor());
    const signer = await ActorSigner.create({ principal: "tsr:acme:agent:a1", clock });
    const certificate = await authority.certifyAgent({
      principal: signer.principal,
      publicJwk: signer.publicJwk,
      type: "desk",
      version: "1",
      parent: null,
      node: "n1",
      leaseEpoch: 1,
    });
    await first.registerIdentity(certificate.token, signer.publicJwk);
    await first.addAuthority(authority.anchor()); // a restart re-adds its anchors: logged once

    const second = new StoreKeyDirectory(store, clock, silent);
    expect(second.get("acme", signer.kid)).toBeUndefined();
    await second.sync("acme");
    expect(second.get("acme", signer.kid)).toMatchObject({ principal: "tsr:acme:agent:a1", status: "active", leaseEpoch: 1 });
    expect(second.epoch("acme")).toBe(first.epoch("acme"));
    expect((await store.readDirectory("acme", 0, 10)).map((e) => e.kind)).toEqual(["anchor", "identity"]);

    // A forged entry (an identity token the tenant authority did not sign) is not applied on replay.
    const rogue = await TenantAuthority.create({ tenant: "acme", clock });
    const forged = await ActorSigner.create({ principal: "tsr:acme:agent:evil", clock });
    const forgedCertificate = await rogue.certifyAgent({
      principal: forged.principal,
      publicJwk: forged.publicJwk,
      type: "desk",
      version: "1",
      parent: null,
      node: "n9",
      leaseEpoch: 1,
    });
    await store.appendDirectory({
      tenantId: "acme",
      kind: "identity",
      kid: forged.kid,
      body: { token: forgedCertificate.token, publicJwk: forged.publicJwk as never },
      createdAt: 0,
    });
    const third = new StoreKeyDirectory(store, clock, silent);
    await third.sync("acme");
    expect(third.get("acme", signer.kid)).toBeDefined();
    expect(third.get("acme", forged.kid)).toBeUndefined();
  });

  it("a node replaying another's log keeps its cached chains through new keys, and drops them on a retirement or compromise", async () => {
    const clock = new SimulatedClock(startMs);
    const store = createMemoryStore();
    await store.migrate();
    const here = new StoreKeyDirectory(store, clock, silent);
    const there = new StoreKeyDirectory(store, clock, silent);
    const authority = await TenantAuthority.create({ tenant: "acme", clock });
    await here.addAuthority(authority.anchor());
    await there.addAuthority(authority.anchor());
    const alice = await newParty("tsr:acme:user:alice");
    const orchestrator = await newParty("tsr:acme:agent:orchestrator");
    const worker = await newParty("tsr:acme:agent:worker");
    const human = await authority.certifyHuman({ principal: alice.principal, publicJwk: alice.key.publicJwk, acr: "mfa", amr: ["pwd"] });
    await here.registerIdentity(human.token, alice.key.publicJwk);
    await certifyAgent(authority, here, orchestrator, 1);
    await certifyAgent(authority, here, worker, 1);
    await there.sync("acme");
    const caps = [{ res: "tool:lookup", act: "/invoke", cav: [] }];
    const root = await issueRootLink(alice, { aud: orchestrator.principal, caps, mdl: 2, clock });
    const chain = await attenuate(orchestrator, { chain: [root], aud: worker.principal, caps, clock });
    const verifier = createInvocationVerifier({
      tenant: "acme",
      tool: { id: "tsr:acme:tool:lookup", res: "tool:lookup", acts: ["/invoke"] },
      directory: here,
      revocations: new MemoryRevocationList({ clock }),
      replay: new MemoryReplayStore({ clock }),
      rootAuthority: () => true,
      clock,
      cache: new ChainCache(),
    });
    let calls = 0;
    const call = async () => {
      const effectId = `eff_${++calls}`;
      const invocation = await signInvocation(worker, {
        chain,
        tool: "tsr:acme:tool:lookup",
        res: "tool:lookup",
        act: "/invoke",
        args: {},
        effectId,
        clock,
      });
      return verifier.verify({ chain, invocation, args: {}, effectId });
    };
    expect((await call()).audit.verifier.cache).toBe("miss");

    // The other node certifies a key of its own actor's and renews the worker's: replayed here, both
    // change the directory but withdraw nothing, so the cached chain still counts.
    await certifyAgent(authority, there, await newParty("tsr:acme:agent:spawned"), 1);
    clock.advance(1000);
    await certifyAgent(authority, there, worker, 1);
    const epoch = here.epoch("acme");
    const statusEpoch = here.statusEpoch("acme");
    await here.sync("acme");
    expect(here.epoch("acme")).toBe(epoch + 2);
    expect(here.statusEpoch("acme")).toBe(statusEpoch);
    expect((await call()).audit.verifier.cache).toBe("hit");

    // The orchestrator's actor moves to the other node (lease epoch 2): its new key retires the old
    // one. The chain is verified again, and still holds (the link predates the retirement).
    clock.advance(1000);
    await certifyAgent(authority, there, await newParty(orchestrator.principal), 2);
    await here.sync("acme");
    expect(here.statusEpoch("acme")).toBe(statusEpoch + 1);
    expect((await call()).audit.verifier.cache).toBe("miss");

    // A compromise of the key that signed the link, replayed here, denies at once.
    await there.markCompromised("acme", orchestrator.key.kid);
    await here.sync("acme");
    await expect(call()).rejects.toMatchObject({ code: "ERR_AUTHZ_REVOKED" });
  });

  it("a sync of one tenant's log does not hold up another tenant's", async () => {
    const clock = new SimulatedClock(startMs);
    const inner = createMemoryStore();
    await inner.migrate();
    // The store answers tenant a's log reads only when the test releases them.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const store = new Proxy(inner, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (property === "readDirectory") {
          return async (...args: Parameters<typeof inner.readDirectory>) => {
            if (args[0] === "a") await held;
            return target.readDirectory(...args);
          };
        }
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const writer = new StoreKeyDirectory(inner, clock, silent);
    const authority = await TenantAuthority.create({ tenant: "b", clock });
    await writer.addAuthority(authority.anchor());
    const party = await newParty("tsr:b:agent:worker");
    await certifyAgent(authority, writer, party, 1);

    const reader = new StoreKeyDirectory(store, clock, silent);
    const syncA = reader.sync("a");
    await reader.sync("b");
    expect(reader.get("b", party.key.kid)?.principal).toBe(party.principal);
    release();
    await syncA;
  });
});
