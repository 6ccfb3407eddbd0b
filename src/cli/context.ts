import { resolve } from 'node:path'
import type { Clock } from '../clock.js'
import { loadConfig, type Config } from '../config.js'
import { migrateToLatest, openDatabase, type Db } from '../db/connection.js'
import { DatabaseMissing, describeLocation, isPostgresUrl } from '../db/dialect.js'
import { loadSecretBox, type SecretBox } from '../keys/data-key.js'
import { keyTiming } from '../keys/key-ring.js'
import type { KeyGenerator } from '../keys/signing-keys.js'
import type { KeyAdmin } from '../keys/rotation.js'

/** Where a command writes, and what it runs against. */
export interface CliIo {
  env: Record<string, string | undefined>
  stdout: (text: string) => void
  stderr: (text: string) => void
  clock: Clock
  /** Makes new signing keys (RSA-2048 by default). */
  generateKey?: KeyGenerator
}

/** A failure the operator can act on: printed as one line (`{"error": code, ...}` with --json), exit code 1. */
export class CliError extends Error {
  override name = 'CliError'
  constructor(
    message: string,
    /** `not_found` (no such user, session, key or database) or `refused`. */
    readonly code: 'not_found' | 'refused' = 'refused',
  ) {
    super(message)
  }
}

/** A wrong command line: printed with the usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

export interface CliContext {
  config: Config
  db: Db
  /** The key schedule and the data key that seals keys: loaded on first use (not every command needs it). */
  admin(): KeyAdmin
  io: CliIo
  json: boolean
  /** Prints a result: JSON with `--json`, else the human text. */
  print(result: unknown, text: string): void
}

/**
 * The database as the operator should see it: a SQLite file by its absolute path (a relative
 * MINIGATE_DB depends on the folder the command runs in), a PostgreSQL URL without its password.
 */
export function describeDatabase(dbFile: string): string {
  return isPostgresUrl(dbFile) || dbFile === ':memory:' ? describeLocation(dbFile) : resolve(dbFile)
}

/**
 * Opens the database of the configured environment for one command, and says on stderr which one it
 * is. Only `migrate` (`create`) may create a database: any other command run from the wrong folder
 * would quietly open a new, empty one. Unless `migrate` is false the schema is brought up to date.
 */
export async function openContext(io: CliIo, json: boolean, options: { migrate: boolean; create: boolean }): Promise<CliContext> {
  const config = loadConfig(io.env)
  const where = describeDatabase(config.dbFile)
  let db: Db
  try {
    db = openDatabase(config.dbFile, { create: options.create })
  } catch (error) {
    if (error instanceof DatabaseMissing) throw new CliError(`no database at ${where} (MINIGATE_DB); run minigate migrate to create one, or set MINIGATE_DB`, 'not_found')
    throw error
  }
  io.stderr(`database: ${where}\n`)
  try {
    if (options.migrate) await migrateToLatest(db)
  } catch (error) {
    await db.destroy()
    throw error
  }
  let admin: KeyAdmin | undefined
  let box: SecretBox | undefined
  return {
    config,
    db,
    admin() {
      admin ??= {
        db,
        // Loaded only by the commands that seal (add, rotate, rewrap): the others need no data key.
        get secretBox() {
          box ??= loadSecretBox({ dir: config.keysDir, keys: config.dataKeys, create: false })
          return box
        },
        clock: io.clock,
        timing: keyTiming(config),
        actor: 'operator',
        ...(io.generateKey ? { generateKey: io.generateKey } : {}),
      }
      return admin
    },
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
