/**
 * IDENTITY.md attacks 45–51, plus: WebAuthn assertion checks (origin, UV, counter), approval-as-grant
 * (exact args, single use, approver must hold root authority), and `eff` binding.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { SimulatedClock } from "../../../core/clock.js";
import { approvalIntent, argsHash, issueRootLink, MemoryPasskeyDirectory, signApproval, signInvocation } from "../../../identity/index.js";
import type { ApprovalPolicy, Capability, InvocationRequest, WebAuthnPolicy } from "../../../identity/index.js";
import {
  CountingTool,
  SoftAuthenticator,
  baselineArgs,
  baselineChain,
  createWorld,
  expectDenied,
  invoke,
  newEffectId,
  payloadOf,
  refundPolicy,
  signClaims,
  startMs,
  tokenHash,
  verifierFor,
} from "./fixtures.js";
import type { Party, World } from "./fixtures.js";

let world: World;
let chain: readonly string[];
let tool: CountingTool;
const args45 = { ...baselineArgs, amount: 45 };
const rpId = "approvals.acme.example";
const origin = "https://approvals.acme.example";

function gate(world: World, extra: Partial<ApprovalPolicy> = {}): ApprovalPolicy {
  return {
    required: (args) =>
      typeof args === "object" &&
      args !== null &&
      (args as { amount?: unknown }).amount !== undefined &&
      (args as { amount: number }).amount > 25,
    approvers: ({ approver }) => world.approverRole.has(approver),
    fourEyes: true,
    ...extra,
  };
}

beforeEach(async () => {
  world = await createWorld();
  chain = await baselineChain(world);
  tool = new CountingTool(verifierFor(world, refundPolicy(world.acme, { approval: gate(world) })));
});

interface Call {
  readonly args: unknown;
  readonly effectId: string;
  readonly chain?: readonly string[];
  readonly subject?: string;
}

function intentOf(call: Call): string {
  const leaf = (call.chain ?? chain)[(call.chain ?? chain).length - 1] as string;
  return approvalIntent({
    tenant: "t_acme",
    tool: world.acme.refundTool,
    res: "tool:refund",
    act: "/invoke",
    argsHash: argsHash(call.args),
    invoker: world.acme.worker.principal,
    subject: call.subject ?? world.acme.alice.principal,
    leafHash: tokenHash(leaf),
    effectId: call.effectId,
  });
}

async function approve(
  approver: Party,
  call: Call,
  options: { clock?: SimulatedClock; grant?: string; authenticator?: SoftAuthenticator; flags?: number; signCount?: number } = {},
): Promise<string> {
  const { authenticator } = options;
  return signApproval(
    { principal: approver.principal, key: approver.key },
    {
      tool: world.acme.refundTool,
      intent: intentOf(call),
      summary: `refund ${JSON.stringify(call.args)}`,
      clock: options.clock ?? world.clock,
      ...(options.grant === undefined ? {} : { grant: options.grant }),
      ...(authenticator === undefined
        ? {}
        : {
            webauthn: async (challenge: Buffer) =>
              authenticator.assert(challenge, {
                rpId,
                origin,
                ...(options.flags === undefined ? {} : { flags: options.flags }),
                ...(options.signCount === undefined ? {} : { signCount: options.signCount }),
              }),
          }),
    },
  );
}

async function gatedCall(
  args: unknown,
  effectId: string,
  approval: string | undefined,
  callChain: readonly string[] = chain,
): Promise<InvocationRequest> {
  const request = await invoke(world, callChain, { args, effectId });
  return approval === undefined ? request : { ...request, approval };
}

describe("approvals (IDENTITY.md 45–51)", () => {
  it("a gated call without an approval is refused with approval-required", async () => {
    await expectDenied(tool, gatedCall(args45, newEffectId(), undefined), "ERR_AUTHZ_APPROVAL_REQUIRED");
  });

  it("45 good approval: bob approves refund(45) exactly", async () => {
    const effectId = newEffectId();
    await expectDenied(tool, gatedCall(args45, effectId, undefined), "ERR_AUTHZ_APPROVAL_REQUIRED");
    const approval = await approve(world.acme.bob, { args: args45, effectId });
    const verified = await tool.call(await gatedCall(args45, effectId, approval));
    expect(verified.audit.approval).toMatchObject({ approver: world.acme.bob.principal, method: "session-key", grant: false });
    expect(verified.tokens.approval).toBe(approval);
  });

  it("46 approval reused for different args: approval for 30 used on an invocation of 45", async () => {
    const effectId = newEffectId();
    const approval = await approve(world.acme.bob, { args: baselineArgs, effectId });
    const error = await expectDenied(tool, gatedCall(args45, effectId, approval), "ERR_AUTHZ_APPROVAL");
    expect(error.message).toContain("intent mismatch");
  });

  it("47 approval replay: the same approval presented twice", async () => {
    const effectId = newEffectId();
    const approval = await approve(world.acme.bob, { args: args45, effectId });
    await tool.call(await gatedCall(args45, effectId, approval));
    await expectDenied(tool, gatedCall(args45, effectId, approval), "ERR_AUTHZ_REPLAY");
    expect(tool.calls).toBe(1);
  });

  it("48 approver without the role: carol", async () => {
    const effectId = newEffectId();
    const error = await expectDenied(
      tool,
      gatedCall(args45, effectId, await approve(world.acme.carol, { args: args45, effectId })),
      "ERR_AUTHZ_APPROVAL",
    );
    expect(error.details.check).toBe("role");
  });

  it("49 four-eyes: alice (the root sub) approves her own chain", async () => {
    const effectId = newEffectId();
    const error = await expectDenied(
      tool,
      gatedCall(args45, effectId, await approve(world.acme.alice, { args: args45, effectId })),
      "ERR_AUTHZ_APPROVAL",
    );
    expect(error.details.check).toBe("four-eyes");
  });

  it("50 agent posing as approver: the orchestrator signs an approval", async () => {
    const effectId = newEffectId();
    const { orchestrator } = world.acme;
    const now = Math.floor(world.clock.now() / 1000);
    const forged = await signClaims(orchestrator, "tessera-apv+jwt", {
      iss: orchestrator.principal,
      aud: world.acme.refundTool,
      tenant: "t_acme",
      jti: "agent-approval-000000001",
      iat: now,
      exp: now + 600,
      dec: "approve",
      intent: intentOf({ args: args45, effectId }),
      summary_h: tokenHash("refund 45"),
    });
    const error = await expectDenied(tool, gatedCall(args45, effectId, forged), "ERR_AUTHZ_APPROVAL");
    expect(error.message).toContain("approver must be a human principal");
  });

  it("51 expired approval: issued 20 min ago", async () => {
    const effectId = newEffectId();
    const approval = await approve(world.acme.bob, { args: args45, effectId });
    world.clock.advance(20 * 60_000);
    const error = await expectDenied(tool, gatedCall(args45, effectId, approval), "ERR_AUTHZ_APPROVAL");
    expect(error.details.check).toBe("time");
  });
});

describe("effect id binding", () => {
  it("a retry with a new jti and the same eff is allowed and de-duplicated by the tool", async () => {
    const plain = new CountingTool(verifierFor(world, refundPolicy(world.acme)));
    const effectId = newEffectId();
    const first = await invoke(world, chain, { effectId });
    const retry = await invoke(world, chain, { effectId });
    expect(payloadOf(retry.invocation).jti).not.toBe(payloadOf(first.invocation).jti);
    await plain.call(first);
    await plain.call(retry);
    expect(plain.calls).toBe(2);
    expect(plain.effects.size).toBe(1);
    await expectDenied(plain, first, "ERR_AUTHZ_REPLAY");
  });

  it("an invocation for another effect than the journal's is refused", async () => {
    const request = await invoke(world, chain);
    await expectDenied(tool, { ...request, effectId: newEffectId() }, "ERR_AUTHZ_EFFECT");
  });

  it("an approval for one eff does not unlock another", async () => {
    const approved = newEffectId();
    const approval = await approve(world.acme.bob, { args: args45, effectId: approved });
    const error = await expectDenied(tool, gatedCall(args45, newEffectId(), approval), "ERR_AUTHZ_APPROVAL");
    expect(error.details.check).toBe("intent");
  });
});

describe("WebAuthn assertion checks", () => {
  let authenticator: SoftAuthenticator;
  let webauthn: WebAuthnPolicy;

  beforeEach(() => {
    authenticator = new SoftAuthenticator();
    const passkeys = new MemoryPasskeyDirectory();
    passkeys.register({
      tenant: "t_acme",
      principal: world.acme.bob.principal,
      credId: authenticator.credId,
      publicKey: authenticator.publicKey,
      alg: "ES256",
      signCount: 0,
    });
    webauthn = { rpId, origins: [origin], passkeys };
    tool = new CountingTool(verifierFor(world, refundPolicy(world.acme, { approval: gate(world, { webauthn }) })));
  });

  it("a good assertion is accepted and recorded as webauthn+session-key", async () => {
    const effectId = newEffectId();
    const verified = await tool.call(
      await gatedCall(args45, effectId, await approve(world.acme.bob, { args: args45, effectId }, { authenticator })),
    );
    expect(verified.audit.approval?.method).toBe("webauthn+session-key");
  });

  it("an approval without an assertion is refused when the tool requires one", async () => {
    const effectId = newEffectId();
    const error = await expectDenied(
      tool,
      gatedCall(args45, effectId, await approve(world.acme.bob, { args: args45, effectId })),
      "ERR_AUTHZ_APPROVAL",
    );
    expect(error.details.check).toBe("webauthn-missing");
  });

  it("origin: an assertion made for another origin is refused", async () => {
    webauthn = { ...webauthn, origins: ["https://other.example"] };
    tool = new CountingTool(verifierFor(world, refundPolicy(world.acme, { approval: gate(world, { webauthn }) })));
    const effectId = newEffectId();
    const error = await expectDenied(
      tool,
      gatedCall(args45, effectId, await approve(world.acme.bob, { args: args45, effectId }, { authenticator })),
      "ERR_AUTHZ_APPROVAL",
    );
    expect(error.details.check).toBe("webauthn-origin");
  });

  it("UV: user presence without user verification is refused", async () => {
    const effectId = newEffectId();
    const approval = await approve(world.acme.bob, { args: args45, effectId }, { authenticator, flags: 0x01 });
    const error = await expectDenied(tool, gatedCall(args45, effectId, approval), "ERR_AUTHZ_APPROVAL");
    expect(error.details.check).toBe("webauthn-uv");
  });

  it("counter: a counter that did not increase (a cloned authenticator) is refused", async () => {
    const first = newEffectId();
    await tool.call(
      await gatedCall(args45, first, await approve(world.acme.bob, { args: args45, effectId: first }, { authenticator, signCount: 7 })),
    );
    const second = newEffectId();
    const cloned = await approve(world.acme.bob, { args: args45, effectId: second }, { authenticator, signCount: 7 });
    const error = await expectDenied(tool, gatedCall(args45, second, cloned), "ERR_AUTHZ_APPROVAL");
    expect(error.details.check).toBe("webauthn-counter");
  });

  it("challenge: an assertion over another approval's challenge is refused", async () => {
    const effectId = newEffectId();
    const other = payloadOf(await approve(world.acme.bob, { args: args45, effectId }, { authenticator }));
    const now = Math.floor(world.clock.now() / 1000);
    const transplanted = await signClaims(world.acme.bob, "tessera-apv+jwt", {
      ...other,
      jti: "transplanted-assertion-01",
      iat: now,
      exp: now + 600,
    });
    const error = await expectDenied(tool, gatedCall(args45, effectId, transplanted), "ERR_AUTHZ_APPROVAL");
    expect(error.details.check).toBe("webauthn-challenge");
  });
});

describe("approval-as-grant (IDENTITY.md 11 b)", () => {
  const exactCaveats: Capability["cav"] = [
    ["==", ".amount", 45],
    ["==", ".customer", "c_123"],
    ["==", ".currency", "EUR"],
  ];

  async function grant(approver: Party, cav: Capability["cav"] = exactCaveats, ttlSeconds = 900): Promise<string> {
    return issueRootLink(
      { principal: approver.principal, key: approver.key },
      { aud: world.acme.worker.principal, caps: [{ res: "tool:refund", act: "/invoke", cav }], mdl: 0, ttlSeconds, clock: world.clock },
    );
  }

  async function grantCall(approver: Party, grantLink: string, effectId: string): Promise<InvocationRequest> {
    const approval = await approve(
      approver,
      { args: args45, effectId, chain: [grantLink], subject: approver.principal },
      { grant: tokenHash(grantLink) },
    );
    return gatedCall(args45, effectId, approval, [grantLink]);
  }

  it("an exact-args one-shot grant from an approver with root authority is accepted once", async () => {
    const grantLink = await grant(world.acme.bob);
    const effectId = newEffectId();
    const verified = await tool.call(await grantCall(world.acme.bob, grantLink, effectId));
    expect(verified.audit.approval?.grant).toBe(true);
    expect(verified.audit.onBehalfOf).toBe(world.acme.bob.principal);
    // Single use: a second approval naming the same grant is refused.
    await expectDenied(tool, grantCall(world.acme.bob, grantLink, effectId), "ERR_AUTHZ_REPLAY");
  });

  it("a grant that does not pin every arg by equality is refused", async () => {
    const loose = await grant(world.acme.bob, [
      ["<=", ".amount", 45],
      ["==", ".customer", "c_123"],
      ["==", ".currency", "EUR"],
    ]);
    const error = await expectDenied(tool, grantCall(world.acme.bob, loose, newEffectId()), "ERR_AUTHZ_APPROVAL");
    expect(error.details.check).toBe("grant");
    const partial = await grant(world.acme.bob, [
      ["==", ".amount", 45],
      ["==", ".customer", "c_123"],
    ]);
    await expectDenied(tool, grantCall(world.acme.bob, partial, newEffectId()), "ERR_AUTHZ_APPROVAL");
  });

  it("a grant that outlives its approval is refused", async () => {
    const long = await grant(world.acme.bob, exactCaveats, 3600);
    const error = await expectDenied(tool, grantCall(world.acme.bob, long, newEffectId()), "ERR_AUTHZ_APPROVAL");
    expect(error.details.check).toBe("grant");
  });

  it("the approver must hold root authority for the tool", async () => {
    world.approverRole.add(world.acme.carol.principal);
    await expectDenied(tool, grantCall(world.acme.carol, await grant(world.acme.carol), newEffectId()), "ERR_AUTHZ_ROOT");
  });

  it("signInvocation refuses to sign with a chain the signer does not hold", async () => {
    await expect(
      signInvocation(
        { principal: world.acme.mallory.principal, key: world.acme.mallory.key },
        {
          chain,
          tool: world.acme.refundTool,
          res: "tool:refund",
          act: "/invoke",
          args: args45,
          effectId: newEffectId(),
          clock: new SimulatedClock(startMs),
        },
      ),
    ).rejects.toMatchObject({ code: "ERR_AUTHZ_AUDIENCE" });
  });
});
