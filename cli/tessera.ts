#!/usr/bin/env -S npx tsx
/**
 * The `tessera` command line. `tessera migrate` prepares a database (PostgreSQL/CockroachDB with
 * `--database-url`, or an embedded PGlite directory with `--data-dir`).
 */
import { Command } from "commander";
import { ConfigError } from "../core/errors.js";
import { createPgStore } from "../persistence/pg/index.js";
import { createPgliteStore } from "../persistence/pglite/index.js";

const program = new Command("tessera").description("Tessera: durable actors for AI agents").showHelpAfterError();

program
  .command("migrate")
  .description("create or upgrade Tessera's tables (idempotent; migrations are recorded in tsr_migrations)")
  .option("--database-url <url>", "PostgreSQL or CockroachDB connection string", process.env.DATABASE_URL)
  .option("--data-dir <dir>", "an embedded PGlite data directory (used when no database URL is given)")
  .option("--schema <name>", "schema that holds the tables", "tessera")
  .action(async (options: { databaseUrl?: string; dataDir?: string; schema: string }) => {
    const databaseUrl = options.databaseUrl === "" ? undefined : options.databaseUrl;
    if (databaseUrl === undefined && options.dataDir === undefined) {
      throw new ConfigError("give --database-url (or DATABASE_URL) or --data-dir");
    }
    const store =
      databaseUrl !== undefined
        ? createPgStore({ connectionString: databaseUrl, schema: options.schema })
        : await createPgliteStore({ dataDir: options.dataDir!, schema: options.schema });
    try {
      await store.migrate();
      process.stdout.write(`${JSON.stringify({ migrated: true, store: store.kind, schema: options.schema })}\n`);
    } finally {
      await store.close();
    }
  });

program.parseAsync(process.argv).catch((error: unknown) => {
  const e = error as { code?: string; message?: string };
  process.stderr.write(`${JSON.stringify({ error: { code: e.code ?? "ERR_CLI", message: e.message ?? String(error) } })}\n`);
  process.exit(1);
});
