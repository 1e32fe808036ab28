/**
 * Property tests (fast-check): random attenuation never grants more than the parent; random
 * mutations of valid tokens are never accepted; the parser stays bounded on hostile input.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { AgentError } from "../../../core/errors.js";
import {
  AuthorizationError,
  ChainCache,
  attenuate,
  canonicalize,
  compileCaveats,
  covers,
  issueRootLink,
  signInvocation,
} from "../../../identity/index.js";
import type { Capability, CaveatStatement, InvocationRequest, InvocationVerifier } from "../../../identity/index.js";
import { decodeToken } from "../../../identity/token-codec.js";
import {
  baselineArgs,
  baselineChain,
  certifyAgent,
  createWorld,
  invoke,
  newEffectId,
  newParty,
  payloadOf,
  refundPolicy,
  signClaims,
  tokenHash,
  verifierFor,
} from "./fixtures.js";
import type { Party, World } from "./fixtures.js";

async function outcome(verifier: InvocationVerifier, request: InvocationRequest): Promise<"allow" | string> {
  try {
    await verifier.verify(request);
    return "allow";
  } catch (error) {
    if (error instanceof AuthorizationError) return error.code;
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// 1. Attenuation is monotone.

const resources = ["tool:a", "tool:b"] as const;
const actions = ["/x", "/x/y", "/z"] as const;
type Args = { n: number; s: string };

const leafCaveat: fc.Arbitrary<CaveatStatement> = fc.oneof(
  fc.tuple(fc.constantFrom("<=", ">="), fc.integer({ min: 0, max: 100 })).map(([op, k]) => [op, ".n", k]),
  fc.constantFrom("a", "b", "ab").map((v) => ["==", ".s", v]),
  fc.constant(["like", ".s", "a*"]),
  fc.subarray(["a", "b", "ab", "ba", "abc"], { minLength: 1 }).map((set) => ["in", ".s", set]),
);
const caveat: fc.Arbitrary<CaveatStatement> = fc.oneof(
  { weight: 4, arbitrary: leafCaveat },
  { weight: 1, arbitrary: leafCaveat.map((st) => ["not", st]) },
  { weight: 1, arbitrary: fc.array(leafCaveat, { minLength: 1, maxLength: 3 }).map((sts) => ["or", sts]) },
);
const capability: fc.Arbitrary<Capability> = fc.record({
  res: fc.constantFrom(...resources),
  act: fc.constantFrom(...actions),
  cav: fc.array(caveat, { maxLength: 2 }),
});
/** One attenuation step: pick parent caps (maybe deepen the action, add caveats) or try a random cap. */
const step = fc.record({
  picks: fc.array(fc.record({ index: fc.nat(), deepen: fc.boolean(), extra: fc.array(caveat, { maxLength: 2 }) }), {
    minLength: 1,
    maxLength: 3,
  }),
  rogue: fc.option(capability, { freq: 3 }),
});
const sample = fc.record({
  res: fc.constantFrom(...resources),
  act: fc.constantFrom(...actions),
  args: fc.record({ n: fc.integer({ min: -5, max: 105 }), s: fc.constantFrom("a", "b", "ab", "ba", "abc") }),
});

interface Step {
  readonly picks: ReadonlyArray<{ readonly index: number; readonly deepen: boolean; readonly extra: CaveatStatement[] }>;
  readonly rogue: Capability | null;
}

function childCaps(parent: readonly Capability[], picked: Step): Capability[] {
  const caps = picked.picks.map(({ index, deepen, extra }) => {
    const base = parent[index % parent.length] as Capability;
    const act = deepen && base.act === "/x" ? "/x/y" : base.act;
    return { res: base.res, act, cav: [...extra] };
  });
  return picked.rogue === null ? caps : [...caps, picked.rogue];
}

