import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Migration } from 'kysely'
import { sql, Migrator } from '../../src/db/kysely.js'
import t from 'tap'
import { migrateToLatest, migrationNames, openDatabase } from '../../src/db/connection.js'
import { listSigningKeys } from '../../src/db/signing-keys.js'
import { loadSecretBox } from '../../src/keys/data-key.js'
import { keyState, keyTiming } from '../../src/keys/key-ring.js'
import { defaults } from '../../src/config.js'
import { createFreshDatabase, freshDatabaseLocation, testDialect } from '../helpers/database.js'
import { fixtureKeyPem } from '../helpers/keys.js'

/** The compiled CLI, run as operators run it: one process per command. */
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))

function minigate(env: Record<string, string>, ...argv: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...argv], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })))
}

t.test('two `minigate migrate` at once on a fresh database both succeed, and the schema is whole', async (t) => {
  // Before migrations were locked and transactional on SQLite, this failed 2 times in 6.
  for (let round = 0; round < 2; round++) {
    const dir = t.testdir()
    const env = { MINIGATE_DB: await freshDatabaseLocation(t, dir), MINIGATE_KEYS_DIR: join(dir, 'keys') }
    const runs = await Promise.all([minigate(env, 'migrate'), minigate(env, 'migrate')])
    const codes = runs.map((run) => run.code)
    t.same(codes, [0, 0], `round ${round}: both exit 0`, codes[0] === 0 && codes[1] === 0 ? {} : { stderr: runs.map((run) => run.stderr) })
    const db = openDatabase(env.MINIGATE_DB, { create: false })
    const applied = await db.selectFrom('kysely_migration' as never).select(sql<string>`name`.as('name')).execute()
    t.equal(applied.length, migrationNames.length, `round ${round}: every migration applied exactly once`)
    t.same(await db.selectFrom('users').selectAll().execute(), [], 'the tables exist')
    await db.destroy()
  }
})

t.test('a migration that fails leaves nothing of itself behind, and the next run applies it', async (t) => {
  const { location, drop } = await createFreshDatabase(t.testdir())
  const db = openDatabase(location)
  t.teardown(async () => {
    await db.destroy()
    await drop()
  })
  let crash = true
  const migrations: Record<string, Migration> = {
    '9001-half': {
      async up(db) {
        await db.schema.createTable('half_done').addColumn('id', 'text').execute()
        await db.insertInto('half_done').values({ id: 'x' }).execute()
        if (crash) throw new Error('crashed in the middle of a migration')
        await db.schema.createTable('second_half').addColumn('id', 'text').execute()
      },
    },
  }
  const schema = testDialect === 'postgres' ? ((await sql<{ s: string }>`select current_schema() as s`.execute(db)).rows[0]?.s as string) : undefined
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations }, allowUnorderedMigrations: true, ...(schema ? { migrationTableSchema: schema } : {}) })
  const failed = await migrator.migrateToLatest()
  t.match(String(failed.error), /crashed in the middle/)
  const tables = async () => (await db.introspection.getTables()).map((table) => table.name)
  t.notOk((await tables()).includes('half_done'), 'the table the failed migration created was rolled back')
  crash = false
  const retried = await migrator.migrateToLatest()
  t.equal(retried.error, undefined, 'the same migration runs again cleanly')
  t.ok((await tables()).includes('second_half'))
})

t.test('two `minigate keys rotate` at once: one rotation is scheduled, the other is refused', async (t) => {
  for (let round = 0; round < 2; round++) {
    const dir = t.testdir()
    const keysDir = join(dir, 'keys')
    mkdirSync(keysDir, { recursive: true, mode: 0o700 })
    writeFileSync(join(keysDir, 'first.pem'), fixtureKeyPem(0), { mode: 0o600 })
    const env = { MINIGATE_DB: await freshDatabaseLocation(t, dir), MINIGATE_KEYS_DIR: keysDir }
    // A first key, as a server's first start registers it.
    const db = openDatabase(env.MINIGATE_DB)
    await migrateToLatest(db)
    const { openKeyRing } = await import('../../src/keys/key-ring.js')
    const { TestClock } = await import('../helpers/clock.js')
    await openKeyRing({ db, secretBox: loadSecretBox({ dir: keysDir }), clock: new TestClock(Date.now()), timing: keyTiming(defaults), dir: keysDir })

    const runs = await Promise.all([minigate(env, 'keys', 'rotate', '--json'), minigate(env, 'keys', 'rotate', '--json')])
    const codes = runs.map((run) => run.code).sort()
    t.same(codes, [0, 1], `round ${round}: one succeeds, one is refused`, codes[0] === 0 && codes[1] === 1 ? {} : { stderr: runs.map((run) => run.stderr) })
    t.match(runs.find((run) => run.code === 1)?.stderr, /rotation is already scheduled|at the same moment/, 'the refusal says why')
    const now = Math.floor(Date.now() / 1000)
    const rows = await listSigningKeys(db)
    t.equal(rows.length, 2, 'the refused rotation left no key behind')
    t.equal(rows.filter((row) => row.activates_at !== null && row.retires_at === null && row.removed_at === null).length, 1, 'one key is scheduled to sign, open-ended')
    t.equal(rows.filter((row) => keyState(row, now, keyTiming(defaults)) === 'active').length, 1, 'exactly one key is active')
    await db.destroy()
  }
})

t.test('on PostgreSQL, migrating looks at its own schema only, undisturbed by schemas dropped meanwhile', { skip: testDialect !== 'postgres' && 'PostgreSQL only' }, async (t) => {
  // Kysely's stock introspection read every table of every schema with functions that fail (3F000)
  // when another schema is dropped meanwhile: parallel test files, or tenants sharing one server.
  const other = await createFreshDatabase(t.testdir())
  const otherDb = openDatabase(other.location, { poolSize: 1 })
  await migrateToLatest(otherDb)
  await otherDb.destroy()
  t.teardown(other.drop)

  const ours = openDatabase(await freshDatabaseLocation(t, t.testdir()), { poolSize: 2 })
  t.teardown(() => ours.destroy())
  await migrateToLatest(ours)
  const tables = await ours.introspection.getTables({ withInternalKyselyTables: true })
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(ours)
  t.same([...new Set(tables.map((table) => table.schema))], [rows[0]?.schema], "the tables of minigate's own schema only, not the other one's")
  t.ok(tables.some((table) => table.name === 'kysely_migration'), 'including the migration table')

  // Schemas created and dropped as fast as the server allows, while fresh schemas are migrated.
  let churning = true
  const churn = (async () => {
    let dropped = 0
    while (churning) {
      const scratch = await createFreshDatabase(t.testdir())
      const scratchDb = openDatabase(scratch.location, { poolSize: 1 })
      await sql`create table t (id int primary key, note text)`.execute(scratchDb)
      await scratchDb.destroy()
      await scratch.drop()
      dropped += 1
    }
    return dropped
  })()
  const failures: string[] = []
  for (let round = 0; round < 8; round++) {
    const db = openDatabase(await freshDatabaseLocation(t, t.testdir()), { poolSize: 1 })
    await migrateToLatest(db).catch((error: Error) => failures.push(error.message))
    await db.destroy()
  }
  churning = false
  t.ok((await churn) > 0, 'schemas were dropped during the migrations')
  t.same(failures, [], 'every migration succeeded')
})
