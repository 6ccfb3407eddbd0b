import { symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { sql } from '../../src/db/kysely.js'
import t from 'tap'
import { migrateToLatest, openDatabase, type Db } from '../../src/db/connection.js'
import { DurabilityLost, groupCommit, openWalSync } from '../../src/db/group-commit.js'
import { openTestDatabase, testDialect } from '../helpers/database.js'

const user = (id: string) => ({ id, unionid: null, created_at: 1, updated_at: 1 })

t.test('changes that arrive together share one transaction, each in its own savepoint', async (t) => {
  const db = await openTestDatabase(t)
  const transaction = groupCommit(db)
  const seen: number[] = []
  let transactions = 0
  const original = db.transaction.bind(db)
  db.transaction = (() => {
    transactions += 1
    return original()
  }) as typeof db.transaction

  const results = await Promise.allSettled(
    Array.from({ length: 6 }, (_, index) =>
      transaction(async (trx) => {
        // Each change sees what the ones before it in the batch wrote, as in a transaction of its own.
        seen.push((await trx.selectFrom('users').select('id').execute()).length)
        await trx.insertInto('users').values(user(`u${index}`)).execute()
        if (index === 2) throw new Error('change 2 fails after writing')
        return index
      }),
    ),
  )
  t.equal(transactions, 1, 'one transaction (one commit, one fsync) for the six')
  t.same(seen, [0, 1, 2, 2, 3, 4], 'each saw the earlier ones, and not the failed one after its rollback')
  t.same(
    results.map((result) => (result.status === 'fulfilled' ? result.value : (result.reason as Error).message)),
    [0, 1, 'change 2 fails after writing', 3, 4, 5],
    'each caller gets its own outcome',
  )
  const ids = (await db.selectFrom('users').select('id').orderBy('id').execute()).map((row) => row.id)
  t.same(ids, ['u0', 'u1', 'u3', 'u4', 'u5'], 'only the failed change was undone')
})

t.test('a compare-and-set keeps one winner inside a batch', async (t) => {
  const db = await openTestDatabase(t)
  const transaction = groupCommit(db)
  await db.insertInto('users').values(user('u1')).execute()
  await db.insertInto('login_sessions').values({ id: 's1', user_id: 'u1', client_id: 'wx', scope: 'profile', created_at: 1, last_used_at: 1, expires_at: 9e9 }).execute()
  const { rotateGeneration } = await import('../../src/db/sessions.js')
  const outcomes = await Promise.all(Array.from({ length: 5 }, () => transaction((trx) => rotateGeneration(trx, 's1', 0, 2))))
  t.same(outcomes.sort(), [false, false, false, false, true], 'exactly one rotation of generation 0')
  t.equal((await db.selectFrom('login_sessions').select('generation').executeTakeFirstOrThrow()).generation, 1)
})

t.test('a batch that cannot commit fails every change in it, and the next batch runs', async (t) => {
  const db = await openTestDatabase(t)
  const transaction = groupCommit(db)
  const original = db.transaction.bind(db)
  let failNext = true
  db.transaction = (() => {
    const builder = original()
    if (!failNext) return builder
    failNext = false
    return { execute: async (work: (trx: unknown) => Promise<unknown>) => builder.execute(async (trx) => {
      await work(trx)
      throw new Error('the commit failed')
    }) } as unknown as ReturnType<typeof db.transaction>
  }) as typeof db.transaction
  const failed = await Promise.allSettled([1, 2].map((n) => transaction((trx) => trx.insertInto('users').values(user(`f${n}`)).execute())))
  t.same(failed.map((result) => result.status), ['rejected', 'rejected'], 'both callers are told')
  t.same(await db.selectFrom('users').select('id').execute(), [], 'nothing of the batch stayed')
  await transaction((trx) => trx.insertInto('users').values(user('ok')).execute())
  t.same((await db.selectFrom('users').select('id').execute()).map((row) => row.id), ['ok'], 'the next change commits')
})

const sqliteOnly = { skip: testDialect !== 'sqlite' && 'SQLite only: PostgreSQL makes its commits durable itself' }

/** A WAL sync that the test ends by hand, one call at a time. */
function manualSync(): { calls: Array<{ release: () => void; fail: (error: Error) => void }>; sync: () => Promise<void> } {
  const calls: Array<{ release: () => void; fail: (error: Error) => void }> = []
  return { calls, sync: () => new Promise<void>((release, fail) => calls.push({ release, fail })) }
}

/** Lets the event loop turn until `done()` holds (a bounded number of turns). */
async function until(done: () => boolean | Promise<boolean>): Promise<void> {
  for (let turn = 0; turn < 10_000 && !(await done()); turn++) await new Promise((resolve) => setImmediate(resolve))
}

/** Whether a promise has settled, after the event loop turned a few times. */
async function hasSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false
  promise.then(() => (settled = true), () => (settled = true))
  for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve))
  return settled
}

