import type { NatsConnection } from "@nats-io/transport-node";
import type { TransportErrorListener } from "../error-listener.js";
import { report } from "../internal/handler.js";
import { translateNatsError } from "./nats-errors.js";

/** The connection as a {@link NatsTransport} last saw it. */
export interface NatsTransportStatus {
  /** `reconnecting` from a lost connection until the next one is up; `closed` for good. */
  state: "connected" | "reconnecting" | "closed";
  /** host:port of the server in use (the last one while reconnecting). */
  server: string;
  /** Connections lost since the transport was created. */
  disconnects: number;
  /** Connections re-established since the transport was created. */
  reconnects: number;
  /** The max_payload the server announced, in bytes. */
  serverPayloadBytesMax: number;
  /** The last error the connection reported, if any. */
  lastError: Error | undefined;
}

/** @internal The live status; `state` and `serverPayloadBytesMax` are read on every message without copying. */
export interface StatusTracker {
  current(): NatsTransportStatus;
  state(): NatsTransportStatus["state"];
  serverPayloadBytesMax(): number;
}

/** @internal Keeps a {@link NatsTransportStatus} current from the client's status events. */
export function trackStatus(nc: NatsConnection, onError: TransportErrorListener): StatusTracker {
  const status: NatsTransportStatus = {
    state: "connected",
    server: nc.getServer(),
    disconnects: 0,
    reconnects: 0,
    serverPayloadBytesMax: nc.info?.max_payload ?? 0,
    lastError: undefined,
  };
  const follow = async (): Promise<void> => {
    for await (const event of nc.status()) {
      switch (event.type) {
        case "disconnect":
          status.state = "reconnecting";
          status.disconnects++;
          break;
        case "reconnect":
          status.state = "connected";
          status.reconnects++;
          status.server = nc.getServer();
          // A different server of the cluster may allow a different size.
          status.serverPayloadBytesMax = nc.info?.max_payload ?? status.serverPayloadBytesMax;
          break;
        case "error":
          status.lastError = event.error;
          report(onError, translateNatsError(event.error, { operation: "connection" }), { source: "connection" });
          break;
        case "close":
          status.state = "closed";
          break;
        default:
          break;
      }
    }
  };
  follow().catch((error: unknown) => report(onError, error, { source: "connection" }));
  void nc.closed().then(() => {
    status.state = "closed";
  });
  return { current: () => ({ ...status }), state: () => status.state, serverPayloadBytesMax: () => status.serverPayloadBytesMax };
}
