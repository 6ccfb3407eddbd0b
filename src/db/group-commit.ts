import { sql } from 'kysely'
import type { Db, Trx } from './connection.js'

interface Pending {
  work: (trx: Trx) => Promise<unknown>
  resolve: (value: unknown) => void
  reject: (error: unknown) => void
}

interface Outcome {
  pending: Pending
  ok: boolean
  value: unknown
}

/**
 * Group commit for SQLite. Every commit of a token-state change is an fsync (`synchronous=FULL`), made on
 * the main thread; one after another they cap the server at a few thousand commits a second and stall
 * every request behind them. Here the changes that arrive together (in one turn of the event loop)
 * share one write transaction and one fsync:
 * - each runs inside a savepoint of its own, one after the other, and sees what the earlier ones
 *   wrote, as it would in a transaction of its own (SQLite serialises writes anyway);
 * - one that throws rolls back to its savepoint only, and its caller gets the error;
 * - every caller's promise settles only after the shared COMMIT, so a rotation acknowledged to a client
 *   is on disk; if the COMMIT fails, every caller of the batch gets that error.
 *
 * @example const transaction = groupCommit(db); await transaction(async (trx) => rotate(trx))
 */
export function groupCommit(db: Db): <T>(work: (trx: Trx) => Promise<T>) => Promise<T> {
  let queue: Pending[] = []
  let scheduled = false

  async function runBatch(batch: Pending[]): Promise<void> {
    const outcomes: Outcome[] = []
    try {
      await db.transaction().execute(async (trx) => {
        for (const pending of batch) {
          await sql`savepoint group_member`.execute(trx)
          try {
            const value = await pending.work(trx)
            await sql`release savepoint group_member`.execute(trx)
            outcomes.push({ pending, ok: true, value })
          } catch (error) {
            await sql`rollback to savepoint group_member`.execute(trx)
            await sql`release savepoint group_member`.execute(trx)
            outcomes.push({ pending, ok: false, value: error })
          }
        }
      })
    } catch (error) {
      for (const pending of batch) pending.reject(error)
      return
    }
    for (const { pending, ok, value } of outcomes) (ok ? pending.resolve : pending.reject)(value)
  }

  async function flush(): Promise<void> {
    try {
      while (queue.length > 0) {
        const batch = queue
        queue = []
        await runBatch(batch)
      }
    } finally {
      scheduled = false
    }
  }

  return <T>(work: (trx: Trx) => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      queue.push({ work, resolve: resolve as (value: unknown) => void, reject })
      if (!scheduled) {
        scheduled = true
        // After the I/O callbacks of this turn: the requests that reached this point together commit together.
        setImmediate(() => void flush())
      }
    })
}
