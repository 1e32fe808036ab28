import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { probeTcp } from "./services.js";

/** Where the machine's nats-server binary lives (STACK.md: no npm package ships one). */
export const natsServerBinary = process.env.NATS_SERVER_BIN ?? "/usr/sbin/nats-server";

/** A nats-server started by a test on a port of its own. */
export interface PrivateNatsServer {
  readonly url: string;
  readonly port: number;
  /** Starts (or restarts) the process on the same port and store directory; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Kills the process with SIGKILL: no goodbye to clients, as in a crash. */
  kill(): Promise<void>;
  /** Kills the process if running and removes the store directory. */
  dispose(): Promise<void>;
}

/** Finds a free TCP port on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/**
 * Makes a private nats-server (`-a 127.0.0.1 -p <free port> -js -sd <tmpdir>`); call `start()`.
 *
 * @returns the server's handle
 */
export async function createPrivateNatsServer(): Promise<PrivateNatsServer> {
  const port = await freePort();
  const storeDirectory = await mkdtemp(path.join(tmpdir(), "tessera-nats-"));
  let child: ChildProcess | undefined;
  let output = "";

  const kill = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once("exit", () => resolve()));
    running.kill("SIGKILL");
    await exited;
  };

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    async start() {
      if (child !== undefined) throw new Error("private nats-server already running");
      output = "";
      const started = spawn(natsServerBinary, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDirectory], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      started.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
      started.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child = started;
      const deadline = Date.now() + 10_000;
      for (;;) {
        if (started.exitCode !== null) throw new Error(`nats-server exited with ${started.exitCode}: ${output}`);
        try {
          await probeTcp(`nats://127.0.0.1:${port}`, 500);
          return;
        } catch (error) {
          if (Date.now() > deadline)
            throw new Error(`nats-server on port ${port} did not start: ${(error as Error).message}\n${output}`, { cause: error });
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    },
    kill,
    async dispose() {
      await kill();
      await rm(storeDirectory, { recursive: true, force: true });
    },
  };
}
