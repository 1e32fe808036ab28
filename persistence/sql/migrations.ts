/**
 * The schema, as an ordered list of named steps. Each step is recorded in
 * `<schema>.tsr_migrations` when applied; a step is never edited once released, only followed by
 * a new one. Statements follow DESIGN.md §11 so that they run on CockroachDB as well: primary keys
 * start with the tenant, no global counters, no triggers, no `CREATE INDEX CONCURRENTLY`, and
 * partial indexes instead of low-cardinality hot ones.
 */

/** One named migration step: statements run one by one, in one transaction. */
export interface Migration {
  /** Unique, sortable name, recorded once applied. */
  readonly name: string;
  /**
   * The statements, given the quoted schema name. One statement per string, because PGlite runs
   * multi-statement strings only through `exec`, which a `pg.Pool` does not have.
   */
  readonly sql: (schema: string) => readonly string[];
}

const initial: Migration = {
  name: "0001_initial",
  sql: (s) => [
    `CREATE TABLE IF NOT EXISTS ${s}.actors (
      tenant_id text NOT NULL,
      actor_id text NOT NULL,
      agent_type text NOT NULL,
      agent_version bigint NOT NULL,
      parent_id text,
      root_id text NOT NULL,
      name text,
      depth bigint NOT NULL,
      input jsonb NOT NULL,
      epoch bigint NOT NULL,
      owner_node text,
      status text NOT NULL,
      revision bigint NOT NULL,
      snapshot jsonb,
      snapshot_seq bigint NOT NULL,
      last_hash text NOT NULL,
      output jsonb,
      error jsonb,
      child_count bigint NOT NULL,
      created_at bigint NOT NULL,
      updated_at bigint NOT NULL,
      PRIMARY KEY (tenant_id, actor_id)
    )`,
    // Only active actors are claimed at start-up; a partial index keeps finished ones out of it.
    `CREATE INDEX IF NOT EXISTS actors_active_idx ON ${s}.actors (tenant_id, actor_id) WHERE status = 'active'`,
    `CREATE INDEX IF NOT EXISTS actors_parent_idx ON ${s}.actors (tenant_id, parent_id, created_at, actor_id)`,
    `CREATE INDEX IF NOT EXISTS actors_status_idx ON ${s}.actors (tenant_id, status, created_at, actor_id)`,
    `CREATE TABLE IF NOT EXISTS ${s}.runs (
      tenant_id text NOT NULL,
      run_key text NOT NULL,
      actor_id text NOT NULL,
      input_hash text,
      PRIMARY KEY (tenant_id, run_key)
    )`,
    `CREATE TABLE IF NOT EXISTS ${s}.journal (
      tenant_id text NOT NULL,
      actor_id text NOT NULL,
      seq bigint NOT NULL,
      kind text NOT NULL,
      event jsonb NOT NULL,
      event_ref text,
      message_id text,
      planned jsonb NOT NULL,
      state_value jsonb NOT NULL,
      status text NOT NULL,
      state_hash text NOT NULL,
      hash text NOT NULL,
      prev_hash text NOT NULL,
      epoch bigint NOT NULL,
      node_id text NOT NULL,
      created_at bigint NOT NULL,
      PRIMARY KEY (tenant_id, actor_id, seq)
    )`,
    `CREATE TABLE IF NOT EXISTS ${s}.effects (
      tenant_id text NOT NULL,
      actor_id text NOT NULL,
      effect_id text NOT NULL,
      ordinal bigint NOT NULL,
      kind text NOT NULL,
      name text NOT NULL,
      args jsonb NOT NULL,
      idempotency_key text NOT NULL,
      idempotent boolean NOT NULL,
      state text NOT NULL,
      attempts bigint NOT NULL,
      next_attempt_at bigint,
      result jsonb,
      result_ref text,
      error jsonb,
      usage jsonb,
      created_seq bigint NOT NULL,
      completed_seq bigint,
      created_at bigint NOT NULL,
      updated_at bigint NOT NULL,
      PRIMARY KEY (tenant_id, actor_id, effect_id)
    )`,
    `CREATE INDEX IF NOT EXISTS effects_order_idx ON ${s}.effects (tenant_id, actor_id, created_seq, ordinal)`,
    // The next insertion number of each mailbox: FIFO order without a global counter, and kept
    // apart from the actor row so that senders never contend with the recipient's own steps.
    `CREATE TABLE IF NOT EXISTS ${s}.mailbox_heads (
      tenant_id text NOT NULL,
      actor_id text NOT NULL,
      next_ord bigint NOT NULL,
      PRIMARY KEY (tenant_id, actor_id)
    )`,
    `CREATE TABLE IF NOT EXISTS ${s}.mailbox (
      tenant_id text NOT NULL,
      actor_id text NOT NULL,
      message_id text NOT NULL,
      ord bigint NOT NULL,
      event jsonb NOT NULL,
      sender text NOT NULL,
      created_at bigint NOT NULL,
      applied_seq bigint,
      PRIMARY KEY (tenant_id, actor_id, message_id)
    )`,
    `CREATE INDEX IF NOT EXISTS mailbox_pending_idx ON ${s}.mailbox (tenant_id, actor_id, ord) WHERE applied_seq IS NULL`,
    `CREATE TABLE IF NOT EXISTS ${s}.timers (
      tenant_id text NOT NULL,
      actor_id text NOT NULL,
      timer_id text NOT NULL,
      name text NOT NULL,
      due_at bigint NOT NULL,
      created_seq bigint NOT NULL,
      PRIMARY KEY (tenant_id, actor_id, timer_id)
    )`,
    `CREATE TABLE IF NOT EXISTS ${s}.blobs (
      tenant_id text NOT NULL,
      blob_id text NOT NULL,
      data text NOT NULL,
      PRIMARY KEY (tenant_id, blob_id)
    )`,
  ],
};

