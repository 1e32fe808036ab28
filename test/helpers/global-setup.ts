import { databaseUrl, natsUrl, probeTcp } from "./services.js";

/**
 * Integration tests are required: when a server is down the run fails within two seconds and says
 * how to start it. `npm run test:unit` (TESSERA_UNIT_ONLY=1) needs no servers.
 */
export default async function globalSetup(): Promise<void> {
  if (process.env.TESSERA_UNIT_ONLY === "1") return;
  const problems: string[] = [];
  try {
    await probeTcp(databaseUrl, 2000);
  } catch (error) {
    problems.push(
      `PostgreSQL at ${databaseUrl} is not answering (${(error as Error).message}). Start it with ` +
        "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or set DATABASE_URL.",
    );
  }
  try {
    await probeTcp(natsUrl, 2000);
  } catch (error) {
    problems.push(
      `NATS at ${natsUrl} is not answering (${(error as Error).message}). Start it with ` +
        "`nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server &` or set NATS_URL.",
    );
  }
  if (problems.length > 0) {
    throw new Error(`${problems.join("\n")}\nUnit tests alone need no servers: npm run test:unit`);
  }
}
