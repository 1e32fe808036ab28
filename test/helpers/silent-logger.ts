import type { Logger } from "../../actors/logger.js";

/** A logger that drops everything, for tests whose failures speak for themselves. */
export const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };
