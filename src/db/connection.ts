import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Migration, MigrationProvider, MigrationResultSet, Transaction } from 'kysely'
import { sql, Kysely, Migrator } from './kysely.js'
import { dialectOf, isPostgresUrl, postgresDialect, sqliteDialect } from './dialect.js'
import * as initial from './migrations/0001-initial.js'
import * as tokenLifecycle from './migrations/0002-token-lifecycle.js'
import * as avatars from './migrations/0003-avatars.js'
import * as signingKeys from './migrations/0004-signing-keys.js'
import * as auditIp from './migrations/0005-audit-ip.js'
import * as loginGenerations from './migrations/0006-login-generations.js'
import * as accountLifecycle from './migrations/0007-account-lifecycle.js'
import type { Database } from './schema.js'

export type Db = Kysely<Database>
export type Trx = Transaction<Database>

/** The migrations, in order. Listed in code rather than read from a folder so they ship inside the build. */
const migrations: Record<string, Migration> = {
  '0001-initial': initial,
  '0002-token-lifecycle': tokenLifecycle,
  '0003-avatars': avatars,
  '0004-signing-keys': signingKeys,
  '0005-audit-ip': auditIp,
  '0006-login-generations': loginGenerations,
  '0007-account-lifecycle': accountLifecycle,
}

const provider: MigrationProvider = { getMigrations: async () => migrations }

/** The names of the migrations, in order. */
export const migrationNames: readonly string[] = Object.keys(migrations)

export interface OpenOptions {
  /** Create a SQLite file (and its folder) that does not exist yet. Default true. */
  create?: boolean
  /** PostgreSQL connections per process. */
  poolSize?: number
  /** How the connections name themselves to PostgreSQL (`pg_stat_activity`). */
  applicationName?: string
}

/**
 * Opens the database `MINIGATE_DB` names: a `postgres://` URL selects PostgreSQL, anything else is a
 * SQLite file. The engine's particulars live in `./dialect.ts`.
 *
 * @example const db = openDatabase('db/minigate.sqlite')
 */
export function openDatabase(location: string, options: OpenOptions = {}): Db {
  if (isPostgresUrl(location)) {
    return new Kysely<Database>({ dialect: postgresDialect(location, { poolSize: options.poolSize ?? 10, applicationName: options.applicationName ?? 'minigate' }) })
  }
  const create = options.create ?? true
  if (create && location !== ':memory:') mkdirSync(dirname(location), { recursive: true })
  return new Kysely<Database>({ dialect: sqliteDialect(location, { create }) })
}

/** A round trip to the database, for the health check. */
export async function ping(db: Db): Promise<void> {
  await sql`select 1`.execute(db)
}

/**
 * Brings the schema to the newest version; throws if a migration fails. Safe to run from several
 * processes at once (the server, the CLI, other instances): on PostgreSQL an advisory lock, on SQLite
 * the write lock, admits one migrator at a time, and each run is one transaction, so a crash leaves
 * the schema as it was.
 */
export async function migrateToLatest(db: Db): Promise<MigrationResultSet> {
  // On PostgreSQL the migration tables go in the schema minigate's tables go in (the first of search_path).
  const schema =
    dialectOf(db) === 'postgres'
      ? (await sql<{ schema: string }>`select coalesce(current_schema(), split_part(current_setting('search_path'), ',', 1)) as schema`.execute(db)).rows[0]?.schema
      : undefined
  const result = await new Migrator({ db, provider, ...(schema ? { migrationTableSchema: schema } : {}) }).migrateToLatest()
  if (result.error) throw result.error
  return result
}

let savepoints = 0

/**
 * Runs `work` inside a savepoint of `trx` and returns its result; if it throws, only its own changes are
 * undone and the error propagates. PostgreSQL aborts a whole transaction at its first error, so a
 * statement that may fail on purpose (a unique conflict) runs in one.
 */
export async function inSavepoint<T>(trx: Trx, work: () => Promise<T>): Promise<T> {
  const name = sql.id(`sp_${(savepoints += 1)}`)
  await sql`savepoint ${name}`.execute(trx)
  try {
    const result = await work()
    await sql`release savepoint ${name}`.execute(trx)
    return result
  } catch (error) {
    await sql`rollback to savepoint ${name}`.execute(trx)
    await sql`release savepoint ${name}`.execute(trx)
    throw error
  }
}
