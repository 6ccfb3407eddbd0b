import { closeSync, existsSync, openSync } from 'node:fs'
import SQLite from 'better-sqlite3'
import type { DatabaseConnection, DatabaseIntrospector, DatabaseMetadata, DialectAdapter, Kysely, SchemaMetadata, SqliteDialectConfig, TableMetadata } from 'kysely'
import { CompiledQuery, PostgresAdapter, PostgresDialect, SqliteAdapter, SqliteDialect, SqliteDriver, sql } from './kysely.js'
import pg from 'pg'

/**
 * Everything that differs between the two database engines minigate runs on, in one place: how a
 * connection is opened and tuned, how write transactions begin, how migrations are locked, and how a
 * unique-constraint conflict shows. Queries are written once, in Kysely, for both.
 */
export type DialectName = 'sqlite' | 'postgres'

/** `MINIGATE_DB` values that select PostgreSQL; anything else is a SQLite file path. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location)
}

/** The engine behind a Kysely instance (or transaction). */
export function dialectOf(db: Kysely<any>): DialectName {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite'
}

/** Whether an error is a unique-constraint violation (a concurrent insert won). */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY'
}

/** A database location fit to print: a PostgreSQL URL without its password. */
export function describeLocation(location: string): string {
  if (!isPostgresUrl(location)) return location
  try {
    const url = new URL(location)
    if (url.password) url.password = '***'
    return url.toString()
  } catch {
    return 'postgres://(unparsable URL)'
  }
}

// --- SQLite -----------------------------------------------------------------------------------------

/**
 * SQLite runs DDL inside transactions, and a write transaction that begins IMMEDIATE holds the
 * database's one write lock: so migrations run atomically, one process at a time (Kysely's stock SQLite
 * adapter runs them outside a transaction with a no-op lock).
 */
class LockingSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true
  }
}

/**
 * Write transactions take SQLite's write lock when they begin (`BEGIN IMMEDIATE`), so two processes on
 * one file (the server and the CLI) never deadlock upgrading read locks; `busy_timeout` makes them wait.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'))
  }
}

class MinigateSqliteDialect extends SqliteDialect {
  constructor(private readonly settings: SqliteDialectConfig) {
    super(settings)
  }

  override createDriver(): SqliteDriver {
    return new ImmediateSqliteDriver(this.settings)
  }

  override createAdapter(): DialectAdapter {
    return new LockingSqliteAdapter()
  }
}

/** A SQLite file that does not exist yet and may not be created (`create: false`). */
export class DatabaseMissing extends Error {
  override name = 'DatabaseMissing'
}

/**
 * Opens a SQLite file with WAL, `synchronous=FULL`, foreign keys and a busy timeout. A new file is
 * created 0600 (it holds phone numbers); SQLite gives its `-wal` and `-shm` files the same mode.
 */
export function sqliteDialect(file: string, options: { create: boolean }): SqliteDialect {
  if (file !== ':memory:' && !existsSync(file)) {
    if (!options.create) throw new DatabaseMissing(`no database at ${file}`)
    closeSync(openSync(file, 'a', 0o600))
  }
  const sqlite = new SQLite(file, { fileMustExist: file !== ':memory:' })
  sqlite.pragma('journal_mode = WAL')
  sqlite.pragma('synchronous = FULL')
  sqlite.pragma('foreign_keys = ON')
  sqlite.pragma('busy_timeout = 5000')
  return new MinigateSqliteDialect({ database: withStatementCache(sqlite) })
}

/** Prepared statements kept per SQL text; minigate's queries are a few dozen shapes. */
const STATEMENT_CACHE_SIZE = 256

/**
 * Kysely prepares every statement anew, which costs more than running it for minigate's one-row
 * queries. The cache keeps the most recent shapes (the SQL text holds only placeholders, never values).
 * better-sqlite3 runs a statement to completion before the next call, so reuse is safe; Kysely's
 * streaming (`iterate`) would not be, and minigate does not stream.
 */
