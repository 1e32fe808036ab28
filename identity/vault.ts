import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { ValidationError } from "../core/errors.js";
import { VaultError } from "./errors.js";
import { isTenantId, parsePrincipal } from "./principal.js";
import { VerifiedInvocation } from "./verified-invocation.js";

/** AES-256-GCM ciphertext with its nonce and tag. */
interface Sealed {
  readonly iv: Buffer;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
}

/** One secret at rest: its data key wrapped by the tenant key, its value sealed by the data key. */
interface SealedSecret {
  readonly version: number;
  readonly wrappedKey: Sealed;
  readonly value: Sealed;
}

/** Options of {@link Vault}. */
export interface VaultOptions {
  /** The tenant whose secrets these are. */
  readonly tenant: string;
  /** The tenant key-encryption key: 32 bytes, from the KMS in production. Copied; wipe the caller's buffer after use. */
  readonly keyEncryptionKey: Uint8Array;
}

/** Shortest secret accepted: redacting shorter values would shred logs and they are guessable anyway. */
export const secretCharsMin = 8;

/**
 * Per-tenant secrets with envelope encryption (DESIGN §5): each secret version has its own random
 * AES-256-GCM data key, wrapped by the tenant key-encryption key; both seals bind
 * `(tenant, name, version)` as associated data, so a sealed record moved to another name, version
 * or tenant does not open. Tools declare the secrets they need; `release` gives a tool exactly its
 * declared secrets, once, against a genuine verified invocation for that tool. `redact` replaces
 * every known secret value in text or JSON before it reaches the journal, records, logs or traces.
 *
 * @example
 * ```ts
 * const vault = new Vault({ tenant: "t_acme", keyEncryptionKey: kek })
 * await vault.put("payments", "sk_live_…")
 * vault.declareTool("tsr:t_acme:tool:refund", ["payments"])
 * const secrets = vault.release(verified) // { payments: "sk_live_…" }
 * ```
 */
export class Vault {
  /** The tenant. */
  readonly tenant: string;
  readonly #kek: Buffer;
  readonly #secrets = new Map<string, SealedSecret>();
  readonly #declarations = new Map<string, readonly string[]>();
  /** Known plaintexts and their encodings, longest first, for redaction only. */
  #redactions: Array<{ readonly text: string; readonly name: string }> = [];

  /** @param options - tenant and key-encryption key */
  constructor(options: VaultOptions) {
    if (!isTenantId(options.tenant)) throw new ValidationError("ERR_VALIDATION", "bad tenant id");
    if (options.keyEncryptionKey.byteLength !== 32) throw new ValidationError("ERR_VALIDATION", "the key-encryption key is 32 bytes");
    this.tenant = options.tenant;
    this.#kek = Buffer.from(options.keyEncryptionKey);
  }