/**
 * Delegation chains (IDENTITY.md): the chain each actor, message, effect, timer and step runs
 * under, by reference, the verified invocation's audit record of an effect, and the chains
 * themselves, stored once per tenant and leaf hash. The new columns are nullable without a
 * default, so adding them rewrites no rows on PostgreSQL and needs no backfill on CockroachDB;
 * rows written before it read back without a chain.
 */
const delegationChains: Migration = {
  name: "0002_delegation_chains",
  sql: (s) => [
    `ALTER TABLE ${s}.actors ADD COLUMN IF NOT EXISTS chain_ref text`,
    `ALTER TABLE ${s}.journal ADD COLUMN IF NOT EXISTS chain_ref text`,
    `ALTER TABLE ${s}.effects ADD COLUMN IF NOT EXISTS chain_ref text`,
    `ALTER TABLE ${s}.effects ADD COLUMN IF NOT EXISTS audit jsonb`,
    `ALTER TABLE ${s}.mailbox ADD COLUMN IF NOT EXISTS chain_ref text`,
    `ALTER TABLE ${s}.timers ADD COLUMN IF NOT EXISTS chain_ref text`,
    // Keyed by tenant first (promise 7): the same leaf hash in two tenants is two rows.
    `CREATE TABLE IF NOT EXISTS ${s}.chains (
      tenant_id text NOT NULL,
      chain_ref text NOT NULL,
      tokens jsonb NOT NULL,
      created_at bigint NOT NULL,
      PRIMARY KEY (tenant_id, chain_ref)
    )`,
  ],
};

/**
 * The tenant key directory (IDENTITY.md §2): an append-only log per tenant of authority anchors,
 * identity tokens and key retirements, whose position is the tenant's directory epoch.
 */
const keyDirectory: Migration = {
  name: "0003_key_directory",
  sql: (s) => [
    `CREATE TABLE IF NOT EXISTS ${s}.key_directory (
      tenant_id text NOT NULL,
      position bigint NOT NULL,
      kind text NOT NULL,
      kid text NOT NULL,
      body jsonb NOT NULL,
      created_at bigint NOT NULL,
      PRIMARY KEY (tenant_id, position)
    )`,
  ],
};

/**
 * Cluster membership (DESIGN.md §7): one row per node id with its lease, stamped by the database's
 * clock, and the indexes of per-owner queries. Active actors are found by owner through a partial
 * index (the sweeper, hand-off, and the count of actors a node owns read only their owner's
 * entries), and an actor's open effects through another, so that the sweeper's check for a
 * planned or running effect does not read every effect the actor ever had. The nodes table is
 * keyed by node id, not by tenant: nodes serve every tenant.
 */
const nodes: Migration = {
  name: "0004_nodes",
  sql: (s) => [
    `CREATE TABLE IF NOT EXISTS ${s}.nodes (
      node_id text NOT NULL,
      state text NOT NULL,
      registered_at bigint NOT NULL,
      heartbeat_at bigint NOT NULL,
      lease_expires_at bigint NOT NULL,
      info jsonb NOT NULL,
      PRIMARY KEY (node_id)
    )`,
    `CREATE INDEX IF NOT EXISTS actors_owner_idx ON ${s}.actors (owner_node, tenant_id, actor_id) WHERE status = 'active'`,
    `CREATE INDEX IF NOT EXISTS effects_open_idx ON ${s}.effects (tenant_id, actor_id) WHERE state IN ('planned', 'running')`,
  ],
};

/**
 * Kill switches (DESIGN.md §6): an agent type of a tenant that may not run. A row per tenant and
 * type; engaging one again keeps the first.
 */
const killSwitches: Migration = {
  name: "0005_kill_switches",
  sql: (s) => [
    `CREATE TABLE IF NOT EXISTS ${s}.kill_switches (
      tenant_id text NOT NULL,
      agent_type text NOT NULL,
      reason text NOT NULL,
      engaged_at bigint NOT NULL,
      PRIMARY KEY (tenant_id, agent_type)
    )`,
    `CREATE INDEX IF NOT EXISTS actors_type_idx ON ${s}.actors (tenant_id, agent_type, created_at, actor_id) WHERE status = 'active'`,
  ],
};

/**
 * Half of each page of `actors` kept free for updates. Every step updates its actor's row, and
 * PostgreSQL writes that update without touching any of the table's six indexes (a heap-only
 * tuple) only when the row's page has room for the new version. With full pages, at 64 concurrent
 * runs 73 % of the updates found no room and added an entry to every index; with half-full pages,
 * 14 % (completions, which change the indexed status, are most of them). The price is a table of
 * about twice as many pages. Pages already written keep their fill: an existing deployment gains
 * the room as its rows move (or at once with `VACUUM FULL`, which locks the table). CockroachDB
 * accepts the parameter and ignores it.
 */
const actorsFillFactor: Migration = {
  name: "0006_actors_fillfactor",
  sql: (s) => [`ALTER TABLE ${s}.actors SET (fillfactor = 50)`],
};

/**
 * Every migration, oldest first. `migrate()` applies the ones not yet recorded, in this order.
 *
 * @internal
 */
export const migrations: readonly Migration[] = Object.freeze([
  initial,
  delegationChains,
  keyDirectory,
  nodes,
  killSwitches,
  actorsFillFactor,
]);
