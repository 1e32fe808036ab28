import { describe, expect, it } from "vitest";
import { StoreKeyDirectory } from "../../../actors/internal/store-key-directory.js";
import { SimulatedClock } from "../../../core/clock.js";
import { ActorSigner, TenantAuthority } from "../../../identity/index.js";
import { createMemoryStore } from "../../../persistence/memory/index.js";
import { silent } from "../../helpers/silent-logger.js";

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
});
