import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { ConfigError } from "../core/errors.js";

/** Log levels of `--log-level`; `silent` writes nothing. */
export type NodeLogLevel = "debug" | "info" | "warn" | "error" | "silent";

/**
 * The configuration of `tessera node`, as flags (`--lease-ttl-ms`) or as the same keys in camelCase
 * in a JSON file given with `--config` (`"leaseTtlMs"`). Flags win over the file. Durations are in
 * milliseconds and say so in their names; a knob left out keeps the runtime's default.
 */
export interface NodeConfigInput {
  /** A PostgreSQL or CockroachDB URL. @defaultValue `DATABASE_URL` when neither this nor `dataDir` is given */
  databaseUrl?: string;
  /** An embedded PGlite data directory; a relative path in a config file is relative to the file. */
  dataDir?: string;
  /** The schema holding Tessera's tables. @defaultValue "tessera" */
  schema?: string;
  /** Connections in the pg pool (PostgreSQL/CockroachDB only). @defaultValue 10 (the store's default) */
  poolSize?: number;
  /** A NATS URL; without it the node uses no transport. */
  natsUrl?: string;
  /** The cluster name: the NATS subject prefix of every node of the cluster. @defaultValue "tessera" */
  cluster?: string;
  /** @defaultValue a random id */
  nodeId?: string;
  /** Where the HTTP API listens, `host:port`; port 0 takes an ephemeral port. @defaultValue "127.0.0.1:0" */
  http?: string;
  /** The lowest level of the JSON-lines log on stderr. @defaultValue "info" */
  logLevel?: NodeLogLevel;
  /** How long a node's lease lasts without renewal, in milliseconds. @defaultValue the runtime's */
  leaseTtlMs?: number;
  /** How often the node renews its lease, in milliseconds; at most half of `leaseTtlMs`. @defaultValue the runtime's */
  renewIntervalMs?: number;
  /** How often the node sweeps the store for orphaned actors and pending work, in milliseconds. @defaultValue the runtime's */
  sweepIntervalMs?: number;
  /** An actor idle this long is passivated (leaves memory), in milliseconds. @defaultValue the runtime's */
  idleMs?: number;
  /** Most actors resident in memory at once; the least recently used idle ones are passivated beyond it. @defaultValue the runtime's */
  residentMax?: number;
  /** How long a drain (on SIGTERM or SIGINT) waits for resident actors to become idle, in milliseconds. @defaultValue 10000 */
  drainGraceMs?: number;
  /** Test only: the node's clock reads `Date.now() + clockOffsetMs`, in milliseconds. @defaultValue 0 */
  clockOffsetMs?: number;
  /** The ES module exporting `agents` (and optionally `model` and `identity`); a relative path in a config file is relative to the file. */
  agents?: string;
  /** Run `store.migrate()` before starting. @defaultValue false */
  migrate?: boolean;
}

/** {@link NodeConfigInput} after parsing: defaults applied, paths absolute, the listen address split. */
export interface ResolvedNodeConfig {
  store: { kind: "pg"; databaseUrl: string; poolSize: number | undefined } | { kind: "pglite"; dataDir: string };
  schema: string;
  natsUrl: string | undefined;
  cluster: string;
  nodeId: string | undefined;
  http: { host: string; port: number };
  logLevel: NodeLogLevel;
  leaseTtlMs: number | undefined;
  renewIntervalMs: number | undefined;
  sweepIntervalMs: number | undefined;
  idleMs: number | undefined;
  residentMax: number | undefined;
  drainGraceMs: number;
  clockOffsetMs: number;
  /** Absolute path of the agents module. */
  agentsPath: string;
  migrate: boolean;
}

/** Longest duration any knob accepts, in milliseconds: one day. */
export const durationMsMax = 24 * 3600 * 1000;
/** Largest clock offset accepted, either way, in milliseconds: one year. */
export const clockOffsetMsMax = 365 * 24 * 3600 * 1000;

const durationMs = z.number().int().positive().max(durationMsMax);
const listenAddress = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** zod schema of {@link NodeConfigInput}: every key optional, unknown keys refused. */
export const nodeConfigSchema = z
  .object({
    databaseUrl: z
      .string()
      .regex(/^postgres(ql)?:\/\//, "a postgresql:// URL")
      .optional(),
    dataDir: z.string().min(1).max(4096).optional(),
    schema: z.string().min(1).max(63).optional(),
    poolSize: z.number().int().min(1).max(1000).optional(),
    natsUrl: z.string().min(1).max(4096).optional(),
    cluster: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, "letters, digits, _ and -, at most 64")
      .optional(),
    nodeId: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,64}$/, "letters, digits, _ . : and -, at most 64")
      .optional(),
    http: z.string().regex(listenAddress, "host:port").optional(),
    logLevel: z.enum(["debug", "info", "warn", "error", "silent"]).optional(),
    leaseTtlMs: durationMs.optional(),
    renewIntervalMs: durationMs.optional(),
    sweepIntervalMs: durationMs.optional(),
    idleMs: durationMs.optional(),
    residentMax: z.number().int().min(1).max(10_000_000).optional(),
    drainGraceMs: z.number().int().min(0).max(durationMsMax).optional(),
    clockOffsetMs: z.number().int().min(-clockOffsetMsMax).max(clockOffsetMsMax).optional(),
    agents: z.string().min(1).max(4096).optional(),
    migrate: z.boolean().optional(),
  })
  .strict();

