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
import { version } from '../version.js'

export const help = `minigate: the operator command line (works while the server runs)

  minigate migrate                  bring the database (MINIGATE_DB) to the newest schema
  minigate keys list|add|activate|retire|rotate|rewrap
  minigate users list|show|disable|enable|delete|merge|unlink
  minigate sessions list|revoke
  minigate audit [--user <sub>] [--event <name>] [--since <time>] [--until <time>] [--limit N]
  minigate --version

Every command takes --help and --json. It reads the same environment as the server
(MINIGATE_DB, MINIGATE_KEYS_DIR, TTLs), names the database it opened on stderr, and creates
none but with migrate. Exit codes: 0 done, 1 refused or failed, 2 usage error. With --json
a failure is one line {"error": "...", "message": "..."} at the end of stderr (error: usage,
not_found, refused, config or failed).`

const helps: Record<string, string> = { keys: keysHelp, users: usersHelp, sessions: sessionsHelp, audit: auditHelp, migrate: 'minigate migrate\n\n  Brings the database of MINIGATE_DB to the newest schema, creating it if there is none.' }

interface ParsedArgs {
  values: { json?: boolean; force?: boolean; help?: boolean; version?: boolean; user?: string; search?: string; limit?: number; event?: string; since?: string; until?: string }
  positionals: string[]
}

/** Largest `--limit` of `users list`. */
const MAX_LIMIT = 10_000

/**
 * Reads the options minigate knows (`--json --force --help -h --version --user <sub> --search <text>
 * --limit <n>`, and the audit filters `--event --since --until`); everything else is a positional. Not
 * node's parseArgs: a kid is base64url and may begin with "-", which must not be read as an option.
 */
function parseArgv(argv: string[]): ParsedArgs {
  const values: ParsedArgs['values'] = {}
  const positionals: string[] = []
  /** The value of `--name value` or `--name=value`, or undefined when `arg` is not that option. */
  const valueOf = (arg: string, name: string, index: number): { value: string | undefined; next: number } | undefined => {
    if (arg === name) return { value: argv[index + 1], next: index + 1 }
    if (arg.startsWith(`${name}=`)) return { value: arg.slice(name.length + 1), next: index }
    return undefined
  }
  for (let index = 0; index < argv.length; index += 1) {
    const arg = argv[index] as string
    if (arg === '--') {
      positionals.push(...argv.slice(index + 1))
      break
    }
    const user = valueOf(arg, '--user', index)
    const search = valueOf(arg, '--search', index)
    const limit = valueOf(arg, '--limit', index)
    const filterKey = (['event', 'since', 'until'] as const).find((key) => valueOf(arg, `--${key}`, index))
    const filter = filterKey && { key: filterKey, name: `--${filterKey}`, ...(valueOf(arg, `--${filterKey}`, index) as { value: string | undefined; next: number }) }
    if (arg === '--json') values.json = true
    else if (arg === '--force') values.force = true
    else if (arg === '--help' || arg === '-h') values.help = true
    else if (arg === '--version') values.version = true
    else if (user) {
      if (!user.value) throw new UsageError('--user needs a user id')
      values.user = user.value
      index = user.next
    } else if (search) {
      if (search.value === undefined) throw new UsageError('--search needs a text')
      values.search = search.value
      index = search.next
    } else if (limit) {
      if (!limit.value || !/^\d+$/.test(limit.value) || Number(limit.value) < 1 || Number(limit.value) > MAX_LIMIT) throw new UsageError(`--limit needs a number from 1 to ${MAX_LIMIT}`)
      values.limit = Number(limit.value)
      index = limit.next
    } else if (filter) {
      if (!filter.value) throw new UsageError(`${filter.name} needs a value`)
      values[filter.key] = filter.value
      index = filter.next
    } else if (arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`)
    else positionals.push(arg)
  }
  return { values, positionals }
}

type ErrorCode = 'usage' | 'not_found' | 'refused' | 'config' | 'failed'

/**
 * Prints a failure: `minigate: <message>` (and, for a usage error, the help), or with --json one line
 * `{"error": code, "message": ...}`. Either goes to stderr: stdout carries answers only.
 */
function fail(io: CliIo, json: boolean, code: ErrorCode, message: string, usage?: string): void {
  if (json) io.stderr(`${JSON.stringify({ error: code, message })}\n`)
  else io.stderr(`minigate: ${message}\n${usage ? `\n${usage}\n` : ''}`)
}

function failureOf(error: unknown): { code: ErrorCode; message: string } {
  if (error instanceof CliError) return { code: error.code, message: error.message }
  if (error instanceof ConfigError || error instanceof KeyFileError) return { code: 'config', message: error.message }
  return { code: 'failed', message: `failed: ${(error as Error).message}` }
}

/**
 * Runs one CLI command and returns its exit code.
 *
 * @example process.exitCode = await run(['keys', 'list', '--json'], io)
 */
export async function run(argv: string[], io: CliIo): Promise<number> {
  // Known before parsing, so that even an unknown option is reported as JSON.
  const json = argv.includes('--json')
  let parsed: ParsedArgs
  try {
    parsed = parseArgv(argv)
  } catch (error) {
    fail(io, json, 'usage', (error as Error).message, help)
    return 2
  }
  const { values, positionals } = parsed
  const [group, ...rest] = positionals
  if (values.version && !values.help) {
    io.stdout(json ? `${JSON.stringify({ version: version() })}\n` : `minigate ${version()}\n`)
    return 0
  }
  if (!group && !values.help && json) {
    fail(io, json, 'usage', 'a command is required')
    return 2
  }
  if (values.help || !group) {
    io.stdout(`${(group && helps[group]) ?? help}\n`)
    return values.help ? 0 : 2
  }
  if (!helps[group]) {
    fail(io, json, 'usage', `unknown command ${group}`, help)
    return 2
  }
  if ((values.search !== undefined && group !== 'users') || (values.limit !== undefined && group !== 'users' && group !== 'audit')) {
    fail(io, json, 'usage', '--search goes with users list, --limit with users list and audit', helps[group])
    return 2
  }
  if ((values.event ?? values.since ?? values.until) !== undefined && group !== 'audit') {
    fail(io, json, 'usage', '--event, --since and --until go with audit', helps[group])
    return 2
  }
  let ctx
  try {
    ctx = await openContext(io, json, { migrate: group !== 'migrate', create: group === 'migrate' })
  } catch (error) {
    const { code, message } = failureOf(error)
    fail(io, json, code, message.replace(/^failed: /, ''))
    return 1
  }
  try {
    if (group === 'migrate') {
      const { results = [] } = await migrateToLatest(ctx.db)
      ctx.print({ applied: results.map((result) => result.migrationName) }, `${describeDatabase(ctx.config.dbFile)} is at the newest schema`)
    } else if (group === 'keys') await keysCommand(ctx, rest, values.force ?? false)
    else if (group === 'users') await usersCommand(ctx, rest, { ...(values.search !== undefined ? { search: values.search } : {}), ...(values.limit !== undefined ? { limit: values.limit } : {}) })
    else if (group === 'audit') await auditCommand(ctx, rest, values)
    else await sessionsCommand(ctx, rest, values.user)
    return 0
  } catch (error) {
    if (error instanceof UsageError) {
      fail(io, json, 'usage', error.message, helps[group])
      return 2
    }
    const { code, message } = failureOf(error)
    fail(io, json, code, message)
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