describe("property: a chain built by random attenuation never grants more than its parent", () => {
  let world: World;
  let parties: Party[];
  const verifiers = new Map<string, InvocationVerifier>();

  beforeAll(async () => {
    world = await createWorld();
    parties = [world.acme.alice];
    for (const id of ["p1", "p2", "p3", "p4"]) {
      const party = await newParty(`tsr:t_acme:agent:${id}`);
      await certifyAgent(world.acme.authority, world.directory, party, 1);
      parties.push(party);
    }
    for (const res of resources) {
      verifiers.set(
        res,
        verifierFor(
          world,
          { id: `tsr:t_acme:tool:${res.slice(5)}`, res, acts: [...actions] },
          { rootAuthority: () => true, cache: new ChainCache() },
        ),
      );
    }
  });

  it("holds for every prefix, sample and attempted widening", async () => {
    let granted = 0;
    let refusedWidening = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(capability, { minLength: 1, maxLength: 3 }),
        fc.array(step, { minLength: 1, maxLength: 3 }),
        fc.array(sample, { minLength: 4, maxLength: 6 }),
        async (rootCaps, steps, samples) => {
          const alice = parties[0] as Party;
          let chain: readonly string[] = [
            await issueRootLink(
              { principal: alice.principal, key: alice.key },
              { aud: (parties[1] as Party).principal, caps: rootCaps, mdl: 3, clock: world.clock },
            ),
          ];
          let parentCaps: readonly Capability[] = rootCaps;
          for (const [index, attempt] of steps.entries()) {
            const issuer = parties[index + 1] as Party;
            const caps = childCaps(parentCaps, attempt);
            const widening = caps.some((cap) => !parentCaps.some((parent) => covers(parent, cap)));
            const options = { chain, aud: (parties[index + 2] as Party).principal, caps, clock: world.clock };
            if (widening) {
              // The issuing API refuses it, and a hand-signed widening link is refused by the verifier.
              await expect(attenuate({ principal: issuer.principal, key: issuer.key }, options)).rejects.toMatchObject({
                code: "ERR_AUTHZ_WIDEN",
              });
              const leaf = payloadOf(chain[chain.length - 1] as string);
              const forged = await signClaims(issuer, "tessera-dlg+jwt", {
                ...leaf,
                iss: issuer.principal,
                aud: options.aud,
                jti: `widen-${index}-${chain.length}-aaaaaaaaaaaaaaaaaaaa`,
                dep: chain.length,
                mdl: (leaf.mdl as number) - 1,
                prf: tokenHash(chain[chain.length - 1] as string),
                caps,
              });
              const request = await signedBy(parties[index + 2] as Party, [...chain, forged], {
                res: caps[caps.length - 1]?.res ?? "tool:a",
                act: "/z",
                args: { n: 1, s: "a" },
              });
              expect(await outcome(verifiers.get(request.res) as InvocationVerifier, request.request)).toBe("ERR_AUTHZ_WIDEN");
              refusedWidening++;
              break;
            }
            chain = await attenuate({ principal: issuer.principal, key: issuer.key }, options);
            parentCaps = caps;
          }
          for (const want of samples) {
            let previous = true;
            for (let length = 1; length <= chain.length; length++) {
              const prefix = chain.slice(0, length);
              const request = await signedBy(parties[length] as Party, prefix, want);
              const allowed = (await outcome(verifiers.get(want.res) as InvocationVerifier, request.request)) === "allow";
              // A longer chain may only grant what its prefix grants.
              if (allowed) expect(previous).toBe(true);
              if (allowed) granted++;
              previous = allowed;
            }
          }
        },
      ),
      { numRuns: 100 },
    );
    // Not vacuous: some samples were granted, and some widenings were tried and refused.
    expect(granted).toBeGreaterThan(0);
    expect(refusedWidening).toBeGreaterThan(0);
  });

  async function signedBy(
    invoker: Party,
    chain: readonly string[],
    want: { res: string; act: string; args: Args },
  ): Promise<{ res: string; request: InvocationRequest }> {
    const effectId = newEffectId();
    const invocation = await signInvocation(
      { principal: invoker.principal, key: invoker.key },
      { chain, tool: `tsr:t_acme:tool:${want.res.slice(5)}`, res: want.res, act: want.act, args: want.args, effectId, clock: world.clock },
    );
    return { res: want.res, request: { chain, invocation, args: want.args, effectId } };
  }
});

// ---------------------------------------------------------------------------------------------
// 2. Mutations are never accepted.

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

type Mutation =
  | { kind: "char"; token: number; position: number; replacement: string }
  | { kind: "claim"; token: number; name: string; value: unknown; remove: boolean }
  | { kind: "header"; token: number; header: Record<string, unknown> }
  | { kind: "order"; order: number[] }
  | { kind: "args"; args: unknown };

