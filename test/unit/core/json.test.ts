import { describe, expect, it } from "vitest";
import { canonicalJson, encodeBounded } from "../../../core/json.js";

const bounds = { bytesMax: 1000, depthMax: 8, what: "value" };

describe("encodeBounded", () => {
  it("accepts shared references, which JSON simply writes twice", () => {
    const shared = { a: 1 };
    expect(encodeBounded({ x: shared, y: [shared] }, bounds)).toBe('{"x":{"a":1},"y":[{"a":1}]}');
  });
  it("reports a cycle as too deep instead of overflowing", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => encodeBounded(cyclic, bounds)).toThrow(expect.objectContaining({ code: "ERR_PAYLOAD_TOO_DEEP" }));
  });
  it("stops an exponentially shared structure before walking it", () => {
    let node: unknown = 1;
    for (let i = 0; i < 7; i++) node = [node, node, node, node, node, node, node, node];
    expect(() => encodeBounded(node, { ...bounds, depthMax: 64 })).toThrow(expect.objectContaining({ code: "ERR_PAYLOAD_TOO_LARGE" }));
  });
  it("refuses values that are not JSON", () => {
    expect(() => encodeBounded({ n: Number.NaN }, bounds)).toThrow(expect.objectContaining({ code: "ERR_VALIDATION" }));
    expect(() => encodeBounded({ f: () => 1 }, bounds)).toThrow(expect.objectContaining({ code: "ERR_VALIDATION" }));
    expect(() => encodeBounded(10n, bounds)).toThrow(expect.objectContaining({ code: "ERR_VALIDATION" }));
  });
  it("measures size in UTF-8 bytes", () => {
    expect(() => encodeBounded("é".repeat(600), bounds)).toThrow(expect.objectContaining({ code: "ERR_PAYLOAD_TOO_LARGE" }));
  });
});

describe("canonicalJson", () => {
  it("sorts keys at every level and keeps an own __proto__ key an ordinary member", () => {
    expect(canonicalJson({ b: 1, a: { d: 2, c: [{ f: 1, e: 2 }] } })).toBe('{"a":{"c":[{"e":2,"f":1}],"d":2},"b":1}');
    const withProto = JSON.parse('{"__proto__":{"x":1},"y":2}') as unknown;
    expect(canonicalJson(withProto)).toBe('{"__proto__":{"x":1},"y":2}');
    expect(canonicalJson(withProto)).not.toBe(canonicalJson({ y: 2 }));
  });
});