const ids = async (db: Db) => (await db.selectFrom('users').select('id').orderBy('id').execute()).map((row) => row.id)

t.test('with a WAL sync, a change is answered only once a sync that began after its commit has ended', sqliteOnly, async (t) => {
  const db = await openTestDatabase(t)
  const { calls, sync } = manualSync()
  const transaction = groupCommit(db, { syncWal: sync })
  const levels: number[] = []
  const first = transaction(async (trx) => {
    levels.push(Object.values((await sql`pragma synchronous`.execute(trx)).rows[0] as object)[0] as number)
    await trx.insertInto('users').values(user('u1')).execute()
    return 'first'
  })
  await until(() => calls.length === 1)
  t.same(levels, [1], 'the batch commits at synchronous=NORMAL: no fsync on the main thread')
  t.same(Object.values((await sql`pragma synchronous`.execute(db)).rows[0] as object), [2], 'and the connection is back at FULL for everything else')
  t.same(await ids(db), ['u1'], 'committed: reads go on while the sync runs')
  t.notOk(await hasSettled(first), 'not answered before its sync ended')

  // Committed while the first sync runs, which may have begun before it: it waits for the next one.
  const second = transaction((trx) => trx.insertInto('users').values(user('u2')).execute().then(() => 'second'))
  await until(async () => (await ids(db)).length === 2)
  t.equal(calls.length, 1, 'one sync at a time')
  calls[0]?.release()
  t.equal(await first, 'first')
  t.notOk(await hasSettled(second), 'the second change waits for a sync that began after its commit')
  await until(() => calls.length === 2)
  calls[1]?.release()
  t.equal(await second, 'second')
})

t.test('changes committed during one sync share the next', sqliteOnly, async (t) => {
  const db = await openTestDatabase(t)
  const { calls, sync } = manualSync()
  const transaction = groupCommit(db, { syncWal: sync })
  const first = transaction((trx) => trx.insertInto('users').values(user('a')).execute())
  await until(() => calls.length === 1)
  const later: Array<Promise<unknown>> = []
  for (const id of ['b', 'c', 'd']) {
    later.push(transaction((trx) => trx.insertInto('users').values(user(id)).execute()))
    await until(async () => (await ids(db)).includes(id))
  }
  calls[0]?.release()
  await first
  await until(() => calls.length === 2)
  calls[1]?.release()
  await Promise.all(later)
  t.equal(calls.length, 2, 'three batches, one fsync')
})

