import net from "node:net";

/**
 * A TCP proxy in front of PostgreSQL that makes commits ambiguous: once armed, it forwards a
 * client's `COMMIT` to the server, lets the server commit, and then cuts the connection before the
 * server's answer reaches the client. The client sees a broken connection and cannot know whether
 * its transaction landed (it did).
 */
export interface CommitDropProxy {
  /** The proxy's own port; clients connect here. */
  readonly port: number;
  /** Makes the next `count` COMMITs ambiguous (replacing any count still armed). */
  arm(count: number): void;
  /** Makes every `n`-th COMMIT from now on ambiguous (0 stops it). */
  cutEvery(n: number): void;
  /** COMMITs whose answer was dropped so far. */
  readonly dropped: number;
  /** COMMITs seen so far. */
  readonly commits: number;
  close(): Promise<void>;
}

/** Simple-query ('Q') message carrying exactly `COMMIT`. */
const commitQuery = Buffer.concat([Buffer.from("Q"), int32(4 + 7), Buffer.from("COMMIT\0")]);

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

/**
 * Starts the proxy on a free loopback port, forwarding to `127.0.0.1:targetPort`. The client must
 * not use TLS (the proxy reads the protocol). Messages are split on their length headers: the first
 * client message of a connection (startup, or an SSL request) has no type byte.
 *
 * @param targetPort - PostgreSQL's port
 * @returns the running proxy
 */
export async function createCommitDropProxy(targetPort: number): Promise<CommitDropProxy> {
  const sockets = new Set<net.Socket>();
  let armed = 0;
  let dropped = 0;
  let commits = 0;
  let every = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    let pending = Buffer.alloc(0);
    let startup = true;
    /** Set when this connection's COMMIT went through armed: the server's next bytes are never delivered. */
    let cutAfterCommit = false;
    const end = (): void => {
      sockets.delete(client);
      sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      // Forward whole messages only, looking at each.
      for (;;) {
        if (startup) {
          if (pending.length < 4) return;
          const length = pending.readInt32BE(0);
          if (pending.length < length) return;
          const message = pending.subarray(0, length);
          pending = pending.subarray(length);
          const code = message.length >= 8 ? message.readInt32BE(4) : 0;
          // An SSL request (80877103) is answered 'N' and followed by the real startup message.
          if (code !== 80877103) startup = false;
          upstream.write(message);
          continue;
        }
        if (pending.length < 5) return;
        const length = pending.readInt32BE(1) + 1;
        if (pending.length < length) return;
        const message = pending.subarray(0, length);
        pending = pending.subarray(length);
        if (message.equals(commitQuery)) {
          commits += 1;
          if (every > 0 && commits % every === 0) armed = Math.max(armed, 1);
        }
        if (armed > 0 && message.equals(commitQuery)) {
          armed -= 1;
          dropped += 1;
          cutAfterCommit = true;
        }
        upstream.write(message);
      }
    });
    upstream.on("data", (chunk) => {
      if (cutAfterCommit) {
        // The server answered the COMMIT: it committed. The client never hears of it.
        end();
        return;
      }
      client.write(chunk);
    });
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    arm(count) {
      armed = count;
    },
    cutEvery(n) {
      every = n;
    },
    get dropped() {
      return dropped;
    },
    get commits() {
      return commits;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
