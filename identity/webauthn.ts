import { createHash, verify as verifySignatureBytes } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { decodeCanonicalBase64url } from "./encoding.js";
import { deny } from "./errors.js";

/** A WebAuthn assertion as carried in an approval's `wa` claim (all members base64url). */
export interface WebAuthnAssertion {
  /** Credential id. */
  readonly credId: string;
  /** Authenticator data. */
  readonly authenticatorData: string;
  /** Client data JSON bytes. */
  readonly clientDataJSON: string;
  /** Signature over `authenticatorData ‖ SHA-256(clientDataJSON)`. */
  readonly signature: string;
}

/** A registered passkey of a human principal. */
export interface Passkey {
  /** Tenant. */
  readonly tenant: string;
  /** The human it belongs to. */
  readonly principal: string;
  /** Credential id, base64url. */
  readonly credId: string;
  /** Its public key: P-256 (`ES256`) or Ed25519 (`EdDSA`). */
  readonly publicKey: KeyObject;
  /** COSE algorithm name. */
  readonly alg: "ES256" | "EdDSA";
  /** Last signature counter seen. */
  readonly signCount: number;
}

/** Where passkeys are registered; the counter update must be atomic with the check. */
export interface PasskeyDirectory {
  /**
   * @param tenant - the tenant
   * @param credId - the credential id
   * @returns the passkey, or `undefined`
   */
  get(tenant: string, credId: string): Passkey | undefined;
  /**
   * Raises the stored counter.
   *
   * @param tenant - the tenant
   * @param credId - the credential id
   * @param signCount - the new counter
   */
  updateSignCount(tenant: string, credId: string, signCount: number): void;
}

/** The in-memory {@link PasskeyDirectory}. */
export class MemoryPasskeyDirectory implements PasskeyDirectory {
  readonly #passkeys = new Map<string, Passkey>();

  /**
   * Registers a passkey (after a WebAuthn registration ceremony the embedding service ran).
   *
   * @param passkey - the passkey
   */
  register(passkey: Passkey): void {
    this.#passkeys.set(`${passkey.tenant}\u0000${passkey.credId}`, passkey);
  }

  get(tenant: string, credId: string): Passkey | undefined {
    return this.#passkeys.get(`${tenant}\u0000${credId}`);
  }

  updateSignCount(tenant: string, credId: string, signCount: number): void {
    const passkey = this.get(tenant, credId);
    if (passkey !== undefined) this.register({ ...passkey, signCount });
  }
}

/** The relying party's WebAuthn policy. */
export interface WebAuthnPolicy {
  /** Relying party id, e.g. `approvals.acme.example`. */
  readonly rpId: string;
  /** Origins the assertion may come from, e.g. `https://approvals.acme.example`. */
  readonly origins: readonly string[];
  /** Registered passkeys. */
  readonly passkeys: PasskeyDirectory;
}

const flagUserPresent = 0x01;
const flagUserVerified = 0x04;

/**
 * Verifies a WebAuthn assertion for an approval (IDENTITY.md §11): the client data is a
 * `webauthn.get` for exactly `challenge` from an allowed origin (not cross-origin); the
 * authenticator data is for the relying party, with user presence and user verification; the
 * signature counter moved forward (a cloned authenticator does not); the signature verifies with
 * the approver's registered passkey.
 *
 * @param assertion - the `wa` claim
 * @param expected - tenant, approver, challenge bytes, policy
 * @throws AuthorizationError `ERR_AUTHZ_APPROVAL` naming the failed check in `details.check`
 * @example
 * ```ts
 * verifyWebAuthnAssertion(claims.wa, { tenant, approver: claims.iss, challenge, policy })
 * ```
 */
export function verifyWebAuthnAssertion(
  assertion: WebAuthnAssertion,
  expected: { readonly tenant: string; readonly approver: string; readonly challenge: Buffer; readonly policy: WebAuthnPolicy },
): void {
  const fail: (check: string, message: string) => never = (check, message) =>
    deny("ERR_AUTHZ_APPROVAL", `approval: WebAuthn ${message}`, 12, { check });
  const passkey = expected.policy.passkeys.get(expected.tenant, assertion.credId);
  if (passkey === undefined || passkey.principal !== expected.approver)
    return fail("webauthn-credential", "credential is not the approver's");
  const authenticatorData = decodeCanonicalBase64url(assertion.authenticatorData);
  const clientDataBytes = decodeCanonicalBase64url(assertion.clientDataJSON);
  const signature = decodeCanonicalBase64url(assertion.signature);
  if (authenticatorData === undefined || clientDataBytes === undefined || signature === undefined || authenticatorData.length < 37) {
    return fail("webauthn-encoding", "assertion is malformed");
  }
  let clientData: Record<string, unknown>;
  try {
    clientData = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(clientDataBytes)) as Record<string, unknown>;
  } catch {
    return fail("webauthn-encoding", "client data is not JSON");
  }
  if (clientData === null || typeof clientData !== "object" || clientData.type !== "webauthn.get")
    fail("webauthn-type", "client data is not webauthn.get");
  if (clientData.challenge !== expected.challenge.toString("base64url")) fail("webauthn-challenge", "challenge is not this approval's");
  if (typeof clientData.origin !== "string" || !expected.policy.origins.includes(clientData.origin))
    fail("webauthn-origin", "origin is not allowed");
  if (clientData.crossOrigin === true) fail("webauthn-origin", "cross-origin assertion");
  const rpIdHash = createHash("sha256").update(expected.policy.rpId).digest();
  if (!authenticatorData.subarray(0, 32).equals(rpIdHash)) fail("webauthn-rp", "assertion is for another relying party");
  const flags = authenticatorData[32] as number;
  if ((flags & flagUserPresent) === 0 || (flags & flagUserVerified) === 0)
    fail("webauthn-uv", "user presence and verification are required");
  const signCount = authenticatorData.readUInt32BE(33);
  if ((signCount !== 0 || passkey.signCount !== 0) && signCount <= passkey.signCount)
    fail("webauthn-counter", "signature counter did not increase");
  const signed = Buffer.concat([authenticatorData, createHash("sha256").update(clientDataBytes).digest()]);
  let valid: boolean;
  try {
    valid =
      passkey.alg === "ES256"
        ? verifySignatureBytes("sha256", signed, { key: passkey.publicKey, dsaEncoding: "der" }, signature)
        : verifySignatureBytes(null, signed, passkey.publicKey, signature);
  } catch {
    valid = false;
  }
  if (!valid) fail("webauthn-signature", "signature does not verify");
  expected.policy.passkeys.updateSignCount(expected.tenant, passkey.credId, signCount);
}
