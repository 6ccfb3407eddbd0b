import { open } from 'node:fs/promises'
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

export interface GroupCommitOptions {
  /**
   * Makes everything committed so far durable, off the main thread: an fsync of the database's WAL file
   * (see `walSync`). Without it, each batch's COMMIT makes its own fsync on the main thread.
   */
  syncWal?: () => Promise<void>
}

/** An fdatasync of a SQLite database's WAL file (`<file>-wal`), on the thread pool. */
export function walSync(file: string): () => Promise<void> {
  const wal = `${file}-wal`
  return async () => {
    const handle = await open(wal, 'r+')
    try {
      await handle.datasync()
    } finally {
      await handle.close()
    }
  }
}

/**
 * Runs `sync` for whoever waits: a waiter is released by a sync that began after it asked (one already
 * running may have started before the waiter's commit), and every waiter of a round shares one sync.
 */
function durabilityBarrier(sync: () => Promise<void>): () => Promise<void> {
  let running = false
  let waiting: Array<{ resolve: () => void; reject: (error: unknown) => void }> = []
  function start(): void {
    running = true
    const round = waiting
    waiting = []
    sync().then(
      () => round.forEach((waiter) => waiter.resolve()),
      (error: unknown) => round.forEach((waiter) => waiter.reject(error)),
    ).finally(() => {
      running = false
      if (waiting.length > 0) start()
    })
  }
  return () =>
    new Promise<void>((resolve, reject) => {
      waiting.push({ resolve, reject })
      if (!running) start()
    })
}

/**
 * Group commit for SQLite. With `synchronous=FULL` every COMMIT is an fsync made on the main thread;
 * one after another they cap the server at a few thousand commits a second and stall every request
 * behind them. Here the changes that arrive together (in one turn of the event loop) share one write
 * transaction:
 * - each runs inside a savepoint of its own, one after the other, and sees what the earlier ones
 *   wrote, as it would in a transaction of its own (SQLite serialises writes anyway);
 * - one that throws rolls back to its savepoint only, and its caller gets the error;
 * - every caller's promise settles only once the batch is on disk, so a rotation acknowledged to a
 *   client survives a crash and a power loss; if the COMMIT fails, every caller of the batch gets that
 *   error.
 *
 * With `syncWal`, a batch commits with `synchronous=NORMAL` (no fsync: the WAL pages reach the
 * operating system, which is what survives `kill -9`) and its callers wait for a WAL fsync on the thread
 * pool that began after the commit; the next batches commit meanwhile, and share the next fsync. The
 * main thread never waits on the disk. Other transactions on the connection keep `synchronous=FULL`.
 *
 * @example const transaction = groupCommit(db, { syncWal: walSync(file) }); await transaction(async (trx) => rotate(trx))
 */
export function groupCommit(db: Db, options: GroupCommitOptions = {}): <T>(work: (trx: Trx) => Promise<T>) => Promise<T> {
  let queue: Pending[] = []
  let scheduled = false
  const durable = options.syncWal ? durabilityBarrier(options.syncWal) : undefined

  /** One write transaction; with a WAL sync, committed without an fsync of its own. */
  function commit(work: (trx: Trx) => Promise<void>): Promise<void> {
    if (!durable) return db.transaction().execute(work)
    // The connection is held throughout, so no other statement runs at the lower safety level.
    return db.connection().execute(async (connection) => {
      await sql`pragma synchronous = NORMAL`.execute(connection)
      try {
        await connection.transaction().execute(work)
      } finally {
        await sql`pragma synchronous = FULL`.execute(connection)
      }
    })
  }

  async function runBatch(batch: Pending[]): Promise<void> {
    const outcomes: Outcome[] = []
    try {
      await commit(async (trx) => {
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
    const settle = () => {
      for (const { pending, ok, value } of outcomes) (ok ? pending.resolve : pending.reject)(value)
    }
    // Not awaited: the next batch commits while this one's fsync runs.
    if (durable) void durable().then(settle, (error: unknown) => batch.forEach((pending) => pending.reject(error)))
    else settle()
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
