import type { KeyDirectory, ReplayStore, RevocationList, RootAuthorityOracle, TenantAuthority, Vault } from "../identity/index.js";

/**
 * Identity and delegation for a node (IDENTITY.md). With it, no actor has ambient authority:
 * starting a run and sending an event carry a delegation chain whose leaf names the actor; while an
 * actor processes a message it can invoke tools only under that message's chain; every tool call is
 * an invocation signed by the actor's own key and verified before `execute`; children and other
 * actors receive links attenuated from the chain. Without it, a node runs tools unchecked.
 */
export interface NodeIdentityOptions {
  /** The authority of each tenant this node serves (in production, backed by a KMS). */
  authorities: ReadonlyMap<string, TenantAuthority>;
  /** Which principals may grant which capabilities at the root of a chain (ReBAC/RBAC). */
  rootAuthority: RootAuthorityOracle;
  /** @defaultValue the tenant directory kept in the Store (append-only, tenant-first), cached on the node */
  directory?: KeyDirectory;
  /** @defaultValue an authoritative MemoryRevocationList */
  revocations?: RevocationList;
  /** Single-use store for invocations. @defaultValue a MemoryReplayStore */
  replay?: ReplayStore;
  /** Per-tenant vaults; a tool gets only the secrets it declares, only for a verified invocation. */
  vaults?: ReadonlyMap<string, Vault>;
}