  /**
   * Stores a new version of a secret.
   *
   * @param name - the secret's name, e.g. `payments`
   * @param value - the secret, at least 8 characters
   * @returns the credential reference for audit records, e.g. `t_acme/payments@v2`
   * @throws ValidationError for a bad name or a short value
   */
  async put(name: string, value: string): Promise<{ readonly ref: string; readonly version: number }> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) throw new ValidationError("ERR_VALIDATION", "bad secret name");
    if (value.length < secretCharsMin) throw new ValidationError("ERR_VALIDATION", `secrets are at least ${secretCharsMin} characters`);
    const version = (this.#secrets.get(name)?.version ?? 0) + 1;
    const dataKey = randomBytes(32);
    const aad = this.#aad(name, version);
    this.#secrets.set(name, {
      version,
      wrappedKey: seal(this.#kek, dataKey, Buffer.concat([aad, Buffer.from("\u0000dek")])),
      value: seal(dataKey, Buffer.from(value, "utf8"), aad),
    });
    dataKey.fill(0);
    this.#remember(name, value);
    return { ref: `${this.tenant}/${name}@v${version}`, version };
  }

  /**
   * Declares the secrets a tool needs; replaces an earlier declaration.
   *
   * @param tool - the tool principal of this tenant
   * @param names - secret names
   * @throws ValidationError for a tool of another tenant
   */
  declareTool(tool: string, names: readonly string[]): void {
    const principal = parsePrincipal(tool);
    if (principal.kind !== "tool" || principal.tenant !== this.tenant)
      throw new ValidationError("ERR_VALIDATION", `${tool} is not a tool of ${this.tenant}`);
    this.#declarations.set(tool, Object.freeze([...names]));
  }

  /**
   * The credential references a tool's call uses, for the audit record (`credential.vault_ref`).
   *
   * @param tool - the tool principal
   * @returns one reference per declared secret, e.g. `t_acme/tool:refund/payments@v12`
   */
  credentialRefs(tool: string): readonly string[] {
    const toolId = parsePrincipal(tool).id;
    return (this.#declarations.get(tool) ?? []).map(
      (name) => `${this.tenant}/tool:${toolId}/${name}@v${this.#secrets.get(name)?.version ?? 0}`,
    );
  }

  /**
   * Releases the secrets the invocation's tool declared, and only those, once per verified
   * invocation. Call it after the audit record is written (IDENTITY.md §6 step 13).
   *
   * @param verified - the verifier's result for this call
   * @returns secret name → value
   * @throws VaultError `ERR_VAULT_UNVERIFIED` (not a verifier result), `ERR_VAULT_TENANT`, `ERR_VAULT_ALREADY_RELEASED`, `ERR_VAULT_NOT_DECLARED`, `ERR_VAULT_SECRET_NOT_FOUND` or `ERR_VAULT_DECRYPT`
   */
  release(verified: VerifiedInvocation): Readonly<Record<string, string>> {
    if (!VerifiedInvocation.isGenuine(verified))
      throw new VaultError("ERR_VAULT_UNVERIFIED", "secrets are released only for a verified invocation");
    if (verified.audit.tenant !== this.tenant) throw new VaultError("ERR_VAULT_TENANT", "the invocation belongs to another tenant");
    const names = this.#declarations.get(verified.audit.tool);
    if (names === undefined)
      throw new VaultError("ERR_VAULT_NOT_DECLARED", `${verified.audit.tool} declared no secrets`, {
        details: { tool: verified.audit.tool },
      });
    if (!VerifiedInvocation.claimSecretRelease(verified))
      throw new VaultError("ERR_VAULT_ALREADY_RELEASED", "this invocation's secrets were already released");
    const released: Record<string, string> = {};
    for (const name of names) released[name] = this.#open(name);
    return Object.freeze(released);
  }

  /**
   * Replaces every known secret value (raw, JSON-escaped, URL-encoded and base64 forms) with
   * `[REDACTED:<name>]`, in a string or anywhere in a JSON value (member names included). Values
   * nested deeper than 64 levels are replaced whole.
   *
   * @param value - text or a JSON value
   * @returns a redacted copy
   * @example
   * ```ts
   * vault.redact({ header: "Bearer sk_live_abc123xyz" }) // { header: "Bearer [REDACTED:payments]" }
   * ```
   */
  redact<T>(value: T): T {
    return this.#redactValue(value, 0) as T;
  }

  #redactValue(value: unknown, depth: number): unknown {
    if (typeof value === "string") return this.#redactText(value);
    if (value === null || typeof value !== "object") return value;
    if (depth >= 64) return "[REDACTED:too-deep]";
    if (Array.isArray(value)) return value.map((item) => this.#redactValue(item, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      Object.defineProperty(out, this.#redactText(key), {
        value: this.#redactValue(item, depth + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }

  #redactText(text: string): string {
    let out = text;
    for (const { text: secret, name } of this.#redactions) if (out.includes(secret)) out = out.split(secret).join(`[REDACTED:${name}]`);
    return out;
  }

  #remember(name: string, value: string): void {
    const forms = new Set([
      value,
      JSON.stringify(value).slice(1, -1),
      encodeURIComponent(value),
      Buffer.from(value, "utf8").toString("base64"),
    ]);
    this.#redactions = [...this.#redactions, ...[...forms].map((text) => ({ text, name }))].sort((a, b) => b.text.length - a.text.length);
  }

  #open(name: string): string {
    const secret = this.#secrets.get(name);
    if (secret === undefined) throw new VaultError("ERR_VAULT_SECRET_NOT_FOUND", `no secret ${name}`, { details: { name } });
    const aad = this.#aad(name, secret.version);
    try {
      const dataKey = open(this.#kek, secret.wrappedKey, Buffer.concat([aad, Buffer.from("\u0000dek")]));
      const value = open(dataKey, secret.value, aad).toString("utf8");
      dataKey.fill(0);
      return value;
    } catch (cause) {
      throw new VaultError("ERR_VAULT_DECRYPT", `secret ${name} does not decrypt`, { cause, details: { name } });
    }
  }

  #aad(name: string, version: number): Buffer {
    return Buffer.from(`tessera/vault/v1\u0000${this.tenant}\u0000${name}\u0000${version}`, "utf8");
  }
}

function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Sealed {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv, ciphertext, tag: cipher.getAuthTag() };
}

function open(key: Buffer, sealed: Sealed, aad: Buffer): Buffer {
  const decipher = createDecipheriv("aes-256-gcm", key, sealed.iv, { authTagLength: 16 });
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.tag);
  return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
}