/** The flag that sets a config key: `leaseTtlMs` → `--lease-ttl-ms`. */
export function flagOf(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

function configError(where: string, error: z.ZodError): ConfigError {
  const issue = error.issues[0];
  const key = issue?.path.join(".") ?? "";
  const name = key === "" ? "(root)" : where === "flags" ? flagOf(key) : key;
  return new ConfigError(`invalid ${where === "flags" ? "option" : `key in ${where}:`} ${name}: ${issue?.message ?? "invalid"}`, {
    details: { source: where, issues: error.issues.map((i) => ({ path: i.path.join("."), code: i.code, message: i.message })) },
  });
}

/**
 * Reads and checks a JSON config file; relative paths in it are made relative to the file.
 *
 * @throws ConfigError `ERR_CONFIG` when the file cannot be read, is not JSON, or has a bad or unknown key
 */
async function readConfigFile(file: string): Promise<NodeConfigInput> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (cause) {
    throw new ConfigError(`cannot read config file ${file}: ${(cause as Error).message}`, { cause, details: { file } });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(`config file ${file} is not JSON: ${(cause as Error).message}`, { cause, details: { file } });
  }
  const parsed = nodeConfigSchema.safeParse(json);
  if (!parsed.success) throw configError(file, parsed.error);
  const dir = path.dirname(file);
  const config = parsed.data;
  return {
    ...config,
    ...(config.agents === undefined ? {} : { agents: path.resolve(dir, config.agents) }),
    ...(config.dataDir === undefined || config.dataDir === "memory://" ? {} : { dataDir: path.resolve(dir, config.dataDir) }),
  };
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Merges flags over an optional config file, parses the result once and applies the defaults.
 *
 * @param flags - what commander parsed (numbers already converted where they looked like numbers)
 * @param env - where `DATABASE_URL` is read from
 * @returns every setting resolved
 * @throws ConfigError `ERR_CONFIG` naming the bad flag or config-file key; `details.issues` keeps the zod issues
 * @example
 * ```ts
 * const config = await resolveNodeConfig({ config: "node.json", leaseTtlMs: 2000 }, process.env);
 * ```
 */
export async function resolveNodeConfig(
  flags: NodeConfigInput & { config?: string },
  env: Record<string, string | undefined>,
): Promise<ResolvedNodeConfig> {
  const { config: configFile, ...flagValues } = flags;
  const fromFile = configFile === undefined ? {} : await readConfigFile(path.resolve(configFile));
  const parsedFlags = nodeConfigSchema.safeParse(withoutUndefined(flagValues));
  if (!parsedFlags.success) throw configError("flags", parsedFlags.error);
  const merged: NodeConfigInput = { ...fromFile, ...withoutUndefined(parsedFlags.data) };

  if (merged.databaseUrl !== undefined && merged.dataDir !== undefined)
    throw new ConfigError("give either --database-url or --data-dir, not both", { details: { issues: [{ path: "dataDir" }] } });
  const envUrl = env.DATABASE_URL === "" ? undefined : env.DATABASE_URL;
  const databaseUrl = merged.databaseUrl ?? (merged.dataDir === undefined ? envUrl : undefined);
  if (databaseUrl === undefined && merged.dataDir === undefined)
    throw new ConfigError("give --database-url (or DATABASE_URL) or --data-dir", { details: { issues: [{ path: "databaseUrl" }] } });
  if (merged.agents === undefined)
    throw new ConfigError("give --agents <module>: the ES module that exports your agents", { details: { issues: [{ path: "agents" }] } });
  if (merged.poolSize !== undefined && databaseUrl === undefined)
    throw new ConfigError("--pool-size applies to --database-url only", { details: { issues: [{ path: "poolSize" }] } });
  // A lease renewed at most every half TTL survives one late renewal (the runtime checks this too).
  if (merged.leaseTtlMs !== undefined && merged.renewIntervalMs !== undefined && merged.renewIntervalMs * 2 > merged.leaseTtlMs)
    throw new ConfigError(`--renew-interval-ms (${merged.renewIntervalMs}) must be at most half of --lease-ttl-ms (${merged.leaseTtlMs})`, {
      details: { issues: [{ path: "renewIntervalMs" }] },
    });

  const match = listenAddress.exec(merged.http ?? "127.0.0.1:0");
  const port = Number(match?.[2]);
  if (match === null || port > 65_535)
    throw new ConfigError(`invalid option --http: ${merged.http} is not host:port with a port up to 65535`, {
      details: { issues: [{ path: "http" }] },
    });
  const host = match[1]!.replace(/^\[(.*)\]$/, "$1");

  return {
    store:
      databaseUrl !== undefined
        ? { kind: "pg", databaseUrl, poolSize: merged.poolSize }
        : { kind: "pglite", dataDir: merged.dataDir === "memory://" ? "memory://" : path.resolve(merged.dataDir!) },
    schema: merged.schema ?? "tessera",
    natsUrl: merged.natsUrl,
    cluster: merged.cluster ?? "tessera",
    nodeId: merged.nodeId,
    http: { host, port },
    logLevel: merged.logLevel ?? "info",
    leaseTtlMs: merged.leaseTtlMs,
    renewIntervalMs: merged.renewIntervalMs,
    sweepIntervalMs: merged.sweepIntervalMs,
    idleMs: merged.idleMs,
    residentMax: merged.residentMax,
    drainGraceMs: merged.drainGraceMs ?? 10_000,
    clockOffsetMs: merged.clockOffsetMs ?? 0,
    agentsPath: path.resolve(merged.agents),
    migrate: merged.migrate ?? false,
  };
}
