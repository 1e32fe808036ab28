export { createNatsTransport } from "./nats-transport.js";
export type { NatsTransport } from "./nats-transport.js";
export type { NatsTransportOptions } from "./nats-options.js";
export type { NatsTransportStatus } from "./nats-status.js";
