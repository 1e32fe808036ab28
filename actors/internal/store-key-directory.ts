import type { Clock } from "../../core/clock.js";
import type { Json } from "../../core/json.js";
import type { NewDirectoryEntry, Store } from "../../core/ports/store.js";
import {
  jwkThumbprint,
  MemoryKeyDirectory,
  type AuthorityAnchor,
  type DirectoryChange,
  type KeyDirectory,
  type KeyRecord,
  type PublicJwk,
  type RevocationEntry,
  type RevocationTarget,
} from "../../identity/index.js";
import type { Logger } from "../logger.js";

/**
 * @internal The tenant key directory kept in the Store (an append-only log per tenant) and cached on
 * the node in a MemoryKeyDirectory. Every change is written through; `sync` replays what other
 * nodes (or earlier lives of this one) appended. Entries are re-verified as they are replayed: an
 * identity token is accepted only with a valid signature of its tenant's authority, as on first sight.
 */
export class StoreKeyDirectory implements KeyDirectory {
  readonly #inner: MemoryKeyDirectory;
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #positions = new Map<string, number>();
  /** Tenants whose log is being replayed (a sync of one tenant does not hold up another's). */
  readonly #replaying = new Set<string>();
  readonly #onRevoke: (entry: RevocationEntry) => Promise<unknown>;

  /**
   * @param onRevoke - applies a revocation found in the log (to the node's revocation list); without
   *   it revocations in the log are skipped
   */
  constructor(store: Store, clock: Clock, logger: Logger, onRevoke: (entry: RevocationEntry) => Promise<unknown> = async () => undefined) {
    this.#inner = new MemoryKeyDirectory({ clock });
    this.#store = store;
    this.#logger = logger;
    this.#clock = clock;
    this.#onRevoke = onRevoke;
  }

  /**
   * Records a revocation in the tenant's log, so that every node, and every node started later,
   * applies it when it next reads the log (the broadcast only tells the nodes running now).
   */
  async appendRevocation(entry: RevocationEntry): Promise<void> {
    await this.#append(entry.tenant, "revoke", "", { target: entry.target as unknown as Json, expiresAt: entry.expiresAt });
  }

  get(tenant: string, kid: string): KeyRecord | undefined {
    return this.#inner.get(tenant, kid);
  }

  epoch(tenant: string): number {
    return this.#inner.epoch(tenant);
  }

  statusEpoch(tenant: string): number {
    return this.#inner.statusEpoch(tenant);
  }

  onChange(listener: (change: DirectoryChange) => void): () => void {
    return this.#inner.onChange(listener);
  }

  async addAuthority(anchor: AuthorityAnchor): Promise<KeyRecord> {
    await this.sync(anchor.tenant);
    // Each node adds its tenants' anchors when it starts: the log keeps one entry per anchor key.
    const known = this.#inner.get(anchor.tenant, await jwkThumbprint(anchor.publicJwk));
    if (known !== undefined) return known;
    const record = await this.#inner.addAuthority(anchor);
    await this.#append(anchor.tenant, "anchor", record.kid, anchor as unknown as Json);
    return record;
  }

  async registerIdentity(token: string, publicJwk: PublicJwk): Promise<KeyRecord> {
    const record = await this.#inner.registerIdentity(token, publicJwk);
    await this.#append(record.tenant, "identity", record.kid, { token, publicJwk: publicJwk as unknown as Json });
    return record;
  }

  async retire(tenant: string, kid: string, atSeconds: number): Promise<void> {
    await this.#inner.retire(tenant, kid, atSeconds);
    await this.#append(tenant, "retire", kid, { atSeconds });
  }

  async markCompromised(tenant: string, kid: string): Promise<void> {
    await this.#inner.markCompromised(tenant, kid);
    await this.#append(tenant, "compromise", kid, {});
  }

  /** Applies the tenant's directory changes this node has not seen yet. */
  async sync(tenant: string): Promise<void> {
    if (this.#replaying.has(tenant)) return;
    this.#replaying.add(tenant);
    try {
      for (;;) {
        const after = this.#positions.get(tenant) ?? 0;
        const entries = await this.#store.readDirectory(tenant, after, 500);
        for (const entry of entries) {
          this.#positions.set(tenant, entry.position);
          try {
            const body = entry.body as Record<string, unknown>;
            if (entry.kind === "anchor") await this.#inner.addAuthority(body as unknown as AuthorityAnchor);
            else if (entry.kind === "identity") await this.#inner.registerIdentity(body.token as string, body.publicJwk as PublicJwk);
            else if (entry.kind === "retire") await this.#inner.retire(tenant, entry.kid, body.atSeconds as number);
            else if (entry.kind === "revoke")
              await this.#onRevoke({ tenant, target: body.target as RevocationTarget, expiresAt: body.expiresAt as number });
            else if (entry.kind === "compromise") await this.#inner.markCompromised(tenant, entry.kid);
          } catch (error) {
            // An expired identity token no longer certifies anything: skipping it is what verification would do.
            this.#logger.debug({ tenant, kid: entry.kid, kind: entry.kind, err: String(error) }, "directory entry not applied");
          }
        }
        if (entries.length < 500) return;
      }
    } finally {
      this.#replaying.delete(tenant);
    }
  }

  async #append(tenant: string, kind: NewDirectoryEntry["kind"], kid: string, body: Json): Promise<void> {
    const position = await this.#store.appendDirectory({ tenantId: tenant, kind, kid, body, createdAt: this.#clock.now() });
    if (position === (this.#positions.get(tenant) ?? 0) + 1) this.#positions.set(tenant, position);
  }
}
