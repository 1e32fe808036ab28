/**
 * A small tenant world for identity tests: a tenant authority, certified humans and agents whose
 * private keys the test owns (so it can craft hostile tokens with valid signatures), a root
 * authority oracle, tool policies, and a counting tool stub that runs only after verification.
 */
import { createHash, generateKeyPairSync, sign as signBytes } from "node:crypto";
import type { KeyObject, webcrypto } from "node:crypto";
import { expect } from "vitest";
import { SimulatedClock } from "../../../core/clock.js";
import {
  AuthorizationError,
  ChainCache,
  createInvocationVerifier,
  MemoryKeyDirectory,
  MemoryReplayStore,
  MemoryRevocationList,
  SigningKey,
  TenantAuthority,
  attenuate,
  issueRootLink,
  signInvocation,
  tokenHash,
} from "../../../identity/index.js";
import type {
  Capability,
  KeyDirectory,
  InvocationRequest,
  InvocationVerifier,
  InvocationVerifierOptions,
  RootAuthorityOracle,
  ToolPolicy,
  VerifiedInvocation,
  WebAuthnAssertion,
} from "../../../identity/index.js";

/** 2026-11-22T02:00:00Z, in ms. */
export const startMs = Date.UTC(2026, 10, 22, 2, 0, 0);

/** A principal whose key the test holds. */
export interface Party {
  readonly principal: string;
  readonly key: SigningKey;
  readonly privateKey: CryptoKey;
}

type CryptoKey = webcrypto.CryptoKey;

/** Creates a key pair the test owns, wrapped as a SigningKey. */
export async function newParty(principal: string): Promise<Party> {
  const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  return { principal, key: await SigningKey.fromKeyPair(pair), privateKey: pair.privateKey };
}

/** Signs arbitrary header and payload text with a party's key: for crafting hostile tokens. */
export async function signRaw(privateKey: CryptoKey, headerText: string, payloadText: string): Promise<string> {
  const input = `${Buffer.from(headerText).toString("base64url")}.${Buffer.from(payloadText).toString("base64url")}`;
  const signature = Buffer.from(await crypto.subtle.sign({ name: "Ed25519" }, privateKey, Buffer.from(input)));
  return `${input}.${signature.toString("base64url")}`;
}

/** Signs arbitrary claims under the exact header: for crafting tokens our issuers refuse to make. */
export async function signClaims(party: Party, typ: string, claims: object): Promise<string> {
  return signRaw(party.privateKey, JSON.stringify({ alg: "EdDSA", typ, kid: party.key.kid }), JSON.stringify(claims));
}

/** The decoded payload of a compact JWS. */
export function payloadOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split(".")[1] as string, "base64url").toString("utf8")) as Record<string, unknown>;
}

/** Replaces a token's payload, keeping its header and signature. */
export function withPayload(token: string, payload: object): string {
  const [header, , signature] = token.split(".") as [string, string, string];
  return `${header}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${signature}`;
}

export const refundCaveatsRoot: Capability["cav"] = [["<=", ".amount", 200]];
export const refundCaveatsHop: Capability["cav"] = [
  ["<=", ".amount", 50],
  ["==", ".customer", "c_123"],
  ["in", ".currency", ["EUR", "USD"]],
];
export const baselineArgs = { amount: 30, customer: "c_123", currency: "EUR" };

/** One tenant's parties and services. */
export interface Tenant {
  readonly tenant: string;
  readonly authority: TenantAuthority;
  readonly alice: Party;
  readonly bob: Party;
  readonly carol: Party;
  readonly malloryUser: Party;
  readonly orchestrator: Party;
  readonly worker: Party;
  readonly mallory: Party;
  readonly refundTool: string;
  readonly emailTool: string;
}

/** A world: clock, directory, revocations, a t_acme tenant and a t_evil tenant. */
export interface World {
  readonly clock: SimulatedClock;
  readonly directory: MemoryKeyDirectory;
  readonly revocations: MemoryRevocationList;
  readonly acme: Tenant;
  readonly evil: Tenant;
  readonly rootAuthority: RootAuthorityOracle;
  readonly approverRole: Set<string>;
}

