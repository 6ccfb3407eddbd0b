import t from 'tap'
import { groupCommit } from '../../src/db/group-commit.js'
import { openTestDatabase } from '../helpers/database.js'

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
