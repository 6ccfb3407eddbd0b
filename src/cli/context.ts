import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Clock } from '../clock.js'
import { loadConfig, type Config } from '../config.js'
import { migrateToLatest, openDatabase, type Db } from '../db/connection.js'
import { keyTiming } from '../keys/key-ring.js'
import type { KeyAdmin } from '../keys/rotation.js'

/** Where a command writes, and what it runs against. */
export interface CliIo {
  env: Record<string, string | undefined>
  stdout: (text: string) => void
  stderr: (text: string) => void
  clock: Clock
}

/** A failure the operator can act on: printed as one line, exit code 1. */
export class CliError extends Error {
  override name = 'CliError'
}

/** A wrong command line: printed with the usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

export interface CliContext {
  config: Config
  db: Db
  admin: KeyAdmin
  io: CliIo
  json: boolean
  /** Prints a result: JSON with `--json`, else the human text. */
  print(result: unknown, text: string): void
}

const POSTGRES_URL = /^postgres(ql)?:\/\//i

/**
 * The database as the operator should see it: a SQLite file by its absolute path (a relative
 * MINIGATE_DB depends on the folder the command runs in), a PostgreSQL URL without its password.
 */
export function describeDatabase(dbFile: string): string {
  if (!POSTGRES_URL.test(dbFile)) return dbFile === ':memory:' ? dbFile : resolve(dbFile)
  try {
    const url = new URL(dbFile)
    if (url.password) url.password = '***'
    return url.toString()
  } catch {
    return 'a PostgreSQL URL that does not parse'
  }
}

/**
 * Opens the database of the configured environment for one command, and says on stderr which one it
 * is. Only `migrate` (`create`) may create a database: any other command run from the wrong folder
 * would quietly open a new, empty one. Unless `migrate` is false the schema is brought up to date.
 */
export async function openContext(io: CliIo, json: boolean, options: { migrate: boolean; create: boolean }): Promise<CliContext> {
  const config = loadConfig(io.env)
  const where = describeDatabase(config.dbFile)
  if (!options.create && !POSTGRES_URL.test(config.dbFile) && config.dbFile !== ':memory:' && !existsSync(config.dbFile)) {
    throw new CliError(`no database at ${where} (MINIGATE_DB); run minigate migrate to create one, or set MINIGATE_DB`)
  }
  io.stderr(`database: ${where}\n`)
  const db = openDatabase(config.dbFile)
  try {
    if (options.migrate) await migrateToLatest(db)
  } catch (error) {
    await db.destroy()
    throw error
  }
  return {
    config,
    db,
    admin: { dir: config.keysDir, db, clock: io.clock, timing: keyTiming(config) },
    io,
    json,
    print(result, text) {
      io.stdout(json ? `${JSON.stringify(result, null, 2)}\n` : `${text}\n`)
    },
  }
}

export function when(seconds: number | null): string {
  return seconds === null ? '-' : new Date(seconds * 1000).toISOString()
}
