import { existsSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { keysHelp } from '../../src/cli/keys.js'
import { describeDatabase } from '../../src/cli/context.js'
import { help, run } from '../../src/cli/main.js'
import { sessionsHelp } from '../../src/cli/sessions.js'
import { usersHelp } from '../../src/cli/users.js'
import { openDatabase } from '../../src/db/connection.js'
import { splitDatabaseLine } from '../helpers/cli.js'
import { TestClock } from '../helpers/clock.js'

interface Output {
  code: number
  stdout: string
  stderr: string
}

/** A database and keys folder in the test's own directory, none of which exists yet. */
function paths(t: Test): { db: string; keys: string; env: Record<string, string> } {
  const dir = t.testdir()
  const db = join(dir, 'db', 'minigate.sqlite')
  const keys = join(dir, 'keys')
  return { db, keys, env: { MINIGATE_DB: db, MINIGATE_KEYS_DIR: keys } }
}

/** Runs the CLI in-process; `stderr` without the leading `database: ...` line, which is in `database`. */
async function cli(env: Record<string, string>, ...argv: string[]): Promise<Output & { database?: string }> {
  let stdout = ''
  let stderr = ''
  const code = await run(argv, { env, stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), clock: new TestClock() })
  return { code, stdout, ...splitDatabaseLine(stderr) }
}

t.test('no command: the help on stdout, exit 2', async (t) => {
  const { db, env } = paths(t)
  const out = await cli(env)
  t.equal(out.code, 2)
  t.equal(out.stdout, `${help}\n`)
  t.equal(out.stderr, '')
  t.notOk(existsSync(db), 'nothing was opened')
})

t.test('--help and -h: the help, exit 0', async (t) => {
  const { db, env } = paths(t)
  for (const flag of ['--help', '-h']) {
    const out = await cli(env, flag)
    t.equal(out.code, 0, flag)
    t.equal(out.stdout, `${help}\n`)
    t.equal(out.stderr, '')
  }
  for (const words of ['migrate', 'keys list|add|activate|retire|rotate', 'users list|show|disable|enable', '--version', 'sessions list|revoke', '--json', 'Exit codes']) {
    t.match(help, words, `the help mentions ${words}`)
  }
  t.notOk(existsSync(db))
})

t.test('<group> --help: that group’s help, exit 0', async (t) => {
  const { db, env } = paths(t)
  const groups: Array<[string, string | RegExp]> = [
    ['keys', keysHelp],
    ['users', usersHelp],
    ['sessions', sessionsHelp],
    ['migrate', /^minigate migrate\n/],
  ]
  for (const [group, expected] of groups) {
    const out = await cli(env, group, '--help')
    t.equal(out.code, 0, `${group} --help`)
    t.match(out.stdout, expected)
    t.not(out.stdout, `${help}\n`, 'not the general help')
    t.equal(out.stderr, '')
  }
  for (const argv of [
    ['keys', 'rotate', '--help'],
    ['keys', 'retire', 'some-kid', '-h'],
    ['users', 'disable', '--help'],
    ['sessions', 'revoke', '--help'],
  ]) {
    const out = await cli(env, ...argv)
    t.equal(out.code, 0, `${argv.join(' ')} shows help and does nothing`)
    t.match(out.stdout, `minigate ${argv[0]}`)
  }
  for (const name of ['list', 'add', 'activate', 'retire', 'rotate', '--force', '--json']) t.match(keysHelp, name, `keys help mentions ${name}`)
  for (const name of ['show', 'disable', 'enable']) t.match(usersHelp, name)
  for (const name of ['list', 'revoke', '--user']) t.match(sessionsHelp, name)
  t.notOk(existsSync(db), 'help never opens the database')
})

t.test('an unknown command or option: exit 2 with the help on stderr', async (t) => {
  const { db, env } = paths(t)
  const command = await cli(env, 'frobnicate')
  t.equal(command.code, 2)
  t.equal(command.stdout, '')
  t.match(command.stderr, /^minigate: unknown command frobnicate\n/)
  t.match(command.stderr, help)

  for (const argv of [['--bogus'], ['keys', 'list', '--bogus'], ['users', 'show', 'x', '--x']]) {
    const out = await cli(env, ...argv)
    t.equal(out.code, 2, `${argv.join(' ')}`)
    t.equal(out.stdout, '')
    t.match(out.stderr, /^minigate: .*option/i, 'the message names the problem')
    t.match(out.stderr, help)
  }
  const missingValue = await cli(env, 'sessions', 'revoke', '--user')
  t.equal(missingValue.code, 2, '--user without a value')
  t.notOk(existsSync(db))
  // A kid is base64url: it may begin with "-" and is still a kid, not an option.
  t.equal((await cli(env, 'migrate')).code, 0)
  const dashKid = await cli(env, 'keys', 'retire', '-Abc_def')
  t.equal(dashKid.code, 1, 'a kid beginning with "-" is read as a kid')
  t.match(dashKid.stderr, /no signing key -Abc_def/)
})

