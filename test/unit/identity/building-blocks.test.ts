/**
 * Principals, RFC 8785 canonical JSON (unicode and number edge cases), the caveat language, the
 * glob matcher, and the token codec (duplicate keys, non-canonical encodings).
 */
import { describe, expect, it } from "vitest";
import {
  argsHash,
  canonicalize,
  checkPublicJwk,
  compileCaveats,
  covers,
  evaluateCaveats,
  formatPrincipal,
  globMatch,
  parsePrincipal,
  tryParsePrincipal,
} from "../../../identity/index.js";
import { decodeToken, gateToken } from "../../../identity/token-codec.js";
import {
  CountingTool,
  baselineChain,
  createWorld,
  expectDenied,
  invoke,
  payloadOf,
  refundPolicy,
  signRaw,
  verifierFor,
} from "./fixtures.js";

function sparseArray(): unknown[] {
  const array: unknown[] = [1, 2, 3];
  delete array[1];
  return array;
}

describe("principals", () => {
  it("parses and formats tsr:<tenant>:<kind>:<id>", () => {
    expect(parsePrincipal("tsr:t_acme:agent:refund-worker-3")).toEqual({ tenant: "t_acme", kind: "agent", id: "refund-worker-3" });
    expect(formatPrincipal({ tenant: "t_acme", kind: "tool", id: "refund" })).toBe("tsr:t_acme:tool:refund");
  });

  it.each([
    ["tsr:t_acme:agent"],
    ["tsr:t_acme:agent:a:b"],
    ["TSR:t_acme:agent:a"],
    ["tsr:T_ACME:agent:a"],
    ["tsr:t_acme:robot:a"],
    ["tsr:t_acme:agent:"],
    ["tsr::agent:a"],
    ["tsr:t_acme:agent:-a"],
    ["tsr:t_acme:agent:a b"],
    [`tsr:t_acme:agent:${"a".repeat(129)}`],
    [`tsr:${"t".repeat(65)}:agent:a`],
  ])("refuses %s", (text) => {
    expect(tryParsePrincipal(text)).toBeUndefined();
    expect(() => parsePrincipal(text)).toThrow(expect.objectContaining({ code: "ERR_PRINCIPAL_INVALID" }));
  });

  it("refuses non-strings", () => {
    for (const value of [undefined, null, 42, {}, ["tsr:t:agent:a"]]) expect(tryParsePrincipal(value)).toBeUndefined();
  });
});

describe("public keys", () => {
  const x = Buffer.alloc(32, 7).toString("base64url");
  it("accepts exactly {kty, crv, x} of an Ed25519 key", () => {
    expect(checkPublicJwk({ x, crv: "Ed25519", kty: "OKP" })).toEqual({ kty: "OKP", crv: "Ed25519", x });
  });
  it.each([
    ["a private key", { kty: "OKP", crv: "Ed25519", x, d: x }],
    ["an alg member", { kty: "OKP", crv: "Ed25519", x, alg: "EdDSA" }],
    ["another curve", { kty: "OKP", crv: "X25519", x }],
    ["a short key", { kty: "OKP", crv: "Ed25519", x: x.slice(0, 40) }],
    ["a non-canonical key", { kty: "OKP", crv: "Ed25519", x: `${x.slice(0, 42)}B` }],
  ])("refuses %s", (_name, jwk) => {
    expect(() => checkPublicJwk(jwk)).toThrow(expect.objectContaining({ code: "ERR_VALIDATION" }));
  });
});

describe("RFC 8785 canonical JSON", () => {
  it("serializes numbers in the ECMAScript shortest form", () => {
    expect(canonicalize([-0, 1e21, 1e30, 4.5, 0.002, 1e-27, Number("333333333.33333329"), 9007199254740992])).toBe(
      "[0,1e+21,1e+30,4.5,0.002,1e-27,333333333.3333333,9007199254740992]",
    );
    expect(argsHash({ a: -0 })).toBe(argsHash({ a: 0 }));
  });

  it("sorts members by UTF-16 code units (RFC 8785 3.2.3 example)", () => {
    const input = {
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis",
    };
    // Parsed back, an object would list "1" first (integer-like keys); compare the text instead.
    const order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\ud83d\ude00", "\ufb33"].map((key) =>
      canonicalize(input).indexOf(`${JSON.stringify(key)}:`),
    );
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(order.every((position) => position > 0)).toBe(true);
  });

  it("escapes strings minimally", () => {
    expect(canonicalize('\u0000\b\t\n\f\r"\\/\u001f\u007f€')).toBe('"\\u0000\\b\\t\\n\\f\\r\\"\\\\/\\u001f\u007f€"');
  });

  it.each([
    ["a lone high surrogate", "a\ud800"],
    ["a lone low surrogate", "\udc00b"],
    ["a lone surrogate in a member name", { "\ud800": 1 }],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["undefined", undefined],
    ["undefined in an object", { a: undefined }],
    ["a function", () => 1],
    ["a bigint", 1n],
    ["a Date", new Date(0)],
    ["a Map", new Map()],
    ["a sparse array", sparseArray()],
  ])("refuses %s", (_name, value) => {
    expect(() => canonicalize(value)).toThrow(expect.objectContaining({ code: "ERR_JCS_INVALID" }));
  });

  it("keeps an own __proto__ member instead of dropping it", () => {
    const parsed = JSON.parse('{"__proto__":{"admin":true},"x":1}') as unknown;
    expect(canonicalize(parsed)).toBe('{"__proto__":{"admin":true},"x":1}');
    expect(argsHash(parsed)).not.toBe(argsHash({ x: 1 }));
  });

  it("refuses cycles and bounds depth", () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(() => canonicalize(cycle)).toThrow(expect.objectContaining({ code: "ERR_JCS_INVALID" }));
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    expect(() => canonicalize(deep)).toThrow(expect.objectContaining({ code: "ERR_PAYLOAD_TOO_DEEP" }));
  });
});

