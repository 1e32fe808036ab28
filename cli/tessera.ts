#!/usr/bin/env -S npx tsx
/**
 * The `tessera` command line (README in this folder):
 *
 * - `tessera migrate` prepares a database (PostgreSQL/CockroachDB with `--database-url`, or an
 *   embedded PGlite directory with `--data-dir`).
 * - `tessera node` runs a node in the foreground (node-command.ts).
 *
 * Every failure is one JSON line on stderr, `{"error":{"code","message"}}`, and a non-zero exit
 * code: 1 for a configuration error, 2 for a fatal error at run time (cli-output.ts).
 */
import { Command, CommanderError } from "commander";
import { ConfigError } from "../core/errors.js";
import { createPgStore } from "../persistence/pg/index.js";
import { createPgliteStore } from "../persistence/pglite/index.js";
import { exitWithError } from "./cli-output.js";
import { registerNodeCommand } from "./node-command.js";

const program = new Command("tessera")
  .description("Tessera: durable actors for AI agents")
  // Usage errors become the same JSON error line as every other failure.
  .exitOverride()
  .configureOutput({ outputError: () => {} });

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

registerNodeCommand(program);

// Subcommands inherit the exit override and the silenced error output.
for (const command of program.commands) command.exitOverride().configureOutput({ outputError: () => {} });

program.parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof CommanderError) {
    // --help and --version end through here as well, with exit code 0.
    if (error.exitCode === 0) process.exit(0);
    if (error.code === "commander.help") return exitWithError(new ConfigError("give a command: migrate or node (see tessera --help)"));
    return exitWithError(
      new ConfigError(`${error.message.replace(/^error: /, "")} (see tessera --help)`, { details: { usage: error.code } }),
    );
  }
  return exitWithError(error);
});
