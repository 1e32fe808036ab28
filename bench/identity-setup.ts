import { systemClock } from "../core/clock.js";
import {
  MemoryKeyDirectory,
  SigningKey,
  TenantAuthority,
  attenuate,
  issueRootLink,
  type Capability,
  type KeyDirectory,
} from "../identity/index.js";
import { TesseraNode, type NodeIdentityOptions } from "../index.js";

/** Identity for a bench node, and a 3-link chain for each run. */
export interface BenchIdentity {
  options: NodeIdentityOptions;
  /** user → orchestrator → worker → the run: three links, each attenuating the one before. */
  chainFor(tenantId: string, runId: string): Promise<string[]>;
}

/**
 * A new key for `principal`, certified by the tenant authority (as a human when the principal is a
 * user's, else as an agent outside any node) and registered in `directory`.
 */
export async function certifiedParty(
  authority: TenantAuthority,
  directory: KeyDirectory,
  principal: string,
): Promise<{ principal: string; key: SigningKey }> {
  const key = await SigningKey.generate();
  const certificate = principal.includes(":user:")
    ? await authority.certifyHuman({ principal, publicJwk: key.publicJwk, acr: "mfa", amr: ["pwd", "otp"] })
    : await authority.certifyAgent({
        principal,
        publicJwk: key.publicJwk,
        type: "worker",
        version: "1",
        parent: null,
        node: "node-1",
        leaseEpoch: 1,
      });
  await directory.registerIdentity(certificate.token, key.publicJwk);
  return { principal, key };
}

/**
 * A tenant authority, a human (`alice`) and two agents outside the node (`orchestrator`,
 * `worker`) whose identity tokens are in the node's directory, so that the node verifies every
 * link of a run's chain, and an invocation signed by the run's own key on every tool call.
 */
export async function benchIdentity(tenantId: string): Promise<BenchIdentity> {
  const clock = systemClock;
  const directory = new MemoryKeyDirectory({ clock });
  const authority = await TenantAuthority.create({ tenant: tenantId, clock });
  await directory.addAuthority(authority.anchor());
  const alice = await certifiedParty(authority, directory, `tsr:${tenantId}:user:alice`);
  const orchestrator = await certifiedParty(authority, directory, `tsr:${tenantId}:agent:orchestrator`);
  const worker = await certifiedParty(authority, directory, `tsr:${tenantId}:agent:worker`);
  const caps = (iMax: number): Capability[] => [{ res: "tool:step", act: "/invoke", cav: [["<=", ".i", iMax]] }];
  const root = await issueRootLink(alice, { aud: orchestrator.principal, caps: caps(1000), mdl: 3, clock });
  const second = await attenuate(orchestrator, { chain: [root], aud: worker.principal, caps: caps(500), clock });
  return {
    options: { authorities: new Map([[tenantId, authority]]), rootAuthority: () => true, directory },
    async chainFor(tenant, runId) {
      return [...(await attenuate(worker, { chain: second, aud: TesseraNode.principalOf(tenant, runId), caps: caps(100), clock }))];
    },
  };
}
