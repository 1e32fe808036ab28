export { TransportError } from "./transport-error.js";
export type { TransportErrorCode } from "./transport-error.js";
export { logTransportError } from "./error-listener.js";
export type { TransportErrorContext, TransportErrorListener } from "./error-listener.js";
export { injectTraceHeaders, extractTraceContext } from "./trace-headers.js";
export {
  createInProcessTransport,
  createInProcessBus,
  inProcessPayloadBytesMaxDefault,
  requestTimeoutMsMaxDefault,
} from "./in-process/index.js";
export type { InProcessTransport, InProcessTransportOptions, InProcessBus, InProcessBusOptions } from "./in-process/index.js";
