/** @internal Helpers shared by the transport adapters; not part of the public API. */
export { invokeHandler, report } from "./handler.js";
export {
  checkData,
  checkPayloadBytes,
  checkRequestTimeout,
  emptyHeaders,
  encodedMessageBytes,
  headerCountMax,
  normalizeHeaders,
} from "./message-checks.js";
export { parseOptions } from "./parse-options.js";
export {
  checkQueueName,
  checkSubject,
  createPrefixer,
  queueNameLengthMax,
  subjectLengthMax,
  subjectMatches,
  subjectPrefixSchema,
} from "./subjects.js";
export type { SubjectPrefixer, SubjectUse } from "./subjects.js";
