import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { sql } from '../../src/db/kysely.js'
import t, { type Test } from 'tap'
import { migrateToLatest, openDatabase, type Db } from '../../src/db/connection.js'
import { DatabaseMissing } from '../../src/db/dialect.js'

function open(t: Test, file = join(t.testdir(), 'nested', 'folder', 'minigate.sqlite')): Db {
  const db = openDatabase(file)
  t.teardown(() => db.destroy())
  return db
}

async function pragma(db: Db, name: string): Promise<unknown> {
  const { rows } = await sql<Record<string, unknown>>`pragma ${sql.raw(name)}`.execute(db)
  return Object.values(rows[0] ?? {})[0]
}

t.test('openDatabase creates the folder and sets the pragmas', async (t) => {
  const file = join(t.testdir(), 'nested', 'folder', 'minigate.sqlite')
  const db = open(t, file)
  t.ok(existsSync(file), 'the file and its folders exist')
  t.equal(await pragma(db, 'journal_mode'), 'wal')
  t.equal(await pragma(db, 'foreign_keys'), 1)
  t.equal(await pragma(db, 'busy_timeout'), 5000)
  t.equal(await pragma(db, 'synchronous'), 2, 'synchronous = FULL')
})

t.test('migrateToLatest creates the schema and is idempotent', async (t) => {
  const db = open(t)
  const first = await migrateToLatest(db)
  t.ok(first.results && first.results.length > 0, 'the first run applies migrations')
  t.ok(first.results?.every((result) => result.status === 'Success'))
  const tables = async () =>
    (await sql<{ name: string }>`select name from sqlite_master where type = 'table' and name not like 'kysely_%' and name not like 'sqlite_%' order by name`.execute(db)).rows.map((row) => row.name)
  const before = await tables()
  for (const table of ['login_sessions', 'signing_keys', 'spent_codes', 'users', 'wechat_identities']) t.ok(before.includes(table), `table ${table}`)

  await db.insertInto('users').values({ id: 'u1', unionid: null, created_at: 1, updated_at: 1 }).execute()
  const second = await migrateToLatest(db)
  t.same(second.results, [], 'the second run applies nothing')
  t.equal(second.error, undefined)
  t.same(await tables(), before, 'same tables')
  t.equal((await db.selectFrom('users').selectAll().execute()).length, 1, 'data survives')
})

t.test('a new database file and its -wal and -shm are 0600 (it holds phone numbers)', async (t) => {
  const file = join(t.testdir(), 'private', 'minigate.sqlite')
  const db = open(t, file)
  await migrateToLatest(db)
  await db.insertInto('users').values({ id: 'u1', unionid: null, created_at: 1, updated_at: 1 }).execute()
  for (const path of [file, `${file}-wal`, `${file}-shm`]) t.equal(statSync(path).mode & 0o777, 0o600, `${path.slice(file.length - 14)} is 0600`)
})

t.test('opening with create: false refuses a database that does not exist, and creates nothing', async (t) => {
  const file = join(t.testdir(), 'missing', 'minigate.sqlite')
  t.throws(() => openDatabase(file, { create: false }), DatabaseMissing)
  t.notOk(existsSync(join(file, '..')), 'not even its folder')
})

t.test('a reopened file keeps its schema and data, and migrating it again is a no-op', async (t) => {
  const file = join(t.testdir(), 'db', 'minigate.sqlite')
  const first = openDatabase(file)
  await migrateToLatest(first)
  await first.insertInto('users').values({ id: 'u1', unionid: null, created_at: 1, updated_at: 1 }).execute()
  await first.destroy()
  const second = open(t, file)
  t.same((await migrateToLatest(second)).results, [])
  t.equal((await second.selectFrom('users').select('id').executeTakeFirst())?.id, 'u1')
  t.equal(await pragma(second, 'journal_mode'), 'wal')
})

t.test('foreign keys are enforced', async (t) => {
  const db = open(t)
  await migrateToLatest(db)
  const identity = { user_id: 'no-such-user', appid: 'wx1', openid: 'o1', session_key_enc: 'v1.x.y.z', session_key_updated_at: 1, created_at: 1 }
  await t.rejects(db.insertInto('wechat_identities').values(identity).execute(), /FOREIGN KEY/, 'an identity needs its user')
  t.equal((await db.selectFrom('wechat_identities').selectAll().execute()).length, 0)

  await db.insertInto('users').values({ id: 'u1', unionid: null, created_at: 1, updated_at: 1 }).execute()
  await db.insertInto('wechat_identities').values({ ...identity, user_id: 'u1' }).execute()
  t.equal((await db.selectFrom('wechat_identities').selectAll().execute()).length, 1, 'with its user it is stored')

  await t.rejects(
    db.insertInto('login_sessions').values({ id: 's1', user_id: 'ghost', client_id: 'wx1', scope: 'profile', created_at: 1, last_used_at: 1, expires_at: 2, revoked_at: null, revoked_reason: null }).execute(),
    /FOREIGN KEY/,
    'a login needs its user',
  )
  await db.deleteFrom('users').where('id', '=', 'u1').execute()
  t.equal((await db.selectFrom('wechat_identities').selectAll().execute()).length, 0, 'deleting a user cascades to its identities')
})

t.test('the (appid, openid) pair is unique', async (t) => {
  const db = open(t)
  await migrateToLatest(db)
  await db.insertInto('users').values({ id: 'u1', unionid: null, created_at: 1, updated_at: 1 }).execute()
  const identity = { user_id: 'u1', appid: 'wx1', openid: 'o1', session_key_enc: 'v1.x.y.z', session_key_updated_at: 1, created_at: 1 }
  await db.insertInto('wechat_identities').values(identity).execute()
  await t.rejects(db.insertInto('wechat_identities').values(identity).execute(), /UNIQUE/)
  await db.insertInto('wechat_identities').values({ ...identity, appid: 'wx2' }).execute()
  t.pass('the same openid under another appid is another identity')
})

t.test('write transactions begin immediate and roll back on error', async (t) => {
  const dir = t.testdir()
  const db = open(t, join(dir, 'single.sqlite'))
  await migrateToLatest(db)
  await t.rejects(
    db.transaction().execute(async (trx) => {
      await trx.insertInto('users').values({ id: 'u1', unionid: null, created_at: 1, updated_at: 1 }).execute()
      throw new Error('boom')
    }),
    /boom/,
  )
  t.equal((await db.selectFrom('users').selectAll().execute()).length, 0, 'nothing half-written')

  // A second connection (the CLI next to the server) cannot write while a transaction is open, even one
  // that has only read so far: the write lock is taken at BEGIN.
  const file = join(dir, 'shared.sqlite')
  const server = open(t, file)
  await migrateToLatest(server)
  const cli = open(t, file)
  await sql`pragma busy_timeout = 0`.execute(cli)
  await server.transaction().execute(async (trx) => {
    await trx.selectFrom('users').selectAll().execute()
    await t.rejects(cli.insertInto('users').values({ id: 'u2', unionid: null, created_at: 1, updated_at: 1 }).execute(), /busy|locked/i, 'the other connection is locked out')
  })
  await cli.insertInto('users').values({ id: 'u2', unionid: null, created_at: 1, updated_at: 1 }).execute()
  t.equal((await server.selectFrom('users').select('id').execute()).length, 1, 'after the commit the other connection writes')
})
