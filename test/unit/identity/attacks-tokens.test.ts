/**
 * IDENTITY.md "Attacks the test suite must cover", 32–44: algorithms, token types, headers, time.
 */
import { createHmac } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import { SimulatedClock } from "../../../core/clock.js";
import { attenuate, joseSelfTest, SigningKey } from "../../../identity/index.js";
import {
  CountingTool,
  baselineChain,
  createWorld,
  expectDenied,
  invoke,
  payloadOf,
  refundPolicy,
  signClaims,
  signRaw,
  startMs,
  verifierFor,
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

const b64 = (text: string): string => Buffer.from(text).toString("base64url");

describe("attacks on algorithms, types and headers (IDENTITY.md 32–37)", () => {
  it("32 alg none: an unsigned root link", async () => {
    const unsigned = `${b64(JSON.stringify({ alg: "none", typ: "tessera-dlg+jwt" }))}.${(chain[0] as string).split(".")[1]}.`;
    const error = await expectDenied(tool, invoke(world, [unsigned, chain[1] as string]), "ERR_AUTHZ_ALG");
    expect(error.step).toBe(1);
  });

  it("33 HS256 keyed with the issuer's public key, through our verifier", async () => {
    const alice = world.acme.alice;
    const input = `${b64(JSON.stringify({ alg: "HS256", typ: "tessera-dlg+jwt", kid: alice.key.kid }))}.${(chain[0] as string).split(".")[1]}`;
    const mac = createHmac("sha256", Buffer.from(alice.key.publicJwk.x, "base64url")).update(input).digest("base64url");
    await expectDenied(tool, invoke(world, [`${input}.${mac}`, chain[1] as string]), "ERR_AUTHZ_ALG");
  });

  it("34 HS256 keyed with the public key, fed straight to jose.compactVerify with a CryptoKey and no allow-list", async () => {
    const result = await joseSelfTest(world.acme.alice.key);
    expect(result.cryptoKeyRefusal).toContain('CryptoKey instances must be of type "secret" for the HS256 algorithm');
  });

  it("35 HS256 keyed with the public-key PEM, jose with a KeyObject", async () => {
    const result = await joseSelfTest(await SigningKey.generate());
    expect(result.keyObjectRefusal).toContain('must be of type "secret"');
    expect(result.refusesAlgorithmConfusion).toBe(true);
  });

  it("36 token-type confusion: an invocation presented as a delegation link, and a link as an invocation", async () => {
    const request = await invoke(world, chain);
    await expectDenied(tool, { ...request, chain: [request.invocation] }, "ERR_AUTHZ_TYP");
    await expectDenied(tool, { ...request, invocation: chain[1] as string }, "ERR_AUTHZ_TYP");
  });

  it("37 header key injection: an embedded jwk (and every other extra member) is refused", async () => {
    const { mallory, orchestrator } = world.acme;
    const leaf = JSON.stringify(payloadOf(chain[1] as string));
    const extras: Record<string, unknown> = {
      jwk: mallory.key.publicJwk,
      jku: "https://evil.example/jwks",
      x5c: ["MIIB"],
      x5u: "https://evil.example/cert",
      crit: ["b64"],
      b64: false,
      cty: "JWT",
    };
    for (const [member, value] of Object.entries(extras)) {
      const header = JSON.stringify({ alg: "EdDSA", typ: "tessera-dlg+jwt", kid: orchestrator.key.kid, [member]: value });
      const injected = await signRaw(mallory.privateKey, header, leaf);
      const error = await expectDenied(tool, invoke(world, [chain[0] as string, injected]), "ERR_AUTHZ_HEADER");
      expect(error.step, member).toBe(1);
    }
  });
});

describe("attacks on time (IDENTITY.md 38–44)", () => {
  it("38 skew inside leeway: nbf 20 s in the future is allowed", async () => {
    const ahead = await baselineChain(world, { issuerClock: new SimulatedClock(startMs + 20_000) });
    expect(payloadOf(ahead[1] as string).nbf).toBe(Math.floor(startMs / 1000) + 20);
    await tool.call(await invoke(world, ahead));
    expect(tool.calls).toBe(1);
  });

  it("39 skew outside leeway: nbf 90 s in the future", async () => {
    const ahead = await baselineChain(world, { issuerClock: new SimulatedClock(startMs + 90_000) });
    const error = await expectDenied(tool, invoke(world, ahead), "ERR_AUTHZ_TIME");
    expect(error.message).toContain("not yet valid");
  });

  it("40 recently expired, inside leeway: exp 20 s ago is allowed", async () => {
    const short = await baselineChain(world, { hopTtlSeconds: 600 });
    world.clock.advance(620_000);
    await tool.call(await invoke(world, short));
    expect(tool.calls).toBe(1);
  });

  it("41 expired beyond leeway: exp 40 s ago", async () => {
    const short = await baselineChain(world, { hopTtlSeconds: 600 });
    world.clock.advance(640_000);
    await expectDenied(tool, invoke(world, short), "ERR_AUTHZ_TIME");
  });

  it("42 narrowing has no leeway: child exp = parent exp + 1 s", async () => {
    const leaf = payloadOf(chain[1] as string);
    const parentExp = payloadOf(chain[0] as string).exp as number;
    const late = await signClaims(world.acme.orchestrator, "tessera-dlg+jwt", { ...leaf, exp: parentExp + 1 });
    const error = await expectDenied(tool, invoke(world, [chain[0] as string, late]), "ERR_AUTHZ_TIME");
    expect(error.message).toContain("validity not narrowed");
  });

  it("43 invocation from the future: iat + 5 min", async () => {
    const request = await invoke(world, chain, { clock: new SimulatedClock(startMs + 5 * 60_000) });
    await expectDenied(tool, request, "ERR_AUTHZ_TIME");
  });

  it("44 signed after key retirement: link iat after the issuer key's validTo", async () => {
    const { orchestrator, worker } = world.acme;
    const nowSeconds = Math.floor(world.clock.now() / 1000);
    await world.directory.retire("t_acme", orchestrator.key.kid, nowSeconds + 10);
    world.clock.advance(100_000);
    const late = await attenuate(
      { principal: orchestrator.principal, key: orchestrator.key },
      { chain: [chain[0] as string], aud: worker.principal, caps: [{ res: "tool:refund", act: "/invoke", cav: [] }], clock: world.clock },
    );
    await expectDenied(tool, invoke(world, late), "ERR_AUTHZ_KEY");
    // The retired key still verifies the link it signed while valid.
    await tool.call(await invoke(world, chain));
    expect(tool.calls).toBe(1);
  });
});
