/** The vault (DESIGN §5): envelope encryption, per-tool release against a verified invocation, redaction. */
import { randomBytes } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import { Vault, VerifiedInvocation } from "../../../identity/index.js";
import { CountingTool, baselineArgs, baselineChain, createWorld, invoke, refundPolicy, verifierFor } from "./fixtures.js";
import type { World } from "./fixtures.js";

let world: World;
let vault: Vault;
let verified: VerifiedInvocation;

beforeEach(async () => {
  world = await createWorld();
  vault = new Vault({ tenant: "t_acme", keyEncryptionKey: randomBytes(32) });
  await vault.put("payments", "sk_live_payments_0123456789");
  await vault.put("smtp", "smtp-password-abcdefgh");
  vault.declareTool(world.acme.refundTool, ["payments"]);
  vault.declareTool(world.acme.emailTool, ["smtp"]);
  const tool = new CountingTool(verifierFor(world, refundPolicy(world.acme)));
  verified = await tool.call(await invoke(world, await baselineChain(world)));
});

describe("vault", () => {
  it("releases exactly the tool's declared secrets, once, for a verified invocation", () => {
    expect(vault.release(verified)).toEqual({ payments: "sk_live_payments_0123456789" });
    expect(() => vault.release(verified)).toThrow(expect.objectContaining({ code: "ERR_VAULT_ALREADY_RELEASED" }));
  });

  it("refuses an object shaped like a verified invocation", () => {
    const forged = {
      audit: verified.audit,
      args: verified.args,
      tokens: verified.tokens,
      revocationStale: false,
    } as unknown as VerifiedInvocation;
    expect(VerifiedInvocation.isGenuine(forged)).toBe(false);
    expect(() => vault.release(forged)).toThrow(expect.objectContaining({ code: "ERR_VAULT_UNVERIFIED" }));
    expect(() => new VerifiedInvocation(Symbol("VerifiedInvocation"), verified)).toThrow(
      expect.objectContaining({ code: "ERR_INVARIANT" }),
    );
  });

  it("refuses another tenant's invocation and undeclared tools", async () => {
    const other = new Vault({ tenant: "t_evil", keyEncryptionKey: randomBytes(32) });
    expect(() => other.release(verified)).toThrow(expect.objectContaining({ code: "ERR_VAULT_TENANT" }));
    const bare = new Vault({ tenant: "t_acme", keyEncryptionKey: randomBytes(32) });
    expect(() => bare.release(verified)).toThrow(expect.objectContaining({ code: "ERR_VAULT_NOT_DECLARED" }));
    expect(() => vault.declareTool("tsr:t_evil:tool:refund", ["payments"])).toThrow(expect.objectContaining({ code: "ERR_VALIDATION" }));
  });

  it("names the credential version for the audit record", async () => {
    await vault.put("payments", "sk_live_payments_rotated_99");
    expect(vault.credentialRefs(world.acme.refundTool)).toEqual(["t_acme/tool:refund/payments@v2"]);
    expect(vault.release(verified)).toEqual({ payments: "sk_live_payments_rotated_99" });
  });

  it("redacts known secrets from text and JSON, in raw, JSON-escaped, URL-encoded and base64 forms", async () => {
    await vault.put("quoted", 'pa"ss/word&more');
    expect(vault.redact("Authorization: Bearer sk_live_payments_0123456789")).toBe("Authorization: Bearer [REDACTED:payments]");
    expect(vault.redact(JSON.stringify({ p: 'pa"ss/word&more' }))).toBe('{"p":"[REDACTED:quoted]"}');
    expect(vault.redact(`?p=${encodeURIComponent('pa"ss/word&more')}`)).toBe("?p=[REDACTED:quoted]");
    expect(vault.redact(Buffer.from("smtp-password-abcdefgh").toString("base64"))).toBe("[REDACTED:smtp]");
    expect(vault.redact({ headers: [{ "x-key": "sk_live_payments_0123456789" }], sk_live_payments_0123456789: 1, n: 5 })).toEqual({
      headers: [{ "x-key": "[REDACTED:payments]" }],
      "[REDACTED:payments]": 1,
      n: 5,
    });
  });

  it("refuses short secrets and bad key-encryption keys", async () => {
    await expect(vault.put("pin", "1234")).rejects.toMatchObject({ code: "ERR_VALIDATION" });
    expect(() => new Vault({ tenant: "t_acme", keyEncryptionKey: randomBytes(16) })).toThrow(
      expect.objectContaining({ code: "ERR_VALIDATION" }),
    );
  });
});

describe("verified invocation", () => {
  it("holds a frozen copy of exactly the args that were checked", async () => {
    const args = { ...baselineArgs, nested: { k: [1, 2] } };
    const chain = await baselineChain(world);
    const tool = new CountingTool(verifierFor(world, refundPolicy(world.acme)));
    const result = await tool.call(await invoke(world, chain, { args }));
    args.nested.k.push(3);
    expect(result.args).toEqual({ ...baselineArgs, nested: { k: [1, 2] } });
    expect(Object.isFrozen((result.args as { nested: object }).nested)).toBe(true);
  });
});