const claimNames = [
  "v",
  "iss",
  "aud",
  "sub",
  "tenant",
  "jti",
  "iat",
  "nbf",
  "exp",
  "dep",
  "mdl",
  "prf",
  "caps",
  "res",
  "act",
  "args_h",
  "eff",
  "extra",
];
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant("char" as const),
    token: fc.nat(2),
    position: fc.nat(),
    replacement: fc.oneof(fc.constantFrom(...alphabet.split("")), fc.string({ minLength: 1, maxLength: 1 })),
  }),
  fc.record({
    kind: fc.constant("claim" as const),
    token: fc.nat(2),
    name: fc.constantFrom(...claimNames),
    value: fc.jsonValue({ maxDepth: 2 }),
    remove: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("header" as const),
    token: fc.nat(2),
    header: fc.record(
      {
        alg: fc.constantFrom("EdDSA", "Ed25519", "none", "HS256", "ES256"),
        typ: fc.constantFrom("tessera-dlg+jwt", "tessera-inv+jwt", "JWT"),
        kid: fc.string(),
        jwk: fc.constant({ kty: "OKP" }),
        crit: fc.constant(["b64"]),
      },
      { requiredKeys: [] },
    ),
  }),
  fc.record({ kind: fc.constant("order" as const), order: fc.array(fc.nat(1), { minLength: 1, maxLength: 4 }) }),
  fc.record({ kind: fc.constant("args" as const), args: fc.jsonValue({ maxDepth: 2 }) }),
);

function mutate(request: InvocationRequest, m: Mutation): InvocationRequest | undefined {
  const tokens = [...(request.chain as string[]), request.invocation];
  const rebuild = (next: string[]): InvocationRequest => ({
    ...request,
    chain: next.slice(0, -1),
    invocation: next[next.length - 1] as string,
  });
  switch (m.kind) {
    case "char": {
      const token = tokens[m.token] as string;
      const position = m.position % token.length;
      if (token[position] === m.replacement) return undefined;
      tokens[m.token] = token.slice(0, position) + m.replacement + token.slice(position + 1);
      return rebuild(tokens);
    }
    case "claim": {
      const payload = payloadOf(tokens[m.token] as string);
      const next = { ...payload };
      if (m.remove) delete next[m.name];
      else next[m.name] = m.value;
      if (canonicalize(next) === canonicalize(payload)) return undefined;
      const [header, , signature] = (tokens[m.token] as string).split(".") as [string, string, string];
      tokens[m.token] = `${header}.${Buffer.from(JSON.stringify(next)).toString("base64url")}.${signature}`;
      return rebuild(tokens);
    }
    case "header": {
      const [header, payload, signature] = (tokens[m.token] as string).split(".") as [string, string, string];
      const text = Buffer.from(JSON.stringify(m.header)).toString("base64url");
      if (text === header) return undefined;
      tokens[m.token] = `${text}.${payload}.${signature}`;
      return rebuild(tokens);
    }
    case "order": {
      const chain = m.order.map((index) => (request.chain as string[])[index] as string);
      if (chain.join() === (request.chain as string[]).join()) return undefined;
      return { ...request, chain };
    }
    case "args":
      if (canonicalize(m.args) === canonicalize(request.args)) return undefined;
      return { ...request, args: m.args };
  }
}

