#!/usr/bin/env node
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { systemClock } from '../clock.js'
import { ConfigError } from '../config.js'
import { migrateToLatest } from '../db/connection.js'
import { KeyFileError } from '../keys/signing-keys.js'
import { CliError, describeDatabase, openContext, UsageError, type CliIo } from './context.js'
import { auditCommand, auditHelp } from './audit.js'
import { keysCommand, keysHelp } from './keys.js'
import { sessionsCommand, sessionsHelp } from './sessions.js'
import { usersCommand, usersHelp } from './users.js'

export const help = `minigate: the operator command line (works while the server runs)

  minigate migrate                  bring the database (MINIGATE_DB) to the newest schema
  minigate keys list|add|activate|retire|rotate|rewrap
  minigate users show|disable|enable|delete|merge|unlink
  minigate sessions list|revoke
  minigate audit [--user <sub>] [--event <name>] [--since <time>] [--until <time>] [--limit N]

Every command takes --help and --json. It reads the same environment as the server
(MINIGATE_DB, MINIGATE_KEYS_DIR, TTLs), names the database it opened on stderr, and creates
none but with migrate. Exit codes: 0 done, 1 refused or failed, 2 usage error.`

const helps: Record<string, string> = { keys: keysHelp, users: usersHelp, sessions: sessionsHelp, audit: auditHelp, migrate: 'minigate migrate\n\n  Brings the database of MINIGATE_DB to the newest schema, creating it if there is none.' }

/** Options that take a value (the audit command's filters). */
const VALUE_OPTIONS = ['event', 'since', 'until', 'limit'] as const

interface ParsedArgs {
  values: { json?: boolean; force?: boolean; help?: boolean; user?: string; event?: string; since?: string; until?: string; limit?: string }
  positionals: string[]
}

/**
 * Reads the options minigate knows (`--json --force --help -h --user <sub>`, and the audit filters
 * `--event --since --until --limit`, each with a value); everything else is a
 * positional. Not node's parseArgs: a kid is base64url and may begin with "-", which must not be read
 * as an option.
 */
function parseArgv(argv: string[]): ParsedArgs {
  const values: ParsedArgs['values'] = {}
  const positionals: string[] = []
  for (let index = 0; index < argv.length; index += 1) {
    const arg = argv[index] as string
    if (arg === '--') {
      positionals.push(...argv.slice(index + 1))
      break
    }
    if (arg === '--json') values.json = true
    else if (arg === '--force') values.force = true
    else if (arg === '--help' || arg === '-h') values.help = true
    else if (arg === '--user' || arg.startsWith('--user=')) {
      const value = arg === '--user' ? argv[(index += 1)] : arg.slice('--user='.length)
      if (!value) throw new UsageError('--user needs a user id')
      values.user = value
    } else if (VALUE_OPTIONS.some((name) => arg === `--${name}` || arg.startsWith(`--${name}=`))) {
      const name = VALUE_OPTIONS.find((option) => arg === `--${option}` || arg.startsWith(`--${option}=`)) as (typeof VALUE_OPTIONS)[number]
      const value = arg === `--${name}` ? argv[(index += 1)] : arg.slice(name.length + 3)
      if (!value) throw new UsageError(`--${name} needs a value`)
      values[name] = value
    } else if (arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`)
    else positionals.push(arg)
  }
  return { values, positionals }
}

/**
 * Runs one CLI command and returns its exit code.
 *
 * @example process.exitCode = await run(['keys', 'list', '--json'], io)
 */
export async function run(argv: string[], io: CliIo): Promise<number> {
  let parsed: ParsedArgs
  try {
    parsed = parseArgv(argv)
  } catch (error) {
    io.stderr(`minigate: ${(error as Error).message}\n\n${help}\n`)
    return 2
  }
  const { values, positionals } = parsed
  const [group, ...rest] = positionals
  if (values.help || !group) {
    io.stdout(`${(group && helps[group]) ?? help}\n`)
    return values.help ? 0 : 2
  }
  if (!helps[group]) {
    io.stderr(`minigate: unknown command ${group}\n\n${help}\n`)
    return 2
  }
  let ctx
  try {
    ctx = await openContext(io, values.json ?? false, { migrate: group !== 'migrate', create: group === 'migrate' })
  } catch (error) {
    io.stderr(`minigate: ${(error as Error).message}\n`)
    return 1
  }
  try {
    if (group === 'migrate') {
      const { results = [] } = await migrateToLatest(ctx.db)
      ctx.print({ applied: results.map((result) => result.migrationName) }, `${describeDatabase(ctx.config.dbFile)} is at the newest schema`)
    } else if (group === 'keys') await keysCommand(ctx, rest, values.force ?? false)
    else if (group === 'users') await usersCommand(ctx, rest)
    else if (group === 'audit') await auditCommand(ctx, rest, values)
    else await sessionsCommand(ctx, rest, values.user)
    return 0
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`minigate: ${error.message}\n\n${helps[group]}\n`)
      return 2
    }
    io.stderr(`minigate: ${error instanceof CliError || error instanceof ConfigError || error instanceof KeyFileError ? error.message : `failed: ${(error as Error).message}`}\n`)
    return 1
  } finally {
    await ctx.db.destroy()
  }
}

const invoked = process.argv[1] ? realpathSync(process.argv[1]) : ''
if (invoked === fileURLToPath(import.meta.url)) {
  const io: CliIo = { env: process.env, stdout: (text) => process.stdout.write(text), stderr: (text) => process.stderr.write(text), clock: systemClock }
  process.exitCode = await run(process.argv.slice(2), io)
}