/** Root grants: principal (or obo human) → "res act" strings it may grant. */
const grants: Record<string, readonly string[]> = {
  "tsr:t_acme:user:alice": ["tool:refund /invoke", "tool:email /send"],
  "tsr:t_acme:user:bob": ["tool:refund /invoke"],
  "tsr:t_evil:user:alice": ["tool:refund /invoke"],
};

export async function createWorld(): Promise<World> {
  const clock = new SimulatedClock(startMs);
  const directory = new MemoryKeyDirectory({ clock });
  const revocations = new MemoryRevocationList({ clock });
  const acme = await createTenant("t_acme", clock, directory);
  const evil = await createTenant("t_evil", clock, directory);
  const rootAuthority: RootAuthorityOracle = ({ subject, onBehalfOf, capability }) =>
    (grants[onBehalfOf ?? subject] ?? []).includes(`${capability.res} ${capability.act}`);
  const approverRole = new Set([acme.bob.principal, acme.alice.principal]);
  return { clock, directory, revocations, acme, evil, rootAuthority, approverRole };
}

async function createTenant(tenant: string, clock: SimulatedClock, directory: MemoryKeyDirectory): Promise<Tenant> {
  const authority = await TenantAuthority.create({ tenant, clock });
  await directory.addAuthority(authority.anchor());
  const human = async (id: string): Promise<Party> => {
    const party = await newParty(`tsr:${tenant}:user:${id}`);
    const certificate = await authority.certifyHuman({
      principal: party.principal,
      publicJwk: party.key.publicJwk,
      acr: "urn:acme:mfa",
      amr: ["pwd", "otp"],
    });
    await directory.registerIdentity(certificate.token, party.key.publicJwk);
    return party;
  };
  const agent = async (id: string): Promise<Party> => {
    const party = await newParty(`tsr:${tenant}:agent:${id}`);
    await certifyAgent(authority, directory, party, 1);
    return party;
  };
  return {
    tenant,
    authority,
    alice: await human("alice"),
    bob: await human("bob"),
    carol: await human("carol"),
    malloryUser: await human("mallory"),
    orchestrator: await agent("orchestrator-7"),
    worker: await agent("refund-worker-3"),
    mallory: await agent("mallory"),
    refundTool: `tsr:${tenant}:tool:refund`,
    emailTool: `tsr:${tenant}:tool:email`,
  };
}

/** Certifies (or re-certifies) an agent's key under a lease epoch and registers it. */
export async function certifyAgent(authority: TenantAuthority, directory: KeyDirectory, party: Party, leaseEpoch: number): Promise<void> {
  const certificate = await authority.certifyAgent({
    principal: party.principal,
    publicJwk: party.key.publicJwk,
    type: "test-agent",
    version: "1",
    parent: null,
    node: "node-1",
    leaseEpoch,
  });
  await directory.registerIdentity(certificate.token, party.key.publicJwk);
}

export function refundPolicy(tenant: Tenant, extra: Partial<ToolPolicy> = {}): ToolPolicy {
  return { id: tenant.refundTool, res: "tool:refund", acts: ["/invoke"], ...extra };
}

/** alice → orchestrator → worker, the chain of the baseline. */
export async function baselineChain(
  world: World,
  options: {
    tenant?: Tenant;
    rootTtlSeconds?: number;
    hopTtlSeconds?: number;
    rootMdl?: number;
    rootCaveats?: Capability["cav"];
    issuerClock?: SimulatedClock;
  } = {},
): Promise<readonly string[]> {
  const t = options.tenant ?? world.acme;
  const clock = options.issuerClock ?? world.clock;
  const root = await issueRootLink(
    { principal: t.alice.principal, key: t.alice.key },
    {
      aud: t.orchestrator.principal,
      caps: [{ res: "tool:refund", act: "/invoke", cav: options.rootCaveats ?? refundCaveatsRoot }],
      mdl: options.rootMdl ?? 2,
      ttlSeconds: options.rootTtlSeconds ?? 3600,
      clock,
    },
  );
  return attenuate(
    { principal: t.orchestrator.principal, key: t.orchestrator.key },
    {
      chain: [root],
      aud: t.worker.principal,
      caps: [{ res: "tool:refund", act: "/invoke", cav: refundCaveatsHop }],
      ttlSeconds: options.hopTtlSeconds ?? 3600,
      clock,
    },
  );
}

