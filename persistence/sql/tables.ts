import { ConfigError } from "../../core/errors.js";

/** What a schema name may be: a lower-case SQL identifier that needs no escaping. */
export const schemaNamePattern = /^[a-z_][a-z0-9_]{0,62}$/;

/** The qualified, quoted names of the store's tables in one schema. @internal */
export interface Tables {
  readonly schema: string;
  readonly migrations: string;
  readonly actors: string;
  readonly runs: string;
  readonly journal: string;
  readonly effects: string;
  readonly mailboxHeads: string;
  readonly mailbox: string;
  readonly timers: string;
  readonly blobs: string;
  readonly chains: string;
  readonly keyDirectory: string;
  readonly killSwitches: string;
  readonly nodes: string;
}

/**
 * Checks a schema name and qualifies every table with it.
 *
 * @internal
 * @param schema - the schema name, e.g. `tessera`
 * @returns the quoted table names
 * @throws ConfigError when the name is not a plain lower-case identifier
 */
export function tablesFor(schema: string): Tables {
  if (!schemaNamePattern.test(schema)) {
    throw new ConfigError(`schema must match ${schemaNamePattern.source}, got ${JSON.stringify(schema)}`, {
      details: { option: "schema", issues: [{ path: ["schema"], code: "invalid_format", message: "not a plain identifier" }] },
    });
  }
  const s = `"${schema}"`;
  return {
    schema: s,
    migrations: `${s}.tsr_migrations`,
    actors: `${s}.actors`,
    runs: `${s}.runs`,
    journal: `${s}.journal`,
    effects: `${s}.effects`,
    mailboxHeads: `${s}.mailbox_heads`,
    mailbox: `${s}.mailbox`,
    timers: `${s}.timers`,
    blobs: `${s}.blobs`,
    chains: `${s}.chains`,
    keyDirectory: `${s}.key_directory`,
    killSwitches: `${s}.kill_switches`,
    nodes: `${s}.nodes`,
  };
}