describe("caveat language", () => {
  const args = {
    amount: 30,
    customer: "c_123",
    currency: "EUR",
    to: "bob@acme.com",
    items: [
      { sku: "a", qty: 1 },
      { sku: "b", qty: 5 },
    ],
    meta: null,
  };

  it.each([
    [["==", ".customer", "c_123"], true],
    [["==", ".customer", "c_999"], false],
    [["!=", ".customer", "c_999"], true],
    [["==", ".meta", null], true],
    [["==", ".missing", null], false],
    [["!=", ".missing", "x"], false],
    [["<=", ".amount", 30], true],
    [["<", ".amount", 30], false],
    [[">", ".customer", 1], false],
    [[">=", ".missing", 0], false],
    [["like", ".to", "*@acme.com"], true],
    [["like", ".to", "*@evil.com"], false],
    [["like", ".amount", "*"], false],
    [["in", ".currency", ["EUR", "USD"]], true],
    [["in", ".currency", ["GBP"]], false],
    [["and", []], true],
    [["or", []], false],
    [
      [
        "or",
        [
          ["==", ".currency", "GBP"],
          ["==", ".currency", "EUR"],
        ],
      ],
      true,
    ],
    [["not", ["==", ".currency", "GBP"]], true],
    [["all", ".items", ["<=", ".qty", 5]], true],
    [["all", ".items", ["<", ".qty", 5]], false],
    [["any", ".items", ["==", ".sku", "b"]], true],
    [["any", ".customer", ["==", ".", "c"]], false],
    [["==", ".items.1.sku", "b"], true],
    [["==", ".items.7.sku", "b"], false],
    [
      [
        "==",
        ".",
        {
          amount: 30,
          currency: "EUR",
          customer: "c_123",
          to: "bob@acme.com",
          items: [
            { qty: 1, sku: "a" },
            { qty: 5, sku: "b" },
          ],
          meta: null,
        },
      ],
      true,
    ],
    [["==", ".constructor", null], false],
    [["==", ".toString", null], false],
  ])("%j on the args is %s", (statement, expected) => {
    expect(evaluateCaveats([statement], args)).toBe(expected);
  });

  it("reads own members only: .__proto__ selects a parsed own member, never the prototype", () => {
    const parsed = JSON.parse('{"__proto__":{"role":"admin"}}') as unknown;
    expect(evaluateCaveats([["==", ".__proto__.role", "admin"]], parsed)).toBe(true);
    expect(evaluateCaveats([["!=", ".__proto__", null]], { a: 1 })).toBe(false);
  });

  it.each([
    ["an unknown operator", [["regex", ".a", ".*"]], "schema"],
    ["a bad selector", [["==", "a.b", 1]], "schema"],
    ["a numeric comparison with a string bound", [["<", ".a", "5"]], "schema"],
    ["a statement that is not an array", ["==", ".a", 1], "schema"],
    ["65 statements", Array.from({ length: 65 }, () => ["==", ".a", 1]), "limits"],
    ["depth 7", [["not", ["not", ["not", ["not", ["not", ["not", ["==", ".a", 1]]]]]]]], "limits"],
    ["a 129-character glob", [["like", ".a", "a".repeat(129)]], "limits"],
    ["a glob with 5 wildcards", [["like", ".a", "*a*b*c*d*"]], "limits"],
  ])("refuses %s", (_name, cav, problem) => {
    expect(() => compileCaveats(cav)).toThrow(expect.objectContaining({ code: "ERR_CAVEAT_INVALID", details: { problem } }));
  });

  it("accepts exactly the limits", () => {
    expect(() => compileCaveats(Array.from({ length: 64 }, () => ["==", ".a", 1]))).not.toThrow();
    expect(() => compileCaveats([["not", ["not", ["not", ["not", ["not", ["==", ".a", 1]]]]]]])).not.toThrow();
    expect(() => compileCaveats([["like", ".a", `*${"a".repeat(120)}***`]])).not.toThrow();
  });

  it("covers: equal resource and the same or a deeper command path", () => {
    expect(covers({ res: "tool:crm", act: "/crm" }, { res: "tool:crm", act: "/crm/read" })).toBe(true);
    expect(covers({ res: "tool:crm", act: "/crm" }, { res: "tool:crm", act: "/crmx" })).toBe(false);
    expect(covers({ res: "tool:crm", act: "/" }, { res: "tool:crm", act: "/anything" })).toBe(true);
    expect(covers({ res: "tool:crm", act: "/crm/read" }, { res: "tool:crm", act: "/crm" })).toBe(false);
    expect(covers({ res: "tool:crm", act: "/crm" }, { res: "tool:erp", act: "/crm" })).toBe(false);
  });
});