t.test('a failed WAL sync fails the changes that waited for it, and every change after it', sqliteOnly, async (t) => {
  // Linux reports a failed write-back to one fsync only: a later sync that succeeds does not make the
  // lost pages durable, and a change acknowledged then could vanish with them.
  const db = await openTestDatabase(t)
  const { calls, sync } = manualSync()
  const failures: unknown[] = []
  const transaction = groupCommit(db, { syncWal: sync, onFailure: (error) => failures.push(error) })
  const failed = transaction((trx) => trx.insertInto('users').values(user('u1')).execute())
  await until(() => calls.length === 1)
  const waiting = transaction((trx) => trx.insertInto('users').values(user('u2')).execute()).then(() => undefined, (error: unknown) => error)
  await until(async () => (await ids(db)).length === 2)
  calls[0]?.fail(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }))
  const refusal = await failed.then(() => undefined, (error: unknown) => error)
  t.type(refusal, DurabilityLost, 'its caller is told: the change may not be on disk')
  t.match((refusal as Error).cause, { code: 'EIO' })
  t.type(await waiting, DurabilityLost, 'so is the one that waited for the next sync')
  await t.rejects(transaction((trx) => trx.insertInto('users').values(user('u3')).execute()), DurabilityLost, 'and every change after')
  t.equal(calls.length, 1, 'no sync is tried again')
  t.equal(failures.length, 1, 'onFailure is called once')
  t.same(await ids(db), ['u1', 'u2'], 'nothing was written after the failure')
})

t.test('with a WAL sync, a batch that cannot commit fails every change in it and leaves the connection at FULL', sqliteOnly, async (t) => {
  const db = await openTestDatabase(t)
  const { calls, sync } = manualSync()
  const transaction = groupCommit(db, { syncWal: sync })
  // A foreign key checked at COMMIT (deferred) makes the COMMIT itself fail.
  const results = await Promise.allSettled([
    transaction((trx) => trx.insertInto('users').values(user('fine')).execute()),
    transaction(async (trx) => {
      await sql`pragma defer_foreign_keys = on`.execute(trx)
      await trx.insertInto('login_sessions').values({ id: 's', user_id: 'nobody', client_id: 'wx', scope: 'profile', created_at: 1, last_used_at: 1, expires_at: 9 }).execute()
    }),
  ])
  t.same(results.map((result) => result.status), ['rejected', 'rejected'], 'both changes of the batch fail with the COMMIT')
  t.same(Object.values((await sql`pragma synchronous`.execute(db)).rows[0] as object), [2], 'the connection is at FULL again')
  t.same(await ids(db), [], 'nothing of the batch stayed')
  t.equal(calls.length, 0, 'nothing to sync')
  const next = transaction((trx) => trx.insertInto('users').values(user('next')).execute().then(() => 'next'))
  await until(() => calls.length === 1)
  calls[0]?.release()
  t.equal(await next, 'next', 'the next change commits')
})

t.test('openWalSync holds the WAL file SQLite writes (after symbolic links) and fdatasyncs it', sqliteOnly, async (t) => {
  const dir = t.testdir({ real: {} })
  const file = join(dir, 'real', 'minigate.sqlite')
  const db = openDatabase(file)
  t.teardown(() => db.destroy())
  await migrateToLatest(db)
  // MINIGATE_DB naming a link to the file: SQLite resolves it and writes real/minigate.sqlite-wal.
  const link = join(dir, 'link.sqlite')
  symlinkSync(file, link)
  const wal = openWalSync(link)
  t.ok(wal, 'found through the link')
  t.teardown(() => wal?.close())
  const transaction = groupCommit(db, { syncWal: (wal as NonNullable<typeof wal>).sync })
  await Promise.all(['a', 'b', 'c'].map((id) => transaction((trx) => trx.insertInto('users').values(user(id)).execute())))
  const reopened = openDatabase(file, { create: false })
  t.same(await ids(reopened), ['a', 'b', 'c'])
  await reopened.destroy()
  wal?.close()
  t.doesNotThrow(() => wal?.close(), 'closing twice is harmless (closeDeps may run twice)')
  t.equal(openWalSync(':memory:'), undefined, 'an in-memory database has no WAL')
  t.equal(openWalSync(join(dir, 'none.sqlite')), undefined, 'nor has a database without a -wal file (not in WAL mode)')
})
