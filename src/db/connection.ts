import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import SQLite from 'better-sqlite3'
import {
  CompiledQuery,
  sql,
  Kysely,
  Migrator,
  SqliteDialect,
  SqliteDriver,
  type DatabaseConnection,
  type Migration,
  type MigrationProvider,
  type MigrationResultSet,
  type SqliteDialectConfig,
  type Transaction,
} from 'kysely'
import * as initial from './migrations/0001-initial.js'
import * as tokenLifecycle from './migrations/0002-token-lifecycle.js'
import * as avatars from './migrations/0003-avatars.js'
import * as signingKeys from './migrations/0004-signing-keys.js'
import * as auditIp from './migrations/0005-audit-ip.js'
import type { Database } from './schema.js'

export type Db = Kysely<Database>
export type Trx = Transaction<Database>

/**
 * Write transactions take SQLite's write lock when they begin (`BEGIN IMMEDIATE`), so two processes on
 * one file (the server and the CLI) never deadlock upgrading read locks; `busy_timeout` makes them wait.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'))
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  constructor(private readonly settings: SqliteDialectConfig) {
    super(settings)
  }

  override createDriver(): SqliteDriver {
    return new ImmediateSqliteDriver(this.settings)
  }
}

/** The migrations, in order. Listed in code rather than read from a folder so they ship inside the build. */
const migrations: Record<string, Migration> = {
  '0001-initial': initial,
  '0002-token-lifecycle': tokenLifecycle,
  '0003-avatars': avatars,
  '0004-signing-keys': signingKeys,
  '0005-audit-ip': auditIp,
}

const provider: MigrationProvider = { getMigrations: async () => migrations }

/**
 * Opens the SQLite file (creating its folder) with WAL, `synchronous=FULL`, foreign keys and a busy timeout.
 *
 * @example const db = openDatabase('db/minigate.sqlite')
 */
export function openDatabase(file: string): Db {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true })
  const sqlite = new SQLite(file)
  sqlite.pragma('journal_mode = WAL')
  sqlite.pragma('synchronous = FULL')
  sqlite.pragma('foreign_keys = ON')
  sqlite.pragma('busy_timeout = 5000')
  return new Kysely<Database>({ dialect: new ImmediateSqliteDialect({ database: sqlite }) })
}

/** A round trip to SQLite, for the health check. */
export async function ping(db: Db): Promise<void> {
  await sql`select 1`.execute(db)
}

/** Brings the schema to the newest version; throws if a migration fails. */
export async function migrateToLatest(db: Db): Promise<MigrationResultSet> {
  const result = await new Migrator({ db, provider }).migrateToLatest()
  if (result.error) throw result.error
  return result
}