describe("glob matcher", () => {
  it.each([
    ["abc", "abc", true],
    ["abc", "abd", false],
    ["*", "", true],
    ["a*", "a", true],
    ["*c", "abc", true],
    ["a*c", "ac", true],
    ["a*b*c", "axxbyyc", true],
    ["a*b*c", "axxcyyb", false],
    ["ab*ba", "aba", false],
    ["*.acme.com", "x.acme.com", true],
    ["*.acme.com", "x.acme.com.evil", false],
    ["re_*_eur", "re_1_eur", true],
    ["a.*", "abc", false],
  ])("%s matches %s: %s", (pattern, text, expected) => {
    expect(globMatch(pattern, text)).toBe(expected);
  });

  it("stays linear on a hostile input (no backtracking explosion)", () => {
    expect(globMatch("*a*a*a*b", "a".repeat(100_000))).toBe(false);
  });
});

describe("token codec", () => {
  it("refuses a payload with a duplicate member, even when correctly signed", async () => {
    const world = await createWorld();
    const chain = await baselineChain(world);
    const tool = new CountingTool(verifierFor(world, refundPolicy(world.acme)));
    const leaf = payloadOf(chain[1] as string);
    const wide = JSON.stringify([{ res: "tool:refund", act: "/invoke", cav: [] }]);
    const text = JSON.stringify(leaf).replace(/}$/, `,"caps":${wide}}`);
    const header = JSON.stringify({ alg: "EdDSA", typ: "tessera-dlg+jwt", kid: world.acme.orchestrator.key.kid });
    const duplicated = await signRaw(world.acme.orchestrator.privateKey, header, text);
    const error = await expectDenied(tool, invoke(world, [chain[0] as string, duplicated]), "ERR_AUTHZ_SCHEMA");
    expect(error.message).toContain("duplicate");
    const spaced = await signRaw(world.acme.orchestrator.privateKey, header, JSON.stringify(leaf, null, 1));
    await expectDenied(tool, invoke(world, [chain[0] as string, spaced]), "ERR_AUTHZ_SCHEMA");
    const duplicateHeader = await signRaw(world.acme.orchestrator.privateKey, header.replace("{", '{"alg":"none",'), JSON.stringify(leaf));
    await expectDenied(tool, invoke(world, [chain[0] as string, duplicateHeader]), "ERR_AUTHZ_HEADER");
  });

  it("refuses a signature changed only in its unused tail bits, which jose alone would accept", async () => {
    const world = await createWorld();
    const chain = await baselineChain(world);
    const leaf = chain[1] as string;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = alphabet.indexOf(leaf.at(-1) as string);
    const malleated = leaf.slice(0, -1) + alphabet[last ^ 1];
    expect(Buffer.from(malleated.split(".")[2] as string, "base64url").equals(Buffer.from(leaf.split(".")[2] as string, "base64url"))).toBe(
      true,
    );
    expect(() => decodeToken(malleated, "tessera-dlg+jwt", "link 1")).toThrow(
      expect.objectContaining({ code: "ERR_AUTHZ_SIGNATURE", step: 1 }),
    );
  });

  it.each([
    ["not a string", 42, "ERR_AUTHZ_LIMITS"],
    ["two segments", "a.b", "ERR_AUTHZ_LIMITS"],
    ["four segments", "a.b.c.d", "ERR_AUTHZ_LIMITS"],
    ["padding", "a.b.c=", "ERR_AUTHZ_LIMITS"],
    ["non-ASCII", "a.é.c", "ERR_AUTHZ_LIMITS"],
    ["4097 bytes", `${"a".repeat(4093)}.b.c`, "ERR_AUTHZ_LIMITS"],
  ])("the size gate refuses %s", (_name, token, code) => {
    expect(() => gateToken(token, "token")).toThrow(expect.objectContaining({ code }));
  });
});
