import { z } from "zod";
import { ValidationError } from "../../../core/errors.js";

/** @internal Longest subject accepted, prefix included, in characters. */
export const subjectLengthMax = 512;
/** @internal Longest queue group name accepted, in characters. */
export const queueNameLengthMax = 128;

// NATS forbids whitespace anywhere in a subject; control characters are refused as well.
const forbiddenCharacters = /[\s\p{Cc}]/u;

/** What a subject is used for: publishing needs a literal subject, subscribing may use wildcards. */
export type SubjectUse = "publish" | "subscribe" | "prefix";

/**
 * @internal Checks a subject the way nats-server does: dot-separated non-empty tokens, no
 * whitespace, `*` and `>` only as whole tokens, `>` only last, and no wildcards where a literal
 * subject is needed.
 *
 * @throws ValidationError `ERR_VALIDATION` naming the subject
 */
export function checkSubject(subject: string, use: SubjectUse): void {
  const fail = (why: string): never => {
    throw new ValidationError("ERR_VALIDATION", `invalid ${use} subject "${subject}": ${why}`, { details: { subject, use } });
  };
  if (typeof subject !== "string" || subject.length === 0) fail("empty");
  if (subject.length > subjectLengthMax) fail(`longer than ${subjectLengthMax} characters`);
  if (forbiddenCharacters.test(subject)) fail("whitespace or control characters");
  const tokens = subject.split(".");
  tokens.forEach((token, index) => {
    if (token.length === 0) fail("empty token");
    const wildcard = token === "*" || token === ">";
    if (!wildcard && (token.includes("*") || token.includes(">"))) fail("wildcards must be whole tokens");
    if (wildcard && use !== "subscribe") fail("wildcards are only allowed when subscribing");
    if (token === ">" && index !== tokens.length - 1) fail("'>' must be the last token");
  });
}

/**
 * @internal Checks a queue group name.
 *
 * @throws ValidationError `ERR_VALIDATION` naming the queue
 */
export function checkQueueName(queue: string): void {
  const valid = typeof queue === "string" && queue.length > 0 && queue.length <= queueNameLengthMax && !forbiddenCharacters.test(queue);
  if (!valid) {
    throw new ValidationError(
      "ERR_VALIDATION",
      `invalid queue group "${String(queue)}": 1 to ${queueNameLengthMax} characters, no whitespace`,
      {
        details: { queue },
      },
    );
  }
}

/**
 * @internal Whether a literal subject matches a subscription pattern (`*` one token, `>` one or more).
 */
export function subjectMatches(pattern: readonly string[], subject: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const token = pattern[i];
    if (token === ">") return subject.length > i;
    if (i >= subject.length) return false;
    if (token !== "*" && token !== subject[i]) return false;
  }
  return pattern.length === subject.length;
}

/** @internal Adds and removes a transport's subject prefix. */
export interface SubjectPrefixer {
  readonly prefix: string;
  /** The subject on the wire. */
  add(subject: string): string;
  /** The subject as the application sees it; the wire subject unchanged if it lacks the prefix. */
  strip(wireSubject: string): string;
}

/** @internal Makes a {@link SubjectPrefixer}; the prefix itself must be a literal subject. */
export function createPrefixer(prefix: string): SubjectPrefixer {
  checkSubject(prefix, "prefix");
  const head = `${prefix}.`;
  return {
    prefix,
    add: (subject) => `${head}${subject}`,
    strip: (wireSubject) => (wireSubject.startsWith(head) ? wireSubject.slice(head.length) : wireSubject),
  };
}

/** @internal zod schema of a subject prefix: literal dot-separated tokens, no wildcards or whitespace. */
export const subjectPrefixSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[^\s.*>]+(\.[^\s.*>]+)*$/, "dot-separated tokens without wildcards or whitespace");
