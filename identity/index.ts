/**
 * `@tessera/tessera/identity`: principals, keys, identity tokens, delegation chains, invocations,
 * approvals, revocation and the vault (IDENTITY.md, DESIGN §5). jose is used only inside this
 * module. Every export is documented where it is declared.
 *
 * @packageDocumentation
 */
export { AuthorizationError, IdentityError, VaultError } from "./errors.js";
export type { AuthorizationCode, AuthorizationErrorOptions, AuthorizationReason } from "./errors.js";
export { identityLimits } from "./limits.js";
export type { IdentityLimits } from "./limits.js";

export { formatPrincipal, isTenantId, parsePrincipal, principalCharsMax, tryParsePrincipal } from "./principal.js";
export type { Principal, PrincipalKind } from "./principal.js";
export { randomJti, tokenHash } from "./encoding.js";
export { argsHash, canonicalize } from "./canonical-json.js";
export type { CanonicalizeBounds } from "./canonical-json.js";

export { globMatch } from "./glob.js";
export { compileCaveats, evaluateCaveats } from "./caveats.js";
export type { CaveatLimits, CaveatPredicate, CaveatProblem, CaveatStatement } from "./caveats.js";
export { assertNarrower, checkCapabilities, covers, isAction, isResource } from "./capabilities.js";
export type { Capability, Want } from "./capabilities.js";

export { checkPublicJwk, importPublicJwk, jwkThumbprint, signatureAlgorithm, SigningKey } from "./keys.js";
export type { PublicJwk } from "./keys.js";
export type { TokenType } from "./token-codec.js";
export type { AuthorityAnchor, DirectoryChange, KeyDirectory, KeyRecord, KeyResolver, KeyStatus } from "./key-directory.js";
export { MemoryKeyDirectory } from "./memory-key-directory.js";
export type { MemoryKeyDirectoryOptions } from "./memory-key-directory.js";
export type { AgentFacts, IdentityClaims } from "./identity-token.js";
export { TenantAuthority } from "./tenant-authority.js";
export type { CertifyAgentOptions, CertifyHumanOptions, IdentityCertificate, TenantAuthorityOptions } from "./tenant-authority.js";
export { ActorSigner } from "./actor-signer.js";
export type { ActorDelegationOptions, ActorInvocationOptions, ChainHandle } from "./actor-signer.js";

export { attenuate, issueRootLink, readLeaf } from "./delegation.js";
export type { AttenuateOptions, LinkIssuer, RootLinkOptions } from "./delegation.js";
export type { LinkClaims, OnBehalfOf, ParsedLink, TaskRef } from "./link-claims.js";
export { signInvocation } from "./invocation.js";
export type { InvocationClaims, SignInvocationOptions } from "./invocation.js";

export { verifyChain } from "./chain-verifier.js";
export type { ChainContext, RootAuthorityOracle, RootAuthorityRequest, VerifiedChain, VerifiedLink } from "./chain-verifier.js";
export { ChainCache } from "./chain-cache.js";
export type { ChainCacheOptions } from "./chain-cache.js";
export { createInvocationVerifier } from "./invocation-verifier.js";
export type { InvocationRequest, InvocationVerifier, InvocationVerifierOptions, ToolPolicy } from "./invocation-verifier.js";
export { VerifiedInvocation } from "./verified-invocation.js";
export type { AuditLink, AuthorizationAudit, AuthorizationTokens } from "./verified-invocation.js";

export { MemoryRevocationList } from "./revocation-list.js";
export type {
  MemoryRevocationListOptions,
  RevocationEntry,
  RevocationFeedStatus,
  RevocationList,
  RevocationReader,
  RevocationTarget,
} from "./revocation-list.js";
export { MemoryReplayStore } from "./replay-store.js";
export type { MemoryReplayStoreOptions, ReplayStore } from "./replay-store.js";

export { approvalChallenge, approvalIntent, signApproval, verifyApproval } from "./approval.js";
export type {
  ApprovalClaims,
  ApprovalContext,
  ApprovalPolicy,
  ApproverOracle,
  IntentInput,
  SignApprovalOptions,
  VerifiedApproval,
} from "./approval.js";
export { MemoryPasskeyDirectory, verifyWebAuthnAssertion } from "./webauthn.js";
export type { Passkey, PasskeyDirectory, WebAuthnAssertion, WebAuthnPolicy } from "./webauthn.js";

export { secretCharsMin, Vault } from "./vault.js";
export type { VaultOptions } from "./vault.js";
export { joseSelfTest } from "./jose-self-test.js";
export type { JoseSelfTestResult } from "./jose-self-test.js";