describe("property: random mutations of valid tokens are never accepted", () => {
  let world: World;
  let chain: readonly string[];

  beforeAll(async () => {
    world = await createWorld();
    chain = await baselineChain(world);
  });

  it("bytes, claims, headers, link order and args", async () => {
    let mutated = 0;
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const original = await invoke(world, chain);
        const bad = mutate(original, m);
        if (bad === undefined) return;
        mutated++;
        const verifier = verifierFor(world, refundPolicy(world.acme));
        expect(await outcome(verifier, bad)).not.toBe("allow");
        // The same fresh verifier still accepts the untouched bundle: the refusal was the mutation's.
        expect(await outcome(verifier, original)).toBe("allow");
      }),
      { numRuns: 300 },
    );
    expect(mutated).toBeGreaterThan(200);
  });

  it("mutated chains are refused on the cached path too", async () => {
    const cache = new ChainCache();
    const verifier = verifierFor(world, refundPolicy(world.acme), { cache });
    expect(await outcome(verifier, await invoke(world, chain))).toBe("allow");
    await fc.assert(
      fc.asyncProperty(fc.nat(1), fc.nat(), fc.constantFrom(...alphabet.split("")), async (index, position, replacement) => {
        const token = chain[index] as string;
        const at = position % token.length;
        if (token[at] === replacement) return;
        const bad = [...chain];
        bad[index] = token.slice(0, at) + replacement + token.slice(at + 1);
        // The holder re-signs its invocation over the mutated chain, so only the chain is wrong.
        let request: InvocationRequest;
        try {
          request = await invoke(world, bad);
        } catch {
          request = { ...(await invoke(world, chain)), chain: bad };
        }
        expect(await outcome(verifier, request)).not.toBe("allow");
      }),
      { numRuns: 200 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// 3. The parser is bounded.

describe("property: the parser is bounded on hostile input", () => {
  let world: World;
  let verifier: InvocationVerifier;
  let valid: InvocationRequest;

  beforeAll(async () => {
    world = await createWorld();
    verifier = verifierFor(world, refundPolicy(world.acme));
    valid = await invoke(world, await baselineChain(world));
  });

  it("any chain value is refused with a typed error, never a crash", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.anything(),
          fc.array(fc.string(), { maxLength: 50 }),
          fc.array(fc.stringMatching(/^[A-Za-z0-9_-]{1,40}\.[A-Za-z0-9_-]{1,400}\.[A-Za-z0-9_-]{0,90}$/), { maxLength: 8 }),
        ),
        async (chain) => {
          const result = await outcome(verifier, { ...valid, chain: chain as readonly string[] });
          expect(result).toMatch(/^ERR_AUTHZ_/);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("any invocation and args values are refused with a typed error", async () => {
    await fc.assert(
      fc.asyncProperty(fc.anything(), fc.anything(), async (invocation, args) => {
        const result = await outcome(verifier, { ...valid, invocation: invocation as string, args });
        expect(result).toMatch(/^ERR_AUTHZ_/);
      }),
      { numRuns: 200 },
    );
  });

  it("payloads of any shape, size and depth are decoded or refused, never overflowing the stack", () => {
    const header = Buffer.from(JSON.stringify({ alg: "EdDSA", typ: "tessera-dlg+jwt", kid: "k" })).toString("base64url");
    const signature = "A".repeat(86);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue({ maxDepth: 8 }).map((value) => JSON.stringify(value)),
          fc.nat(3000).map((depth) => `{"caps":${"[".repeat(depth)}${"]".repeat(depth)}}`),
        ),
        (text) => {
          const payload = Buffer.from(text).toString("base64url");
          const token = `${header}.${payload}.${signature}`;
          try {
            decodeToken(token, "tessera-dlg+jwt", "link");
          } catch (error) {
            expect(error).toBeInstanceOf(AuthorizationError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("chains of any length are refused by count before any link is read", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 6, max: 100_000 }), async (count) => {
        expect(await outcome(verifier, { ...valid, chain: new Array<string>(count).fill("x") })).toBe("ERR_AUTHZ_DEPTH");
      }),
      { numRuns: 50 },
    );
  });

  it("caveats of any shape compile or are refused, and compiled ones never throw on any args", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.jsonValue({ maxDepth: 4 }), (cav, args) => {
        let predicate: ((args: unknown) => boolean) | undefined;
        try {
          predicate = compileCaveats(cav);
        } catch (error) {
          expect(error).toBeInstanceOf(AgentError);
          expect((error as AgentError).code).toBe("ERR_CAVEAT_INVALID");
        }
        if (predicate !== undefined) expect(typeof predicate(args)).toBe("boolean");
      }),
      { numRuns: 500 },
    );
  });

  it("canonicalize accepts exactly I-JSON and throws only typed errors", () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        try {
          const text = canonicalize(value);
          expect(canonicalize(JSON.parse(text) as unknown)).toBe(text);
        } catch (error) {
          expect(error).toBeInstanceOf(AgentError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("baseline args are still fine", () => {
    expect(canonicalize(baselineArgs)).toBe('{"amount":30,"currency":"EUR","customer":"c_123"}');
  });
});
