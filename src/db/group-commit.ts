import { closeSync, fdatasync, openSync, realpathSync } from 'node:fs'
import { sql } from './kysely.js'
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

/** What every change gets once the database's durability can no longer be vouched for. */
export class DurabilityLost extends Error {
  override name = 'DurabilityLost'
}

export interface GroupCommitOptions {
  /**
   * Makes everything committed so far durable, off the main thread: an fsync of the database's WAL file
   * (see `openWalSync`). Without it, each batch's COMMIT makes its own fsync on the main thread.
   */
  syncWal?: () => Promise<void>
  /**
   * Called once, when a WAL sync fails (or the connection could not be set back to
   * `synchronous=FULL`): from then on every change is refused with `DurabilityLost`. Linux reports a
   * failed write-back to one fsync only, and SQLite would go on reading pages that never reached the
   * disk: the process must restart and let SQLite recover from what the disk holds.
   */
  onFailure?: (error: unknown) => void
}

/** A WAL file held open for fdatasyncs on the thread pool; `close` when the database closes. */
export interface WalSync {
  sync: () => Promise<void>
  close: () => void
}

/**
 * Opens a SQLite database's WAL file (`<file>-wal`, after symbolic links, as SQLite names it) for
 * `groupCommit`'s syncs, once, for the life of the database: a handle opened after a failed write-back
 * would not hear of it. Undefined when the database has no WAL file (not in WAL mode, or in memory).
 */
export function openWalSync(file: string): WalSync | undefined {
  if (file === ':memory:') return undefined
  let fd: number
  try {
    fd = openSync(`${realpathSync(file)}-wal`, 'r+')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  let open = true
  return {
    sync: () => new Promise<void>((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve()))),
    // Once only: a second close could close a descriptor the process has handed out again meanwhile.
    close() {
      if (open) closeSync(fd)
      open = false
    },
  }
}

/**
 * Runs `sync` for whoever waits: a waiter is released by a sync that began after it asked (one already
 * running may have started before the waiter's commit), and every waiter of a round shares one sync. A
 * failed sync fails its round and every waiter after it (no sync is tried again): `failed` says with
 * what.
 */
function durabilityBarrier(sync: () => Promise<void>, failed: (error: unknown) => Error): () => Promise<void> {
  let running = false
  let refusal: Error | undefined
  let waiting: Array<{ resolve: () => void; reject: (error: unknown) => void }> = []
  function start(): void {
    running = true
    const round = waiting
    waiting = []
    sync()
      .then(
        () => round.forEach((waiter) => waiter.resolve()),
        (error: unknown) => {
          refusal = failed(error)
          round.forEach((waiter) => waiter.reject(refusal))
        },
      )
      .finally(() => {
        running = false
        if (refusal) {
          waiting.forEach((waiter) => waiter.reject(refusal))
          waiting = []
        } else if (waiting.length > 0) {
          start()
        }
      })
  }
  return () =>
    new Promise<void>((resolve, reject) => {
      if (refusal) return reject(refusal)
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
 * commits make no fsync on the main thread (SQLite's automatic checkpoint, every 1000 WAL pages, still
 * does). Other transactions on the connection keep `synchronous=FULL`. Once a sync fails, every change
 * is refused (`onFailure`).
 *
 * @example const transaction = groupCommit(db, { syncWal: wal.sync, onFailure }); await transaction(async (trx) => rotate(trx))
 */
export function groupCommit(db: Db, options: GroupCommitOptions = {}): <T>(work: (trx: Trx) => Promise<T>) => Promise<T> {
  let queue: Pending[] = []
  let scheduled = false
  let failure: DurabilityLost | undefined
  function fail(error: unknown): DurabilityLost {
    if (!failure) {
      failure = new DurabilityLost('the database can no longer be written durably: restart the server', { cause: error })
      options.onFailure?.(error)
    }
    return failure
  }
  const durable = options.syncWal ? durabilityBarrier(options.syncWal, fail) : undefined

  /** One write transaction; with a WAL sync, committed without an fsync of its own. */
  function commit(work: (trx: Trx) => Promise<void>): Promise<void> {
    if (!durable) return db.transaction().execute(work)
    // The connection is held throughout, so no other statement runs at the lower safety level.
    return db.connection().execute(async (connection) => {
      await sql`pragma synchronous = NORMAL`.execute(connection)
      try {
        await connection.transaction().execute(work)
      } finally {
        try {
          await sql`pragma synchronous = FULL`.execute(connection)
        } catch (error) {
          // Refused inside a transaction a failed rollback left open: end it, then try again; a
          // connection that stays at NORMAL would commit everything else without an fsync.
          await sql`rollback`.execute(connection).catch(() => undefined)
          await sql`pragma synchronous = FULL`.execute(connection).catch(() => {
            throw fail(error)
          })
        }
      }
    })
  }

  async function runBatch(batch: Pending[]): Promise<void> {
    if (failure) {
      for (const pending of batch) pending.reject(failure)
      return
    }
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
    if (durable) void durable().then(settle, (refusal: unknown) => batch.forEach((pending) => pending.reject(refusal)))
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
      if (failure) return reject(failure)
      queue.push({ work, resolve: resolve as (value: unknown) => void, reject })
      if (!scheduled) {
        scheduled = true
        // After the I/O callbacks of this turn: the requests that reached this point together commit together.
        setImmediate(() => void flush())
      }
    })
}
