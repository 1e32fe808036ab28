import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import { AgentError } from "../../core/errors.js";
import type { Transport, TransportMessage } from "../../core/ports/transport.js";
import type { TransportErrorListener } from "../../actors/transport/index.js";

/** Options a conformance test may ask of the adapter under test. */
export interface TransportFixtureOptions {
  payloadBytesMax?: number;
  requestTimeoutMsMax?: number;
  onError?: TransportErrorListener;
}

/** Transports of one test: every transport a fixture makes shares its subject prefix and reaches the others. */
export interface TransportFixture {
  /** The unique subject prefix of this test (`t_<random>`). */
  readonly prefix: string;
  make(options?: TransportFixtureOptions): Promise<Transport>;
  /** Closes every transport made; idempotent. */
  cleanup(): Promise<void>;
}

/** Makes a fresh fixture for one test. */
export type MakeTransportFixture = () => Promise<TransportFixture>;

/**
 * Builds a fixture from a function that makes one transport for a prefix; tracks and closes them.
 *
 * @param makeTransport - makes one transport of the adapter under test
 * @returns a fixture with a unique prefix
 */
export function trackTransports(makeTransport: (prefix: string, options: TransportFixtureOptions) => Promise<Transport>): TransportFixture {
  const prefix = `t_${randomBytes(6).toString("hex")}`;
  const made: Transport[] = [];
  return {
    prefix,
    async make(options = {}) {
      const transport = await makeTransport(prefix, options);
      made.push(transport);
      return transport;
    },
    async cleanup() {
      await Promise.all(made.splice(0).map((t) => t.close()));
    },
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** UTF-8 bytes of a string. */
export const bytes = (text: string): Uint8Array => encoder.encode(text);
/** A message's data as a string. */
export const text = (message: TransportMessage): string => decoder.decode(message.data);

/**
 * Polls until `condition` holds.
 *
 * @throws Error naming `what` after `timeoutMs`
 */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Expects a promise to reject with an {@link AgentError} of `code`; returns the error. */
export async function expectCode(promise: Promise<unknown>, code: string): Promise<AgentError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected a rejection with ${code}`).toBeInstanceOf(AgentError);
  expect((error as AgentError).code).toBe(code);
  return error as AgentError;
}

/** Expects a function to throw an {@link AgentError} of `code`. */
export function expectThrowsCode(action: () => unknown, code: string): AgentError {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `expected a throw with ${code}`).toBeInstanceOf(AgentError);
  expect((thrown as AgentError).code).toBe(code);
  return thrown as AgentError;
}

/** Collects the messages a handler receives. */
export function collector(): { messages: TransportMessage[]; handler: (message: TransportMessage) => void } {
  const messages: TransportMessage[] = [];
  return { messages, handler: (message) => void messages.push(message) };
}
