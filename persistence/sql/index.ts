/**
 * The SQL implementation of the `Store` port, shared by `persistence/pg` and `persistence/pglite`.
 * Not a public entry point: applications use `createPgStore` or `createPgliteStore`.
 *
 * @internal
 * @packageDocumentation
 */
export { SqlStore } from "./sql-store.js";
export type { SqlStoreOptions } from "./sql-store.js";
export { defaultSqlRetry } from "./transaction.js";
export type { SqlPool, SqlRetryOptions, SqlStoreStats } from "./transaction.js";
export { migrations } from "./migrations.js";
export type { Migration } from "./migrations.js";
export { translateError } from "./errors.js";
export { schemaNamePattern } from "./tables.js";
