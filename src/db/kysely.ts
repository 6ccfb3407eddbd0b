import { createRequire } from 'node:module'
import type * as K from 'kysely'

/**
 * Kysely's values, from its CommonJS build. Its ESM build is some 260 modules that Node links one by
 * one: importing it took about 85 ms here against 45 ms for the CommonJS build, paid by every start of
 * the server and every CLI command, and several times that under module loaders (tap's coverage hooks
 * see each ESM module). Import Kysely's values from here, never from 'kysely', so one copy is loaded;
 * types may come from 'kysely' with `import type`.
 */
const kysely = createRequire(import.meta.url)('kysely') as typeof K

export const { CompiledQuery, Kysely, Migrator, PostgresAdapter, PostgresDialect, SqliteAdapter, SqliteDialect, SqliteDriver, sql } = kysely
export type CompiledQuery<O = unknown> = K.CompiledQuery<O>
export type Kysely<DB> = K.Kysely<DB>
export type Migrator = K.Migrator
export type PostgresAdapter = K.PostgresAdapter
export type PostgresDialect = K.PostgresDialect
export type SqliteAdapter = K.SqliteAdapter
export type SqliteDialect = K.SqliteDialect
export type SqliteDriver = K.SqliteDriver