let effectCounter = 0;
/** A fresh effect id. */
export function newEffectId(): string {
  effectCounter += 1;
  return `eff_test-${effectCounter}`;
}

/** The worker's invocation of the refund tool. */
export async function invoke(
  world: World,
  chain: readonly string[],
  options: { args?: unknown; invoker?: Party; tool?: string; effectId?: string; clock?: SimulatedClock; tenant?: Tenant } = {},
): Promise<InvocationRequest> {
  const t = options.tenant ?? world.acme;
  const invoker = options.invoker ?? t.worker;
  const args = options.args ?? baselineArgs;
  const effectId = options.effectId ?? newEffectId();
  const invocation = await signInvocation(
    { principal: invoker.principal, key: invoker.key },
    { chain, tool: options.tool ?? t.refundTool, res: "tool:refund", act: "/invoke", args, effectId, clock: options.clock ?? world.clock },
  );
  return { chain, invocation, args, effectId };
}

/** A verifier for one tool, with its own replay store unless one is given. */
export function verifierFor(world: World, tool: ToolPolicy, extra: Partial<InvocationVerifierOptions> = {}): InvocationVerifier {
  return createInvocationVerifier({
    tenant: parseTenant(tool.id),
    tool,
    directory: world.directory,
    revocations: world.revocations,
    replay: new MemoryReplayStore({ clock: world.clock }),
    rootAuthority: world.rootAuthority,
    clock: world.clock,
    cache: new ChainCache(),
    ...extra,
  });
}

function parseTenant(principal: string): string {
  return principal.split(":")[1] as string;
}

/** A tool stub owned by the test: it counts effects only after verification passed, de-duplicating by effect id. */
export class CountingTool {
  calls = 0;
  readonly effects = new Set<string>();
  readonly #verifier: InvocationVerifier;

  constructor(verifier: InvocationVerifier) {
    this.#verifier = verifier;
  }

  async call(request: InvocationRequest): Promise<VerifiedInvocation> {
    const verified = await this.#verifier.verify(request);
    this.calls += 1;
    this.effects.add(verified.audit.invocation.eff);
    return verified;
  }
}

/** Asserts the call is refused with `code` and the tool ran nothing. */
export async function expectDenied(
  tool: CountingTool,
  request: InvocationRequest | Promise<InvocationRequest>,
  code: string,
): Promise<AuthorizationError> {
  const callsBefore = tool.calls;
  let caught: unknown;
  try {
    await tool.call(await request);
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(AuthorizationError);
  expect((caught as AuthorizationError).code).toBe(code);
  expect(tool.calls).toBe(callsBefore);
  return caught as AuthorizationError;
}

/** A software WebAuthn authenticator (P-256) for approval tests. */
export class SoftAuthenticator {
  readonly credId = "cred-1";
  readonly publicKey: KeyObject;
  readonly #privateKey: KeyObject;
  signCount = 0;

  constructor() {
    const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
    this.publicKey = pair.publicKey;
    this.#privateKey = pair.privateKey;
  }

  assert(challenge: Buffer, options: { rpId: string; origin: string; flags?: number; signCount?: number }): WebAuthnAssertion {
    this.signCount = options.signCount ?? this.signCount + 1;
    const clientDataJSON = Buffer.from(
      JSON.stringify({ type: "webauthn.get", challenge: challenge.toString("base64url"), origin: options.origin, crossOrigin: false }),
    );
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(this.signCount);
    const authenticatorData = Buffer.concat([
      createHash("sha256").update(options.rpId).digest(),
      Buffer.from([options.flags ?? 0x05]),
      counter,
    ]);
    const signature = signBytes(
      "sha256",
      Buffer.concat([authenticatorData, createHash("sha256").update(clientDataJSON).digest()]),
      this.#privateKey,
    );
    return {
      credId: this.credId,
      authenticatorData: authenticatorData.toString("base64url"),
      clientDataJSON: clientDataJSON.toString("base64url"),
      signature: signature.toString("base64url"),
    };
  }
}

export { tokenHash };
