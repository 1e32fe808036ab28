import { ValidationError } from "../core/errors.js";
import { canonicalize } from "./canonical-json.js";
import { globMatch, globWildcards } from "./glob.js";
import { identityLimits } from "./limits.js";

/**
 * One caveat statement of the policy language (IDENTITY.md §5), a JSON array such as
 * `["<=", ".amount", 50]` or `["and", [st, st]]`.
 */
export type CaveatStatement = readonly unknown[];

/** A predicate over invocation args, compiled from a capability's caveats. Never throws. */
export type CaveatPredicate = (args: unknown) => boolean;

/** Limits of {@link compileCaveats}; the defaults are IDENTITY.md §5's. */
export interface CaveatLimits {
  /** Statements per capability. @defaultValue 64 */
  readonly nodesMax: number;
  /** Nesting of statements per capability. @defaultValue 6 */
  readonly depthMax: number;
  /** Characters of a `like` glob. @defaultValue 128 */
  readonly globCharsMax: number;
  /** Wildcards of a `like` glob. @defaultValue 4 */
  readonly globWildcardsMax: number;
}

const defaultCaveatLimits: CaveatLimits = {
  nodesMax: identityLimits.caveatNodesMax,
  depthMax: identityLimits.caveatDepthMax,
  globCharsMax: identityLimits.globCharsMax,
  globWildcardsMax: identityLimits.globWildcardsMax,
};

/** What was wrong with a caveat: a crossed limit or a malformed statement. */
export type CaveatProblem = "limits" | "schema";

const missing: unique symbol = Symbol("missing");
type Selector = (root: unknown) => unknown;

const segmentPattern = /^[A-Za-z0-9_-]{1,64}$/;
const selectorSegmentsMax = 16;

/**
 * Compiles a capability's caveat list into one predicate: the conjunction of its statements.
 * Validation is complete and bounded before anything is evaluated: every operator is known, every
 * selector well-formed, node count, nesting and glob limits respected. An unknown operator is a
 * compile error, and the verifier denies on it.
 *
 * Semantics: a selector (`.` or `.a.b`, numeric segments index arrays) reads only own members; a
 * missing path makes every comparison on it false. Numeric comparisons on non-numbers are false.
 * Equality and `in` compare RFC 8785 canonical JSON. `["and", []]` is true and `["or", []]` is
 * false (their identities). `all`/`any` need an array and evaluate their statement relative to
 * each element.
 *
 * @param cav - the `cav` array of one capability
 * @param limits - node, depth and glob limits
 * @defaultValue limits IDENTITY.md §5: 64 nodes, depth 6, globs ≤ 128 chars with ≤ 4 wildcards
 * @returns the predicate
 * @throws ValidationError `ERR_CAVEAT_INVALID`, `details.problem` being `"limits"` or `"schema"`
 * @example
 * ```ts
 * const allowed = compileCaveats([["<=", ".amount", 50], ["in", ".currency", ["EUR", "USD"]]])
 * allowed({ amount: 30, currency: "EUR" }) // true
 * ```
 */
export function compileCaveats(cav: unknown, limits: CaveatLimits = defaultCaveatLimits): CaveatPredicate {
  if (!Array.isArray(cav)) return problem("schema", "cav must be an array of statements");
  const budget = { nodes: 0 };
  const compiled = cav.map((statement: unknown) => compileStatement(statement, 1, budget, limits));
  return (args) => compiled.every((predicate) => predicate(args));
}

/**
 * Evaluates a caveat list on args, compiling it first. Prefer {@link compileCaveats} when the same
 * caveats are evaluated repeatedly.
 *
 * @param cav - the `cav` array of one capability
 * @param args - the invocation args
 * @returns whether every statement holds
 * @throws ValidationError `ERR_CAVEAT_INVALID` when the caveats are malformed
 * @example
 * ```ts
 * evaluateCaveats([["==", ".customer", "c_123"]], { customer: "c_999" }) // false
 * ```
 */
export function evaluateCaveats(cav: unknown, args: unknown): boolean {
  return compileCaveats(cav)(args);
}

