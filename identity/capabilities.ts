import { ValidationError } from "../core/errors.js";
import type { CaveatStatement } from "./caveats.js";
import { deny } from "./errors.js";

/**
 * One capability of a delegation link (IDENTITY.md §4): a resource type, a command path, and the
 * caveats that must all hold on the invocation args.
 */
export interface Capability {
  /** Tool or resource type, e.g. `tool:refund`; `*` only at a tenant-authority root. */
  readonly res: string;
  /** Command path, e.g. `/invoke`; `/` (everything) only at a root. */
  readonly act: string;
  /** Caveat statements, all of which must hold; empty places no constraint from this link. */
  readonly cav: readonly CaveatStatement[];
}

/** The resource and action a call wants (the invocation's `res` and `act`). */
export interface Want {
  /** Resource type. */
  readonly res: string;
  /** Command path. */
  readonly act: string;
}

const resourcePattern = /^[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9._~@-]{1,128}$/;
const actionPattern = /^(\/[A-Za-z0-9_-]{1,64}){1,8}$/;

/**
 * Whether `res` is a valid resource: `<type>:<name>`, or `*` when `wildcardAllowed`.
 *
 * @param res - a candidate resource
 * @param wildcardAllowed - whether `*` is acceptable (tenant-authority roots only)
 * @returns true when valid
 * @example
 * ```ts
 * isResource("tool:refund", false) // true
 * ```
 */
export function isResource(res: unknown, wildcardAllowed: boolean): res is string {
  return typeof res === "string" && ((wildcardAllowed && res === "*") || resourcePattern.test(res));
}

/**
 * Whether `act` is a valid command path: `/` when `topAllowed`, else `/a/b` (≤ 8 segments).
 *
 * @param act - a candidate command path
 * @param topAllowed - whether `/` is acceptable (roots only)
 * @returns true when valid
 * @example
 * ```ts
 * isAction("/crm/read", false) // true
 * ```
 */
export function isAction(act: unknown, topAllowed: boolean): act is string {
  return typeof act === "string" && ((topAllowed && act === "/") || actionPattern.test(act));
}

/**
 * IDENTITY.md §6 step 6: `p` covers `c` when the resource is equal (or `p.res` is the root-only
 * `*`) and `c.act` is `p.act`, below it, or `p.act` is `/`. Caveats are not compared: they
 * accumulate along the chain and are all evaluated on the args.
 *
 * @param parent - the granting capability
 * @param child - the wanted or delegated capability
 * @returns whether `parent` covers `child`
 * @example
 * ```ts
 * covers({ res: "tool:crm", act: "/crm" }, { res: "tool:crm", act: "/crm/read" }) // true
 * covers({ res: "tool:crm", act: "/crm" }, { res: "tool:crm", act: "/crmx" }) // false
 * ```
 */
export function covers(parent: Want, child: Want): boolean {
  if (parent.res !== child.res && parent.res !== "*") return false;
  return parent.act === "/" || child.act === parent.act || child.act.startsWith(`${parent.act}/`);
}

/**
 * The structural narrowing check between a link and its parent: every capability of the child
 * must be covered by some capability of the parent. One uncovered capability refuses the whole
 * link; it is evidence of a bug or an attack and is never silently dropped.
 *
 * @param parentCaps - the parent link's capabilities
 * @param childCaps - the child link's capabilities
 * @param link - the child's index in its chain, for the error
 * @throws AuthorizationError `ERR_AUTHZ_WIDEN`
 * @example
 * ```ts
 * assertNarrower([{ res: "tool:refund", act: "/invoke", cav: [] }], childCaps, 1)
 * ```
 */
export function assertNarrower(parentCaps: readonly Want[], childCaps: readonly Want[], link: number): void {
  for (const child of childCaps) {
    if (!parentCaps.some((parent) => covers(parent, child))) {
      deny("ERR_AUTHZ_WIDEN", `link ${link}: capability ${child.res} ${child.act} is not covered by its parent`, 6, { link });
    }
  }
}

/**
 * Validates capabilities an issuer is about to sign, with the same rules the verifier applies, so
 * that a bad grant fails at its source.
 *
 * @param caps - candidate capabilities
 * @param options - whether they are a root's, and a tenant authority's root
 * @returns the same capabilities, typed
 * @throws ValidationError `ERR_CAPABILITY_INVALID`
 * @example
 * ```ts
 * const caps = checkCapabilities([{ res: "tool:refund", act: "/invoke", cav: [] }], { root: false, authorityRoot: false })
 * ```
 */
export function checkCapabilities(caps: readonly Capability[], options: { root: boolean; authorityRoot: boolean }): readonly Capability[] {
  if (caps.length === 0) throw new ValidationError("ERR_CAPABILITY_INVALID", "a link needs at least one capability");
  for (const cap of caps) {
    if (!isResource(cap.res, options.authorityRoot)) {
      throw new ValidationError("ERR_CAPABILITY_INVALID", `bad resource ${JSON.stringify(String(cap.res).slice(0, 64))}`);
    }
    if (!isAction(cap.act, options.root)) {
      throw new ValidationError("ERR_CAPABILITY_INVALID", `bad action ${JSON.stringify(String(cap.act).slice(0, 64))}`);
    }
  }
  return caps;
}
