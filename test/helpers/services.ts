import net from "node:net";

/** Where integration tests find PostgreSQL. */
export const databaseUrl = process.env.DATABASE_URL ?? "postgresql://root@127.0.0.1:5432/test";
/** Where integration tests find NATS. */
export const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

/** Resolves when a TCP connect to `url`'s host and port succeeds within `timeoutMs`; rejects otherwise. */
export function probeTcp(url: string, timeoutMs: number): Promise<void> {
  const parsed = new URL(url);
  const port = Number(parsed.port || (parsed.protocol.startsWith("postgres") ? 5432 : 4222));
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: parsed.hostname, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.end();
      resolve();
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
