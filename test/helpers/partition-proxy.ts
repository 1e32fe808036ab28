import net from "node:net";

/** A TCP proxy in front of a server that can simulate a network partition. */
export interface PartitionProxy {
  /** The proxy's own port; clients connect here. */
  readonly port: number;
  /** Drops every byte both ways and keeps the sockets open, as a silent partition does (no FIN, no RST). */
  partition(): void;
  /** Ends the partition: connections from during it are reset, new ones are forwarded. */
  heal(): void;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
}

/**
 * Starts a proxy on a free loopback port that forwards to `127.0.0.1:targetPort`.
 *
 * @param targetPort - the server's port
 * @returns the running proxy
 */
export async function createPartitionProxy(targetPort: number): Promise<PartitionProxy> {
  const pairs = new Set<Pair>();
  let partitioned = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    const pair = { client, upstream };
    pairs.add(pair);
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (chunk) => void (partitioned || upstream.write(chunk)));
    upstream.on("data", (chunk) => void (partitioned || client.write(chunk)));
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (typeof address !== "object" || address === null) throw new Error("proxy has no port");
  return {
    port: address.port,
    partition: () => {
      partitioned = true;
    },
    heal: () => {
      // Bytes were dropped, so the streams of these connections are broken; a real peer would have reset them.
      for (const pair of [...pairs]) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      pairs.clear();
      partitioned = false;
    },
    close: async () => {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
