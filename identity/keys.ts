import type { webcrypto } from "node:crypto";
import { CompactSign, calculateJwkThumbprint, importJWK } from "jose";
import { assert } from "../core/assert.js";
import { ValidationError } from "../core/errors.js";
import { decodeCanonicalBase64url } from "./encoding.js";
import type { TokenType } from "./token-codec.js";

/** An Ed25519 public key as a JWK, with exactly the members RFC 7638 hashes. */
export interface PublicJwk {
  /** Key type: octet key pair. */
  readonly kty: "OKP";
  /** Curve. */
  readonly crv: "Ed25519";
  /** The 32-byte public key, base64url. */
  readonly x: string;
}

/** WebCrypto key type (the global `CryptoKey`, which this project's `lib` setting does not declare). */
export type CryptoKey = webcrypto.CryptoKey;

/** WebCrypto key pair type. */
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** The one JWS algorithm Tessera v1 signs and accepts (IDENTITY.md §3). */
export const signatureAlgorithm = "EdDSA";

/**
 * Checks that `value` is exactly an Ed25519 public JWK: no private `d`, no `alg`/`use`/`key_ops`
 * or other members, 32 bytes of canonical base64url.
 *
 * @param value - a candidate JWK
 * @returns the JWK with only `kty`, `crv` and `x`
 * @throws ValidationError `ERR_VALIDATION`
 * @example
 * ```ts
 * const jwk = checkPublicJwk(JSON.parse(text))
 * ```
 */
export function checkPublicJwk(value: unknown): PublicJwk {
  const bad = (why: string): never => {
    throw new ValidationError("ERR_VALIDATION", `not an Ed25519 public JWK: ${why}`);
  };
  if (value === null || typeof value !== "object" || Array.isArray(value)) return bad("not an object");
  const keys = Object.keys(value).sort().join(",");
  if (keys !== "crv,kty,x") bad(`members must be exactly crv, kty, x (got ${keys.slice(0, 64)})`);
  const jwk = value as Record<string, unknown>;
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") bad("kty OKP, crv Ed25519");
  const raw = decodeCanonicalBase64url(jwk.x as string);
  if (raw === undefined || raw.length !== 32) bad("x is not 32 bytes of canonical base64url");
  return { kty: "OKP", crv: "Ed25519", x: jwk.x as string };
}

/**
 * The RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key: the `kid` of every
 * token it signs and the `cnf.jkt` of its identity token.
 *
 * @param jwk - the public key
 * @returns 43 characters of base64url
 * @example
 * ```ts
 * const kid = await jwkThumbprint(key.publicJwk)
 * ```
 */
export async function jwkThumbprint(jwk: PublicJwk): Promise<string> {
  return calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, "sha256");
}

/**
 * Imports an Ed25519 public JWK as a verification `CryptoKey`.
 *
 * @param jwk - a public JWK (checked with {@link checkPublicJwk})
 * @returns a key usable with jose's verify functions
 * @throws ValidationError `ERR_VALIDATION`
 * @example
 * ```ts
 * const key = await importPublicJwk(record.publicJwk)
 * ```
 */
export async function importPublicJwk(jwk: unknown): Promise<CryptoKey> {
  const checked = checkPublicJwk(jwk);
  const key = await importJWK({ ...checked }, signatureAlgorithm);
  assert(!(key instanceof Uint8Array), "an OKP JWK imports as a CryptoKey");
  return key;
}

/**
 * An Ed25519 key pair whose private half never leaves this object: generated non-extractable, so
 * not even runtime code can export it. This is the hazmat; the runtime keeps it inside
 * `ActorSigner` or `TenantAuthority` and never hands it to the tool-calling layer.
 *
 * @example
 * ```ts
 * const key = await SigningKey.generate()
 * key.kid // RFC 7638 thumbprint
 * ```
 */
export class SigningKey {
  /** RFC 7638 thumbprint of the public key. */
  readonly kid: string;
  /** The public key as a JWK. */
  readonly publicJwk: PublicJwk;
  /** The public key, for verification. */
  readonly publicKey: CryptoKey;
  readonly #privateKey: CryptoKey;

  private constructor(kid: string, publicJwk: PublicJwk, publicKey: CryptoKey, privateKey: CryptoKey) {
    this.kid = kid;
    this.publicJwk = publicJwk;
    this.publicKey = publicKey;
    this.#privateKey = privateKey;
  }

  /**
   * Generates a fresh key pair with a non-extractable private key (IDENTITY.md §10 option A).
   *
   * @returns the new key
   * @example
   * ```ts
   * const key = await SigningKey.generate()
   * ```
   */
  static async generate(): Promise<SigningKey> {
    const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"])) as CryptoKeyPair;
    assert(!pair.privateKey.extractable, "actor private keys are non-extractable");
    return SigningKey.fromKeyPair(pair);
  }

  /**
   * Wraps an existing Ed25519 `CryptoKeyPair`, e.g. one a browser generated for a human principal
   * key or one backed by a hardware token. The private key should be non-extractable.
   *
   * @param pair - an Ed25519 key pair with an extractable public key
   * @returns the key
   * @throws ValidationError `ERR_VALIDATION` when it is not an Ed25519 pair
   * @example
   * ```ts
   * const key = await SigningKey.fromKeyPair(await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]))
   * ```
   */
  static async fromKeyPair(pair: CryptoKeyPair): Promise<SigningKey> {
    if (pair.privateKey.algorithm.name !== "Ed25519" || pair.publicKey.algorithm.name !== "Ed25519") {
      throw new ValidationError("ERR_VALIDATION", "signing keys are Ed25519");
    }
    const exported = await crypto.subtle.exportKey("jwk", pair.publicKey);
    const publicJwk = checkPublicJwk({ kty: exported.kty, crv: exported.crv, x: exported.x });
    return new SigningKey(await jwkThumbprint(publicJwk), publicJwk, pair.publicKey, pair.privateKey);
  }

  /**
   * Low-level: signs `claims` as a compact JWS with the exact protected header
   * `{"alg":"EdDSA","typ":typ,"kid":kid}`. It does not validate the claims; use the issuing
   * functions (`issueRootLink`, `attenuate`, `signInvocation`, …), which do.
   *
   * @param typ - the token type
   * @param claims - the payload, serialized with `JSON.stringify` (the form verifiers require)
   * @returns the compact JWS
   * @example
   * ```ts
   * const jws = await key.signCompact("tessera-dlg+jwt", claims)
   * ```
   */
  async signCompact(typ: TokenType, claims: object): Promise<string> {
    const payload = new TextEncoder().encode(JSON.stringify(claims));
    return new CompactSign(payload).setProtectedHeader({ alg: signatureAlgorithm, typ, kid: this.kid }).sign(this.#privateKey);
  }
}
