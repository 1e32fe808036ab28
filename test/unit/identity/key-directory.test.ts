/** The key directory: populated only from authority-signed identity tokens; renewal, rotation, limits. */
import { beforeEach, describe, expect, it } from "vitest";
import type { DirectoryChange } from "../../../identity/index.js";
import { createWorld, newParty, signClaims } from "./fixtures.js";
import type { Party, World } from "./fixtures.js";

let world: World;
let party: Party;

beforeEach(async () => {
  world = await createWorld();
  party = await newParty("tsr:t_acme:agent:renewing-1");
});

async function certify(leaseEpoch: number, ttlSeconds?: number): Promise<string> {
  const certificate = await world.acme.authority.certifyAgent({
    principal: party.principal,
    publicJwk: party.key.publicJwk,
    type: "worker",
    version: "1",
    parent: "tsr:t_acme:agent:orchestrator-7",
    node: "node-1",
    leaseEpoch,
    ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
  });
  return certificate.token;
}

describe("key directory", () => {
  it("renews a key at half-life: validity extended, epoch bumped, change announced", async () => {
    const changes: DirectoryChange[] = [];
    const unsubscribe = world.directory.onChange((change) => changes.push(change));
    const first = await world.directory.registerIdentity(await certify(3), party.key.publicJwk);
    world.clock.advance(1800_000);
    const renewed = await world.directory.registerIdentity(await certify(3), party.key.publicJwk);
    unsubscribe();
    expect(renewed.validTo).toBe(first.validTo + 1800);
    expect(renewed.status).toBe("active");
    expect(changes.map((change) => change.kind)).toEqual(["certified", "renewed"]);
    expect(changes[1]?.epoch).toBe(world.directory.epoch("t_acme"));
  });

  it("moves the status epoch only on changes that can withdraw trust: retirement, compromise, anchors", async () => {
    const status = () => world.directory.statusEpoch("t_acme");
    const start = status();
    await world.directory.registerIdentity(await certify(3), party.key.publicJwk);
    world.clock.advance(1800_000);
    await world.directory.registerIdentity(await certify(3), party.key.publicJwk);
    expect(status()).toBe(start);
    // A new lease holder's key retires its predecessor: one withdrawal.
    const successor = await newParty(party.principal);
    const token = (
      await world.acme.authority.certifyAgent({
        principal: party.principal,
        publicJwk: successor.key.publicJwk,
        type: "worker",
        version: "1",
        parent: "tsr:t_acme:agent:orchestrator-7",
        node: "node-2",
        leaseEpoch: 4,
      })
    ).token;
    await world.directory.registerIdentity(token, successor.key.publicJwk);
    expect(world.directory.get("t_acme", party.key.kid)?.status).toBe("retired");
    expect(status()).toBe(start + 1);
    await world.directory.retire("t_acme", successor.key.kid, Math.floor(world.clock.now() / 1000));
    expect(status()).toBe(start + 2);
    await world.directory.markCompromised("t_acme", successor.key.kid);
    expect(status()).toBe(start + 3);
    expect(world.directory.statusEpoch("t_evil")).toBeGreaterThan(0);
    expect(world.directory.statusEpoch("t_nobody")).toBe(0);
  });

  it("adding an anchor again never revives it", async () => {
    const anchor = world.acme.authority.anchor();
    const record = await world.directory.addAuthority(anchor);
    await world.directory.markCompromised("t_acme", record.kid);
    const changes: DirectoryChange[] = [];
    const unsubscribe = world.directory.onChange((change) => changes.push(change));
    // Every node adds its tenants' anchors when it starts, and a stored log replays them.
    expect((await world.directory.addAuthority(anchor)).status).toBe("compromised");
    unsubscribe();
    expect(changes).toEqual([]);
    expect(world.directory.get("t_acme", record.kid)?.status).toBe("compromised");
    // The compromised authority certifies nothing any more.
    await expect(world.directory.registerIdentity(await certify(1), party.key.publicJwk)).rejects.toMatchObject({
      code: expect.stringMatching(/^ERR_IDENTITY_/),
    });
  });

  it("retiring a key again at a later time changes nothing and announces nothing", async () => {
    await world.directory.registerIdentity(await certify(1), party.key.publicJwk);
    const now = Math.floor(world.clock.now() / 1000);
    await world.directory.retire("t_acme", party.key.kid, now);
    const epoch = world.directory.epoch("t_acme");
    const statusEpoch = world.directory.statusEpoch("t_acme");
    await world.directory.retire("t_acme", party.key.kid, now + 60);
    expect(world.directory.epoch("t_acme")).toBe(epoch);
    expect(world.directory.statusEpoch("t_acme")).toBe(statusEpoch);
    expect(world.directory.get("t_acme", party.key.kid)?.validTo).toBe(now);
    // Retiring it earlier still narrows it, and counts as a change.
    await world.directory.retire("t_acme", party.key.kid, now - 60);
    expect(world.directory.get("t_acme", party.key.kid)?.validTo).toBe(now - 60);
    expect(world.directory.statusEpoch("t_acme")).toBe(statusEpoch + 1);
  });

  it("does not renew a key under another lease epoch, nor revive a retired or compromised one", async () => {
    await world.directory.registerIdentity(await certify(3), party.key.publicJwk);
    await expect(world.directory.registerIdentity(await certify(4), party.key.publicJwk)).rejects.toMatchObject({
      code: "ERR_IDENTITY_STALE_EPOCH",
    });
    await world.directory.markCompromised("t_acme", party.key.kid);
    await expect(world.directory.registerIdentity(await certify(3), party.key.publicJwk)).rejects.toMatchObject({
      code: "ERR_IDENTITY_STALE_EPOCH",
    });
    expect(world.directory.get("t_acme", party.key.kid)?.status).toBe("compromised");
  });

  it("enforces identity lifetimes: agents at most 1 h, humans at most 12 h", async () => {
    await expect(certify(1, 3601)).rejects.toMatchObject({ code: "ERR_VALIDATION" });
    const human = await newParty("tsr:t_acme:user:dave");
    await expect(
      world.acme.authority.certifyHuman({
        principal: human.principal,
        publicJwk: human.key.publicJwk,
        acr: "a",
        amr: ["pwd"],
        ttlSeconds: 12 * 3600 + 1,
      }),
    ).rejects.toMatchObject({ code: "ERR_VALIDATION" });
    const ok = await world.acme.authority.certifyHuman({
      principal: human.principal,
      publicJwk: human.key.publicJwk,
      acr: "a",
      amr: ["pwd"],
    });
    expect(ok.claims.exp - ok.claims.iat).toBe(12 * 3600);
  });

  it("refuses identity tokens the authority did not sign, that are expired, or that live too long", async () => {
    const now = Math.floor(world.clock.now() / 1000);
    const claims = {
      v: 1,
      iss: world.acme.authority.principal,
      sub: party.principal,
      tenant: "t_acme",
      jti: "self-certified-000000001",
      iat: now,
      nbf: now,
      exp: now + 600,
      cnf: { jkt: party.key.kid },
      agent: { type: "x", version: "1", parent: null, node: "n", epoch: 1 },
    };
    const selfSigned = await signClaims(party, "tessera-id+jwt", claims);
    await expect(world.directory.registerIdentity(selfSigned, party.key.publicJwk)).rejects.toMatchObject({
      code: "ERR_IDENTITY_TOKEN_INVALID",
    });
    const token = await certify(1, 600);
    world.clock.advance(700_000);
    await expect(world.directory.registerIdentity(token, party.key.publicJwk)).rejects.toMatchObject({
      code: "ERR_IDENTITY_TOKEN_INVALID",
    });
  });

  it("announces retirement and compromise, refuses unknown keys, and purges keys long expired", async () => {
    await world.directory.registerIdentity(await certify(1), party.key.publicJwk);
    const before = world.directory.epoch("t_acme");
    await world.directory.retire("t_acme", party.key.kid, Math.floor(world.clock.now() / 1000));
    expect(world.directory.epoch("t_acme")).toBe(before + 1);
    await expect(world.directory.retire("t_acme", "no-such-kid", 0)).rejects.toMatchObject({ code: "ERR_IDENTITY_UNKNOWN_KEY" });
    await expect(world.directory.markCompromised("t_evil", party.key.kid)).rejects.toMatchObject({ code: "ERR_IDENTITY_UNKNOWN_KEY" });
    world.clock.advance(26 * 3600_000);
    expect(world.directory.purgeExpired()).toBeGreaterThan(0);
    expect(world.directory.get("t_acme", party.key.kid)).toBeUndefined();
  });

  it("accepts anchors only for an authority principal of the anchor's own tenant", async () => {
    const anchor = world.acme.authority.anchor();
    await expect(world.directory.addAuthority({ ...anchor, tenant: "t_evil" })).rejects.toMatchObject({
      code: "ERR_IDENTITY_TOKEN_INVALID",
    });
    await expect(world.directory.addAuthority({ ...anchor, principal: "tsr:t_acme:user:alice" })).rejects.toMatchObject({
      code: "ERR_IDENTITY_TOKEN_INVALID",
    });
  });
});
