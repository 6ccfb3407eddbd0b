import type { Clock } from '../clock.js'
import { loadConfig, type Config } from '../config.js'
import { migrateToLatest, openDatabase, type Db } from '../db/connection.js'
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
  /** The key schedule and the data key that seals keys: loaded on first use (not every command needs it). */
  admin(): KeyAdmin
  io: CliIo
  json: boolean
  /** Prints a result: JSON with `--json`, else the human text. */
  print(result: unknown, text: string): void
}

/** Opens the database of the configured environment, migrated unless `migrate` is false, for one command. */
export async function openContext(io: CliIo, json: boolean, migrate = true): Promise<CliContext> {
  const config = loadConfig(io.env)
  const db = openDatabase(config.dbFile)
  try {
    if (migrate) await migrateToLatest(db)
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
