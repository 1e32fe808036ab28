export { createInProcessTransport, inProcessPayloadBytesMaxDefault, requestTimeoutMsMaxDefault } from "./in-process-transport.js";
export type { InProcessTransport, InProcessTransportOptions } from "./in-process-transport.js";
export { createInProcessBus } from "./in-process-bus.js";
export type { InProcessBus, InProcessBusOptions } from "./in-process-bus.js";