function withStatementCache(sqlite: SQLite.Database): SqliteDialectConfig['database'] {
  const cache = new Map<string, SQLite.Statement>()
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      let statement = cache.get(sql)
      if (statement) {
        // Most recently used last, so the first entry is the one to drop.
        cache.delete(sql)
      } else {
        statement = sqlite.prepare(sql)
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value as string)
      }
      cache.set(sql, statement)
      return statement
    },
  }
}

// --- PostgreSQL -------------------------------------------------------------------------------------

/** PostgreSQL's type oid of int8: every timestamp and counter column. */
const INT8 = 20

/**
 * int8 values arrive as JavaScript numbers: minigate's are epoch seconds and counters, far below 2^53.
 * (pg returns them as strings by default, since int8 can exceed a double.)
 */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8 && format !== 'binary') return (value: string) => Number(value)
    return pg.types.getTypeParser(oid, format)
  },
}

/**
 * Reads a `postgres://` URL. A `schema` query parameter (not a libpq one) selects the schema minigate's
 * tables live in, through `search_path`: several minigates, or test runs, can share one database.
 */
export function postgresSettings(location: string): { connectionString: string; schema: string | undefined } {
  const url = new URL(location)
  const schema = url.searchParams.get('schema') ?? undefined
  url.searchParams.delete('schema')
  if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new Error('the schema parameter of a postgres:// MINIGATE_DB must be a lowercase SQL identifier')
  }
  return { connectionString: url.toString(), schema }
}

/**
 * What Kysely's migrator asks of the database (which schemas and tables exist), answered from minigate's
 * own schema only. Kysely's stock introspection reads every table of every schema, with functions that
 * fail when another schema is dropped meanwhile, and costs more with each schema a shared database holds.
 */
class OwnSchemaIntrospector implements DatabaseIntrospector {
  constructor(private readonly db: Kysely<any>) {}

  async getSchemas(): Promise<SchemaMetadata[]> {
    const { rows } = await sql<{ name: string }>`select nspname as name from pg_catalog.pg_namespace`.execute(this.db)
    return rows
  }

  async getTables(): Promise<TableMetadata[]> {
    const { rows } = await sql<{ name: string; schema: string; kind: string }>`
      select c.relname as name, n.nspname as schema, c.relkind as kind
      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where n.nspname = current_schema() and c.relkind in ('r', 'p', 'v', 'm')`.execute(this.db)
    return rows.map(({ name, schema, kind }) => ({ name, schema, isView: kind === 'v' || kind === 'm', columns: [] }))
  }

  async getMetadata(): Promise<DatabaseMetadata> {
    return { tables: await this.getTables() }
  }
}

class MinigatePostgresDialect extends PostgresDialect {
  override createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new OwnSchemaIntrospector(db)
  }
}

/** Opens a pool of PostgreSQL connections (READ COMMITTED, the default). */
export function postgresDialect(location: string, options: { poolSize: number; applicationName: string }): PostgresDialect {
  const { connectionString, schema } = postgresSettings(location)
  const pool = new pg.Pool({
    connectionString,
    max: options.poolSize,
    application_name: options.applicationName,
    types,
    ...(schema ? { options: `-c search_path=${schema}` } : {}),
    // A transaction left open by a crashed request must not hold its row locks for long.
    idle_in_transaction_session_timeout: 30_000,
    connectionTimeoutMillis: 10_000,
  })
  // An idle client losing its connection (server restart) is not fatal: the pool replaces it.
  pool.on('error', () => {})
  return new MinigatePostgresDialect({ pool })
}

/**
 * Adds `FOR UPDATE` on PostgreSQL, where concurrent transactions must queue on a row they are about to
 * change; SQLite needs nothing (a write transaction already holds the whole database) and has no
 * such clause.
 */
export function forUpdate<QB extends { forUpdate(): QB }>(db: Kysely<any>, query: QB): QB {
  return dialectOf(db) === 'postgres' ? query.forUpdate() : query
}