t.test('migrate: exit 0, lists what it applied on a fresh database, then nothing', async (t) => {
  const { db, env } = paths(t)
  const first = await cli(env, 'migrate', '--json')
  t.equal(first.code, 0)
  t.equal(first.database, db, 'stderr names the database')
  t.equal(first.stderr, '', 'and says nothing else')
  t.ok(existsSync(db), 'the database was created')
  const { applied } = JSON.parse(first.stdout) as { applied: string[] }
  t.ok(Array.isArray(applied))

  const sqlite = openDatabase(db)
  t.teardown(() => sqlite.destroy())
  const names = (await sqlite.selectFrom('kysely_migration' as never).select('name' as never).orderBy('name' as never).execute()).map((row) => (row as { name: string }).name)
  t.ok(names.includes('0001-initial') && names.includes('0004-signing-keys'), 'the schema is at the newest version')
  t.same(applied, names, 'on a fresh database --json lists every migration it applied')

  const second = await cli(env, 'migrate', '--json')
  t.equal(second.code, 0)
  t.same(JSON.parse(second.stdout), { applied: [] }, 'the second time there is nothing to apply')
  const text = await cli(env, 'migrate')
  t.equal(text.code, 0)
  t.equal(text.stdout, `${db} is at the newest schema\n`)
})

t.test('an invalid environment: exit 1 with the ConfigError message', async (t) => {
  const { db, env } = paths(t)
  const port = await cli({ ...env, PORT: 'abc' }, 'migrate')
  t.equal(port.code, 1)
  t.equal(port.stdout, '')
  t.equal(port.stderr, 'minigate: PORT must be a whole number between 0 and 65535, got "abc"\n')
  const ttl = await cli({ ...env, MINIGATE_ACCESS_TTL: '600', MINIGATE_REFRESH_TTL: '300' }, 'keys', 'list')
  t.equal(ttl.code, 1)
  t.equal(ttl.stderr, 'minigate: MINIGATE_REFRESH_TTL (300) must be longer than MINIGATE_ACCESS_TTL (600)\n')
  t.notOk(existsSync(db), 'nothing was created')
})

t.test('a database that cannot be opened: exit 1 with one line', async (t) => {
  const dir = t.testdir({ 'not-a-db': 'this is not SQLite' })
  const out = await cli({ MINIGATE_DB: join(dir, 'not-a-db'), MINIGATE_KEYS_DIR: join(dir, 'keys') }, 'migrate')
  t.equal(out.code, 1)
  t.equal(out.stdout, '')
  t.match(out.stderr, /^minigate: .+\n$/)
  t.equal(out.stderr.split('\n').length, 2, 'one line, no stack trace')
})

t.test('every command but migrate refuses to create a database, and says which one it means', async (t) => {
  const { db, env } = paths(t)
  const expected = `minigate: no database at ${db} (MINIGATE_DB); run minigate migrate to create one, or set MINIGATE_DB\n`
  const json = `${JSON.stringify({ error: 'not_found', message: expected.slice('minigate: '.length, -1) })}\n`
  for (const argv of [['keys', 'list'], ['keys', 'add'], ['users', 'show', 'someone'], ['sessions', 'list', 'someone', '--json']]) {
    const out = await cli(env, ...argv)
    t.equal(out.code, 1, `${argv.join(' ')}: exit 1`)
    t.equal(out.stdout, '')
    t.equal(out.stderr, argv.includes('--json') ? json : expected, `${argv.join(' ')}: one line naming the database and what to do`)
  }
  t.notOk(existsSync(dirname(db)), 'no database, not even its folder, was created')

  const migrated = await cli(env, 'migrate')
  t.equal(migrated.code, 0, 'migrate creates it')
  t.equal(migrated.stdout, `${db} is at the newest schema\n`)
  const list = await cli(env, 'keys', 'list', '--json')
  t.equal(list.code, 0, 'then the other commands work')
  t.equal(list.database, db, 'naming the database on stderr')
  t.same(JSON.parse(list.stdout), [], 'stdout stays plain JSON')
})

t.test('the database is named by its absolute path, a PostgreSQL URL without its password', async (t) => {
  t.equal(describeDatabase('db/minigate.sqlite'), resolve('db/minigate.sqlite'), 'a relative path depends on the folder the command runs in')
  t.equal(describeDatabase('/srv/minigate/db.sqlite'), '/srv/minigate/db.sqlite')
  const url = describeDatabase('postgres://minigate:s3cret-pass@db.internal:5432/minigate?sslmode=require')
  t.equal(url, 'postgres://minigate:***@db.internal:5432/minigate?sslmode=require')
  t.notOk(url.includes('s3cret-pass'), 'the password is never printed')
  t.equal(describeDatabase('postgresql://db.internal/minigate'), 'postgresql://db.internal/minigate')
  t.notOk(describeDatabase('postgres://u:pw@[broken').includes('pw'), 'nor from a URL that does not parse')
})

t.test('run from another folder, the built CLI names the database it looked for and creates nothing', async (t) => {
  const folder = t.testdir()
  const cliMain = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))
  const result = spawnSync(process.execPath, [cliMain, 'keys', 'list'], { cwd: folder, env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8' })
  t.equal(result.status, 1, 'exit 1')
  t.equal(result.stdout, '', 'no "no keys" answer')
  t.equal(result.stderr, `minigate: no database at ${join(folder, 'db', 'minigate.sqlite')} (MINIGATE_DB); run minigate migrate to create one, or set MINIGATE_DB\n`)
  t.notOk(existsSync(join(folder, 'db')), 'no db folder appeared')
})
