import { createHmac, createPublicKey } from "node:crypto";
import { compactVerify } from "jose";
import type { SigningKey } from "./keys.js";

/** What the installed jose did with each algorithm-confusion token. */
export interface JoseSelfTestResult {
  /** HS256 keyed with the raw public key, verified against the Ed25519 `CryptoKey` with no allow-list: the error message, or `undefined` if accepted. */
  readonly cryptoKeyRefusal: string | undefined;
  /** HS256 keyed with the SPKI PEM of the public key, verified against a public `KeyObject` with no allow-list. */
  readonly keyObjectRefusal: string | undefined;
  /** True when both were refused. */
  readonly refusesAlgorithmConfusion: boolean;
}

/**
 * Checks that the installed jose refuses algorithm confusion at the library level, even when a
 * caller forgets the `algorithms` allow-list (IDENTITY.md attacks 34 and 35): an HS256 token whose
 * HMAC key is the issuer's public key (raw, or as a PEM) must not verify against that public key.
 * Tessera's own verifier refuses such tokens at the header gate; this guards the second line when
 * jose is upgraded. Run it at node start and refuse to start when it fails.
 *
 * @param key - any Ed25519 key (its public half is used)
 * @returns jose's refusals
 * @example
 * ```ts
 * const result = await joseSelfTest(await SigningKey.generate())
 * if (!result.refusesAlgorithmConfusion) throw new Error("jose accepts HS256 with a public key")
 * ```
 */
export async function joseSelfTest(key: SigningKey): Promise<JoseSelfTestResult> {
  const header = Buffer.from(JSON.stringify({ alg: "HS256", typ: "tessera-dlg+jwt", kid: key.kid })).toString("base64url");
  const payload = Buffer.from(JSON.stringify({ probe: true })).toString("base64url");
  const signingInput = `${header}.${payload}`;
  const raw = Buffer.from(key.publicJwk.x, "base64url");
  const spki = Buffer.from(await crypto.subtle.exportKey("spki", key.publicKey));
  const pem = `-----BEGIN PUBLIC KEY-----\n${spki.toString("base64")}\n-----END PUBLIC KEY-----\n`;
  const withRaw = `${signingInput}.${createHmac("sha256", raw).update(signingInput).digest("base64url")}`;
  const withPem = `${signingInput}.${createHmac("sha256", pem).update(signingInput).digest("base64url")}`;
  const cryptoKeyRefusal = await refusal(() => compactVerify(withRaw, key.publicKey));
  const keyObjectRefusal = await refusal(() => compactVerify(withPem, createPublicKey(pem)));
  return {
    cryptoKeyRefusal,
    keyObjectRefusal,
    refusesAlgorithmConfusion: cryptoKeyRefusal !== undefined && keyObjectRefusal !== undefined,
  };
}

async function refusal(attempt: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await attempt();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