function compileStatement(statement: unknown, depth: number, budget: { nodes: number }, limits: CaveatLimits): CaveatPredicate {
  if (depth > limits.depthMax) problem("limits", `caveats nest deeper than ${limits.depthMax}`);
  budget.nodes += 1;
  if (budget.nodes > limits.nodesMax) problem("limits", `caveats have more than ${limits.nodesMax} statements`);
  if (!Array.isArray(statement) || typeof statement[0] !== "string")
    return problem("schema", "a statement is an array starting with its operator");
  const [operator] = statement as [string];
  switch (operator) {
    case "==":
    case "!=": {
      const [select, literal] = operands(statement, 2, operator);
      const expected = canonicalOrProblem(literal);
      const equal = operator === "==";
      return (args) => {
        const actual = canonicalOf(select(args));
        return actual !== undefined && (actual === expected) === equal;
      };
    }
    case "<":
    case "<=":
    case ">":
    case ">=": {
      const [select, bound] = operands(statement, 2, operator);
      if (typeof bound !== "number" || !Number.isFinite(bound)) problem("schema", `${operator} needs a finite number`);
      return (args) => {
        const actual = select(args);
        return typeof actual === "number" && compare(operator, actual, bound);
      };
    }
    case "like": {
      const [select, glob] = operands(statement, 2, operator);
      if (typeof glob !== "string") return problem("schema", "like needs a string glob");
      if (glob.length > limits.globCharsMax) problem("limits", `glob longer than ${limits.globCharsMax} characters`);
      if (globWildcards(glob) > limits.globWildcardsMax) problem("limits", `glob with more than ${limits.globWildcardsMax} wildcards`);
      return (args) => {
        const actual = select(args);
        return typeof actual === "string" && globMatch(glob, actual);
      };
    }
    case "in": {
      const [select, list] = operands(statement, 2, operator);
      if (!Array.isArray(list)) return problem("schema", "in needs an array of values");
      const members = new Set(list.map(canonicalOrProblem));
      return (args) => {
        const actual = canonicalOf(select(args));
        return actual !== undefined && members.has(actual);
      };
    }
    case "and":
    case "or": {
      if (statement.length !== 2 || !Array.isArray(statement[1])) return problem("schema", `${operator} needs one array of statements`);
      const children = (statement[1] as unknown[]).map((child) => compileStatement(child, depth + 1, budget, limits));
      return operator === "and" ? (args) => children.every((child) => child(args)) : (args) => children.some((child) => child(args));
    }
    case "not": {
      if (statement.length !== 2) return problem("schema", "not needs one statement");
      const child = compileStatement(statement[1], depth + 1, budget, limits);
      return (args) => !child(args);
    }
    case "all":
    case "any": {
      if (statement.length !== 3) return problem("schema", `${operator} needs a selector and a statement`);
      const select = compileSelector(statement[1]);
      const child = compileStatement(statement[2], depth + 1, budget, limits);
      return (args) => {
        const actual = select(args);
        if (!Array.isArray(actual)) return false;
        return operator === "all" ? actual.every((element) => child(element)) : actual.some((element) => child(element));
      };
    }
    default:
      return problem("schema", `unknown caveat operator ${JSON.stringify(operator.slice(0, 16))}`);
  }
}

function operands(statement: unknown[], count: number, operator: string): [Selector, unknown] {
  if (statement.length !== count + 1) problem("schema", `${operator} needs a selector and a value`);
  return [compileSelector(statement[1]), statement[2]];
}

/**
 * Compiles `.` or `.a.b.0` into a function reading own members only, so `.constructor` or
 * `.__proto__` can never reach a prototype.
 */
function compileSelector(selector: unknown): Selector {
  if (typeof selector !== "string" || !selector.startsWith(".")) return problem("schema", "a selector is . or .a.b");
  if (selector === ".") return (root) => root;
  const segments = selector.slice(1).split(".");
  if (segments.length > selectorSegmentsMax) problem("limits", `selector with more than ${selectorSegmentsMax} segments`);
  for (const segment of segments)
    if (!segmentPattern.test(segment)) problem("schema", `bad selector segment in ${JSON.stringify(selector.slice(0, 64))}`);
  return (root) => {
    let node: unknown = root;
    for (const segment of segments) {
      if (Array.isArray(node)) {
        if (!/^(0|[1-9][0-9]*)$/.test(segment)) return missing;
        const index = Number(segment);
        if (index >= node.length) return missing;
        node = node[index];
      } else if (node !== null && typeof node === "object" && Object.hasOwn(node, segment)) {
        node = (node as Record<string, unknown>)[segment];
      } else {
        return missing;
      }
    }
    return node;
  };
}

function compare(operator: string, actual: number, bound: number): boolean {
  if (operator === "<") return actual < bound;
  if (operator === "<=") return actual <= bound;
  if (operator === ">") return actual > bound;
  return actual >= bound;
}

function canonicalOf(value: unknown): string | undefined {
  if (value === missing) return undefined;
  try {
    return canonicalize(value);
  } catch {
    return undefined;
  }
}

function canonicalOrProblem(value: unknown): string {
  try {
    return canonicalize(value);
  } catch {
    return problem("schema", "caveat literal is not canonical JSON");
  }
}

function problem(kind: CaveatProblem, message: string): never {
  throw new ValidationError("ERR_CAVEAT_INVALID", `caveat: ${message}`, { details: { problem: kind } });
}
